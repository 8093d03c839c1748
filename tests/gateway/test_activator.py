"""Calls that find no replica wait in the function's line (gateway/activator.py), and get answers instead of hangs, as
docs/autoscaling.md says: a full line 503 with ``Retry-After: 1``, a wait past the function's timeout 504, a function
removed while they wait 404; and the waiting calls are served once a replica is ready.

A real ``stoker up``. The function is deployed, scaled to zero, then held: its handler module blocks at import while a
file exists, so the replica the first call starts never becomes ready until the test removes the file."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

QUEUE_SIZE = 2

HELD_AT_IMPORT = """
import os, time

hold = os.environ["HOLD"]
deadline = time.monotonic() + 120
while os.path.exists(hold) and time.monotonic() < deadline:
    time.sleep(0.02)

def handle(event, context):
    return "served"
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_WAIT_QUEUE_SIZE": str(QUEUE_SIZE)})
    yield p
    p.stop()


def _waiting(p: Platform, name: str) -> int:
    text = httpx.get(f"{p.url}/metrics", timeout=10).text
    m = re.search(rf'^stoker_function_waiting{{function_name="{re.escape(name)}\.openfaas-fn"}} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


def _held(p: Platform, tmp_path: Path, labels: dict[str, str] | None = None) -> tuple[str, Path]:
    """A function deployed and scaled to zero, whose next replica stays unready while the returned file exists."""
    name = f"held-{uuid.uuid4().hex[:8]}"
    hold = tmp_path / "hold"
    folder = write_handler(tmp_path / name, HELD_AT_IMPORT)
    r = p.deploy(name, folder, envVars={"HOLD": str(hold)}, labels={"com.openfaas.scale.max": "1", **(labels or {})})
    assert r.status_code == 202, r.text
    with p.client() as c:
        assert c.post(f"/system/scale-function/{name}", json={"replicas": 0}).status_code == 202
        wait_until(lambda: c.get(f"/system/function/{name}").json()["availableReplicas"] == 0, 60, "scale to zero")
    hold.touch()
    return name, hold


def _call(p: Platform, name: str) -> httpx.Response:
    return httpx.post(f"{p.url}/function/{name}", content=b"x", timeout=120)


def test_a_full_line_is_503_with_retry_after_and_the_line_is_served_once_a_replica_is_ready(
    platform: Platform, tmp_path: Path
) -> None:
    name, hold = _held(platform, tmp_path)
    with ThreadPoolExecutor(QUEUE_SIZE) as pool:
        try:
            waiting: list[Future[httpx.Response]] = [pool.submit(_call, platform, name) for _ in range(QUEUE_SIZE)]
            wait_until(lambda: _waiting(platform, name) == QUEUE_SIZE, 60, "the line to fill")
            full = _call(platform, name)
            assert full.status_code == 503, full.text
            assert full.headers["retry-after"] == "1"
            assert "STOKER_WAIT_QUEUE_SIZE" in full.json()["error"] and name in full.json()["error"]
            assert not any(f.done() for f in waiting)  # the refusal took nobody's place
        finally:
            hold.unlink()
        assert [(r.status_code, r.text) for r in (f.result() for f in waiting)] == [(200, "served")] * QUEUE_SIZE
    assert _waiting(platform, name) == 0


def test_a_wait_past_the_functions_timeout_is_504(platform: Platform, tmp_path: Path) -> None:
    name, hold = _held(platform, tmp_path, {"com.stoker.timeout": "2s"})
    try:
        started = time.monotonic()
        r = _call(platform, name)
        took = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json()["error"] == f"function '{name}': no replica became ready within its timeout (2s)"
        assert took >= 1.9, took  # not before the timeout (its upper end is the client's, 120 s)
        assert _waiting(platform, name) == 0  # the call left the line
    finally:
        hold.unlink()
    wait_until(lambda: _call(platform, name).status_code == 200, 60, "the function to serve once released")


def test_calls_waiting_for_a_function_that_is_removed_get_404(platform: Platform, tmp_path: Path) -> None:
    name, hold = _held(platform, tmp_path)
    try:
        with ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(_call, platform, name) for _ in range(2)]
            wait_until(lambda: _waiting(platform, name) == 2, 60, "two calls in the line")
            with platform.client() as c:
                assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202
            answers = [f.result() for f in waiting]
    finally:
        hold.unlink()
    assert [r.status_code for r in answers] == [404, 404], [r.text for r in answers]
    assert all(r.json()["error"] == f"function '{name}' was removed while the request waited" for r in answers)
    assert _call(platform, name).status_code == 404
    # Nothing of the removed function keeps running: the replica that was starting for it is stopped, and none is
    # started in its place (one was, cold, once its warm start ended after the removal; nobody ever stopped it).
    wait_until(lambda: not _processes_with(f"HOLD={hold}"), 30, "the removed function's processes to end")


def _processes_with(variable: str) -> list[int]:
    """Our processes whose environment holds ``variable`` (NAME=value)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if variable.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone, or not ours
    return found
