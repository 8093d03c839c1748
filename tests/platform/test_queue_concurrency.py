"""A queue worker runs as many calls at once as the function's ready replicas can take (replicas x their in-flight
limit, ``com.stoker.concurrency``), and more as the function grows (issue 16): a real ``stoker up`` on the local
backend with the embedded queue."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

SPANS = """
import os, time
def handle(event, context):
    start = time.time()
    time.sleep(0.4)
    with open(os.environ["OUT"], "a") as f:
        f.write(f"{start} {time.time()}\\n")
    return "ok"
"""
PER_REPLICA = 3


def _spans(out: Path) -> list[tuple[float, float]]:
    if not out.exists():
        return []
    return [(float(a), float(b)) for a, b in (line.split() for line in out.read_text().splitlines() if line)]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])  # an end sorts before a start
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


class WaitingWatch:
    """Samples the gateway's ``stoker_function_waiting`` (calls waiting for a replica slot) until stopped."""

    def __init__(self, p: Platform, fn: str) -> None:
        self.p, self.fn, self.most = p, fn, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        series = f'stoker_function_waiting{{function_name="{self.fn}"}} '
        with httpx.Client(base_url=self.p.url, timeout=10) as c:
            while not self._stop.is_set():
                for line in c.get("/metrics").text.splitlines():
                    if line.startswith(series):
                        self.most = max(self.most, int(float(line.split()[-1])))
                time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.most


def _enqueue(p: Platform, name: str, n: int) -> None:
    with httpx.Client(base_url=p.url, timeout=30) as c:
        for _ in range(n):
            assert c.post(f"/async-function/{name}", content=b"x").status_code == 202


def _available(p: Platform, name: str) -> int:
    with p.client() as c:
        return int(c.get(f"/system/function/{name}").json()["availableReplicas"])


def test_queued_calls_run_replicas_times_their_limit_at_once_and_more_as_replicas_grow(tmp_path: Path) -> None:
    name = f"spans-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "spans.txt"
    # No autoscaler: the replicas are the ones set here; 2, then 4, each taking PER_REPLICA calls at once.
    p = start_platform(tmp_path / "home", env={"STOKER_AUTOSCALE": "false", "STOKER_POOL_SIZE": "0"})
    try:
        labels = {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "4"}
        annotations = {"com.stoker.concurrency": str(PER_REPLICA)}
        r = p.deploy(name, write_handler(tmp_path / "fn", SPANS), labels=labels, annotations=annotations,
                     envVars={"OUT": str(out)})  # fmt: skip
        assert r.status_code == 202, r.text
        wait_until(lambda: _available(p, name) == 2, 60, "2 ready replicas")
        fn = f"{name}.openfaas-fn"

        watch = WaitingWatch(p, fn)
        _enqueue(p, name, 30)
        wait_until(lambda: len(_spans(out)) >= 30, 120, "the first 30 calls")
        first = _spans(out)
        assert _most_at_once(first) == 2 * PER_REPLICA
        # The worker itself holds back: no call it started waits at the proxy for a replica slot.
        assert watch.stop() == 0

        with p.client() as c:
            body = {"serviceName": name, "replicas": 4}
            assert c.post(f"/system/scale-function/{name}", json=body).status_code in (200, 202)
        wait_until(lambda: _available(p, name) == 4, 60, "4 ready replicas")
        watch = WaitingWatch(p, fn)
        _enqueue(p, name, 60)
        wait_until(lambda: len(_spans(out)) >= 90, 120, "the next 60 calls")
        assert _most_at_once(_spans(out)[30:]) == 4 * PER_REPLICA
        assert watch.stop() == 0
    finally:
        p.stop()
