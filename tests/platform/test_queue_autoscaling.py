"""Queue lag scales a function by the concurrency its backlog needs (issue 16), on a real ``stoker up`` (local backend,
embedded queue): a backlog of cheap calls keeps one replica, one of one-second calls scales out."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

SLEEPER = """
import os, time
def handle(event, context):
    time.sleep(float(os.environ["DELAY"]))
    return "ok"
"""


def _enqueue(p: Platform, name: str, n: int) -> None:
    def send(_: int) -> None:
        with httpx.Client(base_url=p.url, timeout=30) as c:
            for _ in range(n // 4):
                assert c.post(f"/async-function/{name}", content=b"x").status_code == 202

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, range(4)))


def _most_replicas(p: Platform, name: str) -> int:
    most = 1
    for line in list(p.output):
        m = re.search(rf"{name}\.openfaas-fn: (\d+) -> (\d+) replicas", line)
        if m:
            most = max(most, int(m.group(2)))
    return most


def _calls(p: Platform, name: str) -> int:
    with p.client() as c:
        return int(c.get(f"/system/function/{name}").json()["invocationCount"])


def test_a_cheap_backlog_keeps_one_replica_and_a_slow_one_scales_out(tmp_path: Path) -> None:
    p = start_platform(tmp_path / "home", env={"STOKER_POOL_SIZE": "0"})
    cheap, slow = f"cheap-{uuid.uuid4().hex[:6]}", f"slow-{uuid.uuid4().hex[:6]}"
    labels = {"com.openfaas.scale.type": "capacity", "com.openfaas.scale.max": "4"}
    try:
        for name, delay in ((cheap, "0.02"), (slow, "1")):
            folder = write_handler(tmp_path / name, SLEEPER)
            r = p.deploy(name, folder, labels=labels, envVars={"DELAY": delay})
            assert r.status_code == 202, r.text
        # 2,000 calls of 20 ms: 40 s of one slot's work, 4 s of one replica's 10 slots, queued faster than they
        # run. Raw lag as load (the old rule) asked for the maximum.
        _enqueue(p, cheap, 2000)
        wait_until(lambda: _calls(p, cheap) >= 2000, 120, "the cheap backlog drained")
        assert _most_replicas(p, cheap) == 1, "".join(p.output[-20:])
        # 200 one-second calls: 200 s of work, 10 at once per replica; draining in 10 s takes about 20 at once.
        _enqueue(p, slow, 200)
        wait_until(lambda: _most_replicas(p, slow) >= 2, 60, "the slow function scaled out")
    finally:
        p.stop()
