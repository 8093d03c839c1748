"""``.map()`` over a real platform: order, no loss when a replica is killed midway, progress bar."""

from __future__ import annotations

import io
import os
import signal
import time

import pytest

from stoker.sdk import App
from stoker.sdk.mapping import Progress
from tests.platform_fixture import Platform


@pytest.mark.slow
def test_map_keeps_order_and_loses_nothing_when_a_replica_is_killed(sdk_platform: Platform) -> None:
    app = App("mapper")

    @app.function(min_replicas=2)
    def work(i: int) -> tuple[int, int, float]:
        time.sleep(0.01)  # long enough that calls are in flight on the replica when it dies
        return i * i, os.getpid(), time.time()

    app.deploy()
    results: list[tuple[int, int, float]] = []
    killed, killed_at = 0, 0.0
    for result in work.map(range(1000), concurrency=16):
        results.append(result)
        if len(results) == 300:
            killed, killed_at = result[1], time.time()
            os.kill(killed, signal.SIGKILL)
    assert [square for square, _, _ in results] == [i * i for i in range(1000)]
    assert killed in [pid for _, pid, _ in results[:300]]
    # Items answered by the killed replica all finished before it died (a chunk's answers can arrive later than the
    # 300th); every item that ran after the kill ran on the survivor or the restarted replica, none was lost.
    assert all(done <= killed_at for _, pid, done in results if pid == killed)
    assert any(done > killed_at for _, _, done in results)
    app.remove()


def test_map_raises_the_functions_exception_at_its_place_or_returns_it(sdk_platform: Platform) -> None:
    app = App("mapfail")

    @app.function
    def inverse(x: int) -> float:
        return 1 / x

    app.deploy()
    got = list(inverse.map([1, 2, 0, 4], return_exceptions=True))
    assert got[:2] == [1.0, 0.5] and isinstance(got[2], ZeroDivisionError) and got[3] == 0.25
    seen = []
    with pytest.raises(ZeroDivisionError):
        for value in inverse.map([1, 0, 2], concurrency=2):
            seen.append(value)
    assert seen == [1.0]
    app.remove()


def test_progress_bar_draws_counts_and_rate() -> None:
    out = io.StringIO()
    bar = Progress("fn", 4, out, interval_s=0)
    for _ in range(4):
        bar.advance()
    bar.close()
    text = out.getvalue()
    assert "\rfn [" in text and "4/4 100%" in text and text.endswith("/s\n")
