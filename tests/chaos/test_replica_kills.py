"""Replicas SIGKILLed every few seconds under real load (local processes, Docker containers): only the calls in
flight on a killed replica may fail; every call that arrives after a kill succeeds on the other replica, and the
killed one comes back."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.chaos_support import HANDLER, REPORTS, Fault, Load, tally, wait_until
from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = pytest.mark.slow

KILLS = 5
KILL_EVERY_S = 2.0
CLIENTS = 4


@pytest.fixture(params=["local", "docker"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Platform, Any]]:
    engine = None
    if request.param == "docker":
        engine = request.getfixturevalue("docker_engine")  # skips without an engine (fails with STOKER_TEST_DOCKER=1)
        p = start_platform(tmp_path / "home", "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    else:
        p = start_platform(tmp_path / "home", env={"STOKER_POOL_SIZE": "0"})
    yield request.param, p, engine
    p.stop(timeout=120)


def _available(p: Platform, name: str) -> int:
    with p.client() as c:
        return int(c.get(f"/system/function/{name}").json()["availableReplicas"])


def _kill(kind: str, engine: Any, served_by: str) -> None:
    """SIGKILL the replica and return once it is dead (a signal is delivered when the process next runs, and a
    call may still reach it until then: such a call was in flight at the kill, not after it)."""
    pid, _, host = served_by.partition("@")
    if kind == "local":
        os.kill(int(pid), signal.SIGKILL)
        wait_until(lambda: _dead(int(pid)), 10, f"process {pid} to die", poll_s=0.001)
    else:
        container = engine.containers.get(host)  # the host name of a container is its id's first 12 digits
        container.kill()
        wait_until(lambda: container.reload() or container.status != "running", 10, f"{host} to die", poll_s=0.01)


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_sigkilled_replicas_fail_only_the_calls_in_flight_on_them(
    backend: tuple[str, Platform, Any], tmp_path: Path
) -> None:
    kind, p, engine = backend
    name = f"chaos-{uuid.uuid4().hex[:6]}"
    labels = {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "2"}
    assert p.deploy(name, write_handler(tmp_path / "fn", HANDLER), labels=labels).status_code == 202
    wait_until(lambda: _available(p, name) == 2, 120, "2 replicas")
    url = f"{p.url}/function/{name}"
    assert httpx.get(url, timeout=60).status_code == 200
    load = Load(lambda: url, clients=CLIENTS)
    faults: list[Fault] = []
    back_in: list[float] = []
    try:
        wait_until(lambda: len(load.snapshot()) > 20, 30, "load")
        for _ in range(KILLS):
            wait_until(lambda: _available(p, name) == 2, 120, "the killed replica to come back")
            if faults:
                back_in.append(time.monotonic() - faults[-1].end)
                time.sleep(max(0.0, faults[-1].end + KILL_EVERY_S - time.monotonic()))  # the pace, not a wait
            victim = load.last_server()
            before = time.monotonic()
            _kill(kind, engine, victim)
            faults.append(Fault(before, time.monotonic()))
        wait_until(lambda: _available(p, name) == 2, 120, "the last killed replica to come back")
        back_in.append(time.monotonic() - faults[-1].end)
        settled = len(load.snapshot())
        wait_until(lambda: len(load.snapshot()) > settled + 40, 60, "calls after the last kill")
    finally:
        calls = load.stop()
    t = tally(calls, faults)
    REPORTS.append(
        f"replica SIGKILL ({kind}): {len(faults)} kills every {KILL_EVERY_S:g}s under {CLIENTS} clients, "
        f"{t.calls} calls, {t.failed} failed = {t.per_fault(len(faults)):.1f} per kill, "
        f"{len(t.late)} of them arrived after the kill; replica back after at most {max(back_in):.1f}s"
    )
    assert not t.late, f"calls that arrived after a kill failed: {t.late[:5]}"
    assert t.failed <= CLIENTS * len(faults)  # at most what was in flight
    assert all(c.status == 200 for c in calls[-20:])
