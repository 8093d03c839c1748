"""What a platform's queue worker read ahead (events/consumer.py) when its process is stopped or killed: two real
``stoker up`` processes on one Redis run the same function (one call at a time each, so each holds one message read
ahead of its running call). SIGTERM: the stopping one finishes its running call and gives the read-ahead message
back, and the other runs it at once, long before the claim idle time. SIGKILL: nothing is given back; the other runs
the dead one's messages once they have been idle for the claim idle time."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url
from tests.wait_support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HANDLER = """
import os, time
def handle(event, context):
    key = event.headers.get("x-stoker-message-id")
    with open(os.environ["OUT"], "a") as f:
        f.write(f"start {os.environ['WHO']} {key}\\n")
    time.sleep(float(os.environ["DELAY"]))
    with open(os.environ["OUT"], "a") as f:
        f.write(f"done {os.environ['WHO']} {key}\\n")
    return "ok"
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _platform(tmp: Path, who: str, url: str, stream: str, out: Path, delay: float, claim_idle_s: float) -> Platform:
    env = {"STOKER_QUEUE_CLAIM_IDLE_S": str(claim_idle_s), "STOKER_POOL_SIZE": "0"}
    p = start_platform(tmp / who, "--redis", url, env=env)
    r = p.deploy(
        "handoff",
        write_handler(tmp / f"fn-{who}", HANDLER),
        annotations={"com.stoker.queue.stream": stream, "com.stoker.queue.concurrency": "1"},
        envVars={"OUT": str(out), "WHO": who, "DELAY": str(delay)},
    )
    assert r.status_code == 202, r.text
    return p


def _two_platforms(tmp: Path, claim_idle_s: float) -> tuple[Platform, Platform, list[str], Path]:
    """``a`` running the first message with the second read ahead, ``b`` running the third: (a, b, ids, out)."""
    url, stream, out = shared_redis_url(), f"handoff-{uuid.uuid4().hex[:8]}", tmp / "out.txt"
    r = redis.Redis.from_url(url)
    a = _platform(tmp, "a", url, stream, out, 3.0, claim_idle_s)
    ids = [r.xadd(stream, {"n": str(i)}).decode() for i in range(3)]
    wait_until(lambda: f"start a {ids[0]}" in _lines(out), 60, "a runs the first message")
    group = "stoker:handoff.openfaas-fn"
    wait_until(lambda: r.xpending(stream, group)["pending"] == 2, 30, "a holds the second, read ahead")
    b = _platform(tmp, "b", url, stream, out, 0.1, claim_idle_s)
    wait_until(lambda: f"done b {ids[2]}" in _lines(out), 60, "b runs the third message")
    assert not any(line.startswith("start") and ids[1] in line for line in _lines(out))  # read ahead: not run
    return a, b, ids, out


def test_sigterm_gives_the_read_ahead_message_to_another_platform_at_once(tmp_path: Path) -> None:
    claim_idle_s = 120.0
    a, b, ids, out = _two_platforms(tmp_path, claim_idle_s)
    try:
        a.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        wait_until(lambda: f"done b {ids[1]}" in _lines(out), 60, "b runs what a had read ahead")
        assert time.monotonic() - stopped < claim_idle_s / 4, "given back, not reclaimed after the claim idle time"
        assert a.stop(timeout=60) == 0
        lines = _lines(out)
        assert f"done a {ids[0]}" in lines  # a finished its running call while stopping
        starts = [line for line in lines if line.startswith("start ")]
        assert sorted(starts) == sorted([f"start a {ids[0]}", f"start b {ids[1]}", f"start b {ids[2]}"])
    finally:
        a.stop(signal.SIGKILL)
        b.stop()


def test_sigkill_leaves_the_read_ahead_message_to_be_reclaimed_after_the_claim_idle_time(tmp_path: Path) -> None:
    claim_idle_s = 4.0
    a, b, ids, out = _two_platforms(tmp_path, claim_idle_s)
    try:
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: f"start b {ids[1]}" in _lines(out), 60, "b runs what a had read ahead")
        # Reclaimed, not given back (that takes about a second): a's last renewal came at most claim_idle_s / 3
        # before the kill.
        assert time.monotonic() - killed >= claim_idle_s * 2 / 3
        wait_until(lambda: {f"done b {ids[0]}", f"done b {ids[1]}"} <= set(_lines(out)), 60, "b runs a's two")
        assert [line for line in _lines(out) if line.startswith("start") and ids[1] in line] == [f"start b {ids[1]}"]
    finally:
        b.stop()
