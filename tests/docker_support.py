"""Shared by the Docker tests: skip cleanly where no Docker Engine runs (CI starts one in scripts/setup.d)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest


def docker_client() -> Any:
    """A client on the local engine, or skip the test (with STOKER_TEST_DOCKER=1, a missing engine fails instead)."""
    from builder import engine
    from stoker.errors import StokerError

    try:
        return engine.connect()
    except StokerError as exc:
        if os.environ.get("STOKER_TEST_DOCKER"):
            raise
        pytest.skip(f"no Docker Engine: {exc}")


def platform_containers(engine: Any, home: Path, function: str) -> list[Any]:
    """The containers of ``function`` that the platform whose state is ``home`` made (its owner label is a digest of
    its STOKER_HOME), running or not: never another run's on the same engine."""
    import docker.errors

    from runtime.backends.containers import FUNCTION, OWNER

    owner = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    wanted = {"label": [f"{FUNCTION}={function}", f"{OWNER}={owner}"]}
    for _ in range(5):
        try:
            return list(engine.containers.list(all=True, filters=wanted))
        except docker.errors.NotFound:  # one was removed between the listing and its inspection: list again
            continue
    return list(engine.containers.list(all=True, filters=wanted))
