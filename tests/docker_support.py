"""Shared by the Docker tests: skip cleanly where no Docker Engine runs (CI starts one in scripts/setup.d)."""

from __future__ import annotations

import os
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
