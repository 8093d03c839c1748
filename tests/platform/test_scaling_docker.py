"""Scaling on the docker backend as a user sees it (issue 4's acceptance, as test_scaling.py on the local backend):
scale to zero and back through the warm pool without losing a request, no failures while replicas come and go or
the function is redeployed, a SIGKILLed container replaced, a step of load raising replicas in panic mode."""

from __future__ import annotations

import base64
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stoker import bundle
from tests.docker_support import docker_client
from tests.platform.scaling_support import (
    PANIC_WINDOW_S,
    SHORT,
    Load,
    scale_ups,
    status,
    step_from_one_to_twenty_clients,
)
from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

HOST_HANDLER = """
import os, socket, time
def handle(event, context):
    time.sleep(float(event.query.get("sleep", "0")))
    return {"host": socket.gethostname(), "version": os.environ.get("VERSION", ""),
            "instance": os.environ.get("STOKER_INSTANCE", "")}
"""


class TimedLoad(Load):
    """:class:`Load` that also keeps when each failed call was sent."""

    def __init__(self, url: str, clients: int, params: dict[str, str] | None = None) -> None:
        self.failed_at: list[float] = []
        self.ok_at: list[float] = []
        self.errors: list[str] = []
        super().__init__(url, clients, params)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stopping.is_set():
                sent = time.monotonic()
                try:
                    code = client.post(self.url, params=self.params, content=b"x").status_code
                except httpx.TransportError as exc:
                    code = -1
                    self.errors.append(f"{time.monotonic() - sent:.2f}s {exc!r}")
                self.statuses.append(code)
                (self.ok_at if code == 200 else self.failed_at).append(sent)


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def docker_scaling(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("stoker-docker-scaling"), "--backend", "docker", env=SHORT)
    yield p
    p.stop(timeout=120)


@pytest.fixture(scope="module")
def host_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_handler(tmp_path_factory.mktemp("fns") / "host", HOST_HANDLER)


def test_scale_to_zero_then_fifty_concurrent_requests_share_one_scale_up_from_the_pool(
    docker_scaling: Platform, host_folder: Path
) -> None:
    labels = {
        "com.openfaas.scale.zero": "true",
        "com.openfaas.scale.zero-duration": "1s",
        "com.openfaas.scale.target": "100",  # one replica carries all 50, so the autoscaler adds none
    }
    r = docker_scaling.deploy("dzero", host_folder, labels=labels)
    assert r.status_code == 202, r.text
    wait_until(lambda: status(docker_scaling, "dzero")["replicas"] == 0, 60, "scale to zero")
    wait_until(lambda: status(docker_scaling, "dzero")["availableReplicas"] == 0, 60, "the container to stop")
    wait_until(lambda: "stoker_warm_pool_ready 2" in httpx.get(f"{docker_scaling.url}/metrics").text, 90, "the pool")
    before = scale_ups(docker_scaling, "dzero")

    def call(_: int) -> httpx.Response:
        return httpx.post(f"{docker_scaling.url}/function/dzero", content=b"x", timeout=120)

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(call, range(50)))
    assert [r.status_code for r in answers] == [200] * 50
    assert scale_ups(docker_scaling, "dzero") - before == 1
    # Served by a generic container of the warm pool, specialised with the function.
    assert {r.json()["instance"].startswith("stoker-pool-") for r in answers} == {True}


def test_no_failed_request_while_scaling_up_and_down_and_redeploying(
    docker_scaling: Platform, host_folder: Path
) -> None:
    assert docker_scaling.deploy("dsteady", host_folder).status_code == 202
    load = Load(f"{docker_scaling.url}/function/dsteady", clients=4, params={"sleep": "0.02"})
    try:
        with docker_scaling.client() as c:
            assert c.post("/system/scale-function/dsteady", json={"replicas": 3}).status_code == 202
            wait_until(lambda: status(docker_scaling, "dsteady")["availableReplicas"] == 3, 120, "3 replicas")
            assert c.post("/system/scale-function/dsteady", json={"replicas": 1}).status_code == 202
            wait_until(lambda: status(docker_scaling, "dsteady")["availableReplicas"] == 1, 120, "back to 1 replica")
            body = {
                "service": "dsteady",
                "source": base64.b64encode(bundle.pack(host_folder)).decode(),
                "envVars": {"VERSION": "2"},
            }
            assert c.put("/system/functions", json=body, timeout=180).status_code == 202
        url = f"{docker_scaling.url}/function/dsteady"
        wait_until(lambda: httpx.post(url, timeout=60).json()["version"] == "2", 60, "the new version")
    finally:
        statuses = load.stop()
    assert len(statuses) > 20
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_a_sigkilled_container_fails_only_its_inflight_requests_and_is_replaced(
    docker_scaling: Platform, host_folder: Path, engine: Any
) -> None:
    assert docker_scaling.deploy("dvictim", host_folder, labels={"com.openfaas.scale.min": "2"}).status_code == 202
    wait_until(lambda: status(docker_scaling, "dvictim")["availableReplicas"] == 2, 120, "2 replicas")
    url = f"{docker_scaling.url}/function/dvictim"
    host = httpx.post(url, timeout=60).json()["host"]
    load = TimedLoad(url, clients=4, params={"sleep": "0.05"})
    try:
        wait_until(lambda: len(load.statuses) > 10, 60, "some load")
        killed = time.monotonic()
        engine.api.kill(host, "SIGKILL")  # the hostname is the container id's prefix
        killed_at = len(load.statuses)
        wait_until(lambda: len(load.statuses) > killed_at + 40, 120, "more calls after the kill")
        wait_until(lambda: sum(t - killed >= 2.0 for t in load.ok_at) >= 20, 120, "calls after the window")
    finally:
        statuses = load.stop()
    # The calls in flight on the killed container get 502 as soon as the backend sees it exit (the gateway then
    # closes its connections: a vanished container sends no reset); calls routed to it before that are refused
    # without being sent and retried on the other replica. So at most the 4 in flight fail, none hangs.
    # A GET caught on a connection the dead container left is sent again (gateway/upstream.py); if the survivor is at
    # its limit then, the retry waits in line and may be refused with 503 + Retry-After instead: still one of the 4.
    assert set(statuses) <= {200, 502, 503}, ({s: statuses.count(s) for s in set(statuses)}, load.errors)
    assert statuses.count(502) + statuses.count(503) <= 4, {s: statuses.count(s) for s in set(statuses)}
    assert all(t - killed < 2.0 for t in load.failed_at), [round(t - killed, 3) for t in load.failed_at]
    assert sum(t - killed >= 2.0 for t in load.ok_at) >= 20  # later calls succeed (the hung ones end last)
    wait_until(lambda: status(docker_scaling, "dvictim")["availableReplicas"] == 2, 120, "the replacement")
    hosts = {httpx.post(url, timeout=60).json()["host"] for _ in range(20)}
    assert host not in hosts


def test_a_step_from_one_to_twenty_clients_raises_replicas_in_panic_mode(
    docker_scaling: Platform, host_folder: Path
) -> None:
    # The containers start (from the warm pool or the image) after the decision and must all be ready and serving,
    # with no failed call, within the helper's ready_timeout.
    raised_after = step_from_one_to_twenty_clients(docker_scaling, "dstep", host_folder, ready_timeout=120)
    # Prompt, with room for the ticks and the HTTP polling on a loaded 2-core machine; that the decision comes within
    # the panic window itself is tested on a fake clock (tests/autoscaler/test_decider.py), and that it was a
    # panic-mode decision is read from the platform's log by the helper.
    assert raised_after < PANIC_WINDOW_S + 20, raised_after
