"""The platform SIGKILLed under load and started again on the same port and home (local, Docker): how long the
function is unavailable, and that once it answers again every call succeeds. Calls made while no platform listens
fail (refused); those in flight at the kill are lost with it (sync calls have no one left to answer them)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.chaos.chaos_support import HANDLER, REPORTS, Call, Fault, Load, free_port, in_flight, wait_until
from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = pytest.mark.slow

CLIENTS = 4


@pytest.mark.parametrize("kind", ["local", "docker"])
def test_a_sigkilled_platform_restarts_and_every_call_after_it_is_back_succeeds(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    args: tuple[str, ...] = ()
    if kind == "docker":
        request.getfixturevalue("docker_engine")  # skips without an engine (fails with STOKER_TEST_DOCKER=1)
        args = ("--backend", "docker")
    home, port = tmp_path / "home", free_port()
    env = {"STOKER_POOL_SIZE": "0"}
    name = f"chaos-{uuid.uuid4().hex[:6]}"
    url = f"http://127.0.0.1:{port}/function/{name}"
    first = start_platform(home, *args, "--port", str(port), env=env)
    second: Platform | None = None
    try:
        assert first.deploy(name, write_handler(tmp_path / "fn", HANDLER)).status_code == 202
        assert httpx.get(url, timeout=60).status_code == 200
        load = Load(lambda: url, clients=CLIENTS)
        try:
            wait_until(lambda: len(load.snapshot()) > 50, 30, "load")
            before = time.monotonic()
            first.proc.kill()
            first.proc.wait(30)
            kill = Fault(before, time.monotonic())
            second = start_platform(home, *args, "--port", str(port), env=env)
            listening = time.monotonic()
            wait_until(lambda: _first_success_after(load.snapshot(), kill.end) is not None, 120, "a call to succeed")
            back = _first_success_after(load.snapshot(), kill.end)
            seen = len(load.snapshot())
            wait_until(lambda: len(load.snapshot()) > seen + 200, 60, "calls after the restart")
        finally:
            calls = load.stop()
    finally:
        if second is not None:
            second.stop(timeout=120)
        if first.proc.poll() is None:
            first.stop(timeout=120)
    assert back is not None
    after = [c for c in calls if c.start >= back.end]
    lost = [c for c in calls if c.status != 200 and in_flight(c, kill)]
    refused = [c for c in calls if c.status != 200 and kill.end < c.start < back.end]
    REPORTS.append(
        f"platform SIGKILL and restart ({kind}): unavailable {back.end - kill.start:.2f}s "
        f"({back.end - listening:.2f}s after the new platform listened); {len(lost)} calls lost in flight, "
        f"{len(refused)} refused or waiting while down, {len(after)} calls after it was back: "
        f"{sum(c.status != 200 for c in after)} failed"
    )
    assert [c for c in after if c.status != 200] == []
    assert back.end - listening < 30


def _first_success_after(calls: list[Call], t: float) -> Call | None:
    return next((c for c in calls if c.status == 200 and c.start > t), None)
