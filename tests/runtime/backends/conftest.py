"""Fixtures of the backend tests (distinct names, so tests of other backends keep the root fixtures)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.backends.swarm.backend import SwarmBackend
from stoker.config import Config
from tests.docker_support import docker_client
from tests.fakes.kubernetes import FakeCluster
from tests.platform_fixture import Platform, start_platform
from tests.runtime.backends.swarm.test_support import remove_platform, swarm_engine


@pytest.fixture(scope="module")
def docker_engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, docker_engine: Any) -> Iterator[Platform]:
    """One `stoker up --backend docker` per test module; its containers are removed at shutdown."""
    p = start_platform(tmp_path_factory.mktemp("stoker-docker"), "--backend", "docker")
    yield p
    p.stop(timeout=120)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeCluster]:
    """The in-memory Kubernetes API of tests/fakes/kubernetes.py; parametrized indirectly with True, its pool pods
    run as real generic replica processes."""
    c = FakeCluster(run_pool=bool(getattr(request, "param", False)), workdir=tmp_path / "pods")
    yield c
    c.close()


@pytest.fixture(scope="module")
def swarm_platform() -> Iterator[str]:
    """A platform name of its own in the local swarm for one test module; what it made is removed at the end."""
    engine = swarm_engine()
    platform = f"t{uuid.uuid4().hex[:8]}"
    yield platform
    remove_platform(engine, platform, f"{platform}-functions")
    engine.close()


@pytest.fixture
def make_swarm_backend(swarm_platform: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Makes swarm backends of that platform, as gateways on this host (route ``published``)."""
    monkeypatch.setenv("STOKER_SWARM_PLATFORM", swarm_platform)
    monkeypatch.setenv("STOKER_SWARM_NETWORK", f"{swarm_platform}-functions")
    monkeypatch.setenv("STOKER_SWARM_ROUTE", "published")
    monkeypatch.setenv("STOKER_SWARM_STOP_DELAY_S", "1")

    def make() -> SwarmBackend:
        return SwarmBackend(Config.from_env(os.environ, home=tmp_path / "home"), b"k" * 32)

    return make
