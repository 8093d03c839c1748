"""The same SDK function on the Docker backend (skipped where Docker is not there), and SDK functions started from
a warm pool's generic replica (a container on Docker, a process on the local backend): the replica checks its
signed bundle with the per-function key before it unpickles anything, however it was started."""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stoker.sdk import App
from tests.docker_support import docker_client
from tests.platform_fixture import PASSWORD, Platform, start_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    docker_client().close()  # skips without an engine (fails with STOKER_TEST_DOCKER=1, as in CI)
    # A platform that cannot start on Docker is a failure: the Docker backend exists and must work.
    p = start_platform(tmp_path_factory.mktemp("sdk-docker"), "--backend", "docker", env={"STOKER_POOL_SIZE": "1"})
    yield p
    p.stop()


def test_same_function_on_docker(docker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_GATEWAY", docker_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("dock")
    factor = 3

    @app.function(timeout=30)
    def scale(values: list[int]) -> tuple[int, str]:
        return sum(v * factor for v in values), os.uname().nodename

    app.deploy()
    total, host = scale.remote([1, 2, 3])
    assert total == 18
    assert host != os.uname().nodename  # it ran in a container, not on this host
    assert [total for total, _ in scale.map([[1], [2]])] == [3, 6]


@pytest.fixture(scope="module")
def local_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("sdk-local-pool"), env={"STOKER_POOL_SIZE": "1"})
    yield p
    p.stop()


def _from_zero_through_the_pool(p: Platform, monkeypatch: pytest.MonkeyPatch, app_name: str) -> str:
    """Deploy an SDK function, scale it to zero, call it: the activator's scale-up takes the pool's replica."""
    monkeypatch.setenv("STOKER_GATEWAY", p.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App(app_name)
    offset = 5

    @app.function(timeout=30, min_replicas=0)
    def add(values: list[int]) -> tuple[int, str]:
        return sum(values) + offset, os.environ.get("STOKER_INSTANCE", "")

    app.deploy()
    name = f"{app_name}-add"
    deadline = time.monotonic() + 120
    with p.client() as c:
        assert c.post(f"/system/scale-function/{name}", json={"replicas": 0}).status_code == 202
        while c.get(f"/system/function/{name}").json()["availableReplicas"] or "stoker_warm_pool_ready 1" not in (
            httpx.get(f"{p.url}/metrics").text
        ):
            assert time.monotonic() < deadline, "no scale to zero or no warm replica"
            time.sleep(0.1)
    total, instance = add.remote([1, 2, 3])
    assert total == 11
    return instance


def test_sdk_function_from_a_warm_container(docker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _from_zero_through_the_pool(docker_platform, monkeypatch, "dwarm").startswith("stoker-pool-")


def test_sdk_function_from_a_warm_local_process(local_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _from_zero_through_the_pool(local_platform, monkeypatch, "lwarm").startswith("pool-")


def _six_function(app: App) -> Any:
    @app.function(timeout=60, requirements=["six==1.16.0"])
    def six_version() -> str:
        import six  # type: ignore[import-untyped, unused-ignore]

        return str(six.__version__)

    return six_version


def test_sdk_function_with_a_third_party_requirement_on_docker(
    docker_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base image has no six: the builder installs the bundle's requirements.txt into the function's image."""
    monkeypatch.setenv("STOKER_GATEWAY", docker_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("dsix")
    six_version = _six_function(app)
    app.deploy()
    assert six_version.remote() == "1.16.0"
    images = _images(docker_platform, "dsix")
    assert images and all(image.startswith("stoker-fn/") for image in images), images  # built with six in it


def test_sdk_function_with_a_requirement_the_local_runtime_lacks_gets_it_installed(
    local_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local backend installs what the platform's interpreter does not satisfy (runtime/backends/local/deps.py):
    the function sees the version it pinned, whatever the platform has."""
    monkeypatch.setenv("STOKER_GATEWAY", local_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("lsix")
    six_version = _six_function(app)
    app.deploy()
    assert six_version.remote() == "1.16.0"


def _images(p: Platform, prefix: str) -> list[str]:
    with p.client() as c:
        return [f["image"] for f in c.get("/system/functions").json() if f["name"].startswith(prefix)]


def test_requirements_the_runtime_image_has_need_no_image_of_its_own(
    docker_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msgpack is one of the runtime's packages: nothing is built, the base image runs the signed bundle."""
    monkeypatch.setenv("STOKER_GATEWAY", docker_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("dmsg")

    @app.function(timeout=60, requirements=["msgpack"])
    def msgpack_version() -> str:
        import msgpack

        return ".".join(map(str, msgpack.version))

    app.deploy()
    assert msgpack_version.remote() == importlib.metadata.version("msgpack")
    images = _images(docker_platform, "dmsg")
    assert images and all(image.startswith("stoker/runtime:") for image in images), images
