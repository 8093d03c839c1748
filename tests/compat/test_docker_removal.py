"""``DELETE /system/functions`` on the Docker backend (issue 15, item 13): answered 202 as soon as the function gets
no more traffic, its replicas drained in the background; a slow-to-stop function's removals never hold the threads
other requests need (the issue saw an unrelated deploy take 27.8 s while 6 removals drained); a function of the same
name deployed while the old one drains waits for it and then starts whole (docs/openfaas.md)."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import httpx
import pytest

from runtime.backends.containers import FUNCTION, OWNER
from tests.compat import watchdog_image
from tests.docker_support import docker_client
from tests.platform_fixture import Platform, start_platform
from tests.wait_support import wait_until

DRAIN_S = 6  # each removal's container ignores SIGTERM: `docker stop` waits this long before SIGKILL


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def slow_image(engine: Any) -> Iterator[str]:
    tag = watchdog_image.build(engine)
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_DRAIN_TIMEOUT_S": str(DRAIN_S)}
    p = start_platform(tmp_path_factory.mktemp("compat-rm"), "--backend", "docker", env=env)
    yield p
    # Its containers ignore SIGTERM: stopped by the platform, each would hold the shutdown DRAIN_S (22 s in all).
    # What the tests check is over; removed at once instead.
    for container in _containers(engine, p):
        with contextlib.suppress(docker.errors.APIError):  # gone meanwhile, or its removal already under way
            container.remove(force=True)
    p.stop(timeout=180)


def _containers(engine: Any, platform: Platform, name: str = "") -> list[Any]:
    """This platform's containers of function ``name`` (the owner label is a digest of its STOKER_HOME), or of all
    its functions."""
    owner = hashlib.sha256(str(platform.home.resolve()).encode()).hexdigest()[:12]
    labels = [f"{FUNCTION}={name}" if name else FUNCTION, f"{OWNER}={owner}"]
    return list(engine.containers.list(all=True, filters={"label": labels}))


def _deploy(platform: Platform, name: str, image: str) -> httpx.Response:
    with platform.client() as c:
        return c.post("/system/functions", json={"service": name, "image": image}, timeout=180)


def _delete(platform: Platform, name: str) -> tuple[int, float]:
    started = time.monotonic()
    with platform.client() as c:
        status = c.request("DELETE", "/system/functions", json={"functionName": name}, timeout=180).status_code
    return status, time.monotonic() - started


def test_removals_answer_at_once_and_never_starve_a_deploy(
    docker_platform: Platform, engine: Any, slow_image: str
) -> None:
    names = [f"slow-{i}" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        assert all(r.status_code == 202 for r in pool.map(lambda n: _deploy(docker_platform, n, slow_image), names))
        removals = [pool.submit(_delete, docker_platform, n) for n in names]
        with docker_platform.client() as c:  # out of the routing table: the removals' engine calls come next
            wait_until(lambda: not {f["name"] for f in c.get("/system/functions").json()} & set(names), 90, poll_s=0.1)
        started = time.monotonic()
        bystander = _deploy(docker_platform, "bystander", slow_image)
        deploy_s = time.monotonic() - started
        answers = [f.result() for f in removals]
    assert bystander.status_code == 202, bystander.text
    assert all(status == 202 for status, _ in answers), answers
    assert deploy_s < DRAIN_S / 2, f"an unrelated deploy took {deploy_s:.1f}s while removals drained"
    assert max(took for _, took in answers) < DRAIN_S / 3, answers  # 202 before the containers stopped
    # No traffic to a function being removed, and it is not listed; its containers drain, then go.
    assert httpx.post(f"{docker_platform.url}/function/slow-0", timeout=30).status_code == 404
    assert any(_containers(engine, docker_platform, n) for n in names)  # still draining (they ignore SIGTERM)
    wait_until(lambda: not any(_containers(engine, docker_platform, n) for n in names), DRAIN_S * 6, poll_s=0.1)
    assert httpx.post(f"{docker_platform.url}/function/bystander", timeout=30).status_code == 200


def test_a_function_deployed_again_while_it_drains_waits_and_starts_whole(
    docker_platform: Platform, engine: Any, slow_image: str
) -> None:
    assert _deploy(docker_platform, "again", slow_image).status_code == 202
    (old,) = _containers(engine, docker_platform, "again")
    status, took = _delete(docker_platform, "again")
    assert status == 202 and took < DRAIN_S / 3
    again_status, again_took = _delete(docker_platform, "again")  # gone from the API already: 404, at once
    assert again_status == 404 and again_took < DRAIN_S / 3
    started = time.monotonic()
    redeploy = _deploy(docker_platform, "again", slow_image)  # waits for the old replicas to be gone
    assert redeploy.status_code == 202, redeploy.text
    assert time.monotonic() - started > DRAIN_S / 3
    (new,) = _containers(engine, docker_platform, "again")
    assert new.id != old.id and new.status == "running"
    call = httpx.post(f"{docker_platform.url}/function/again", timeout=30)
    assert call.status_code == 200
    with docker_platform.client() as c:
        status_body = c.get("/system/function/again").json()
        assert status_body["availableReplicas"] == 1
        logs = c.get("/system/logs", params={"name": "again", "tail": "5"})
        assert logs.status_code == 200
        assert _delete(docker_platform, "again")[0] == 202
