"""Fixtures of the docker backend tests (distinct names, so tests of other backends keep the root fixtures)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.docker_support import docker_client
from tests.platform_fixture import Platform, start_platform


@pytest.fixture(scope="module")
def docker_engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[Platform]:
    """One `stoker up --backend docker` per test module; its containers are removed at shutdown."""
    p = start_platform(tmp_path_factory.mktemp("stoker-docker"), "--backend", "docker")
    yield p
    p.stop(timeout=120)
