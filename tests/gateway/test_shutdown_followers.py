"""A followed log (NDJSON or the console's server-sent events) is not work in flight: stopping the platform ends it
at once instead of holding the shutdown for the whole drain timeout (found when a console left open kept `stoker up`
from stopping for 30 s)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, start_platform


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_stopping_the_platform_ends_followed_logs_at_once(tmp_path: Path, accept: str) -> None:
    p = start_platform(tmp_path / "home", env={"STOKER_POOL_SIZE": "0", "STOKER_DRAIN_TIMEOUT_S": "30"})
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        opened = threading.Event()
        ended: list[float] = []

        def follow() -> None:
            with (
                httpx.Client(base_url=p.url, auth=p.auth, timeout=60) as c,
                c.stream(
                    "GET", "/system/logs", params={"name": "hello", "follow": "true"}, headers={"Accept": accept}
                ) as r,
            ):
                assert r.status_code == 200
                opened.set()
                for _ in r.iter_bytes():
                    pass
            ended.append(time.monotonic())

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert opened.wait(30)
        stopped = time.monotonic()
        assert p.stop(timeout=60) == 0
        took = time.monotonic() - stopped
        reader.join(10)
        assert ended, "the followed log never ended"
        assert took < 10, f"stopping took {took:.1f} s with a followed log open (drain timeout 30 s)"
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
