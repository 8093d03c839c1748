"""With several gateways on one Redis, each one's console charts count every gateway's calls (rate, errors,
latency), not only those it proxied: two real ``stoker up`` on one Redis, calls through one, numbers on the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url

pytestmark = [pytest.mark.slow]

HANDLER = """\
import time

def handle(event, context):
    time.sleep(0.03)
    if event.query.get("fail"):
        raise RuntimeError("asked to fail")
    return "ok"
"""


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    env = {"STOKER_REDIS_URL": shared_redis_url(), "STOKER_CONSOLE_SAMPLE_S": "0.5", "STOKER_AUTOSCALE_TICK_S": "0.5"}
    started: list[Platform] = []
    try:
        for name in ("a", "b"):
            started.append(start_platform(tmp_path / name, env=env))
        yield started[0], started[1]
    finally:
        for p in started:
            p.stop()


def _stats(p: Platform, name: str) -> dict[str, Any]:
    with p.client() as c:
        r = c.get(f"/system/stats/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_a_gateways_charts_show_the_calls_another_gateway_proxied(
    two_gateways: tuple[Platform, Platform], tmp_path: Path
) -> None:
    a, b = two_gateways
    name = f"charts-{uuid.uuid4().hex[:8]}"  # unique: other runs on the same Redis publish their own functions
    folder = write_handler(tmp_path / "fn", HANDLER)
    for p in (a, b):  # the local backend runs replicas per platform; the function's name is what the counters share
        assert p.deploy(name, folder).status_code in (200, 202)
    with b.client() as c:
        for i in range(40):
            r = c.post(f"/function/{name}", params={"fail": "1"} if i % 4 == 0 else {}, content=b"x")
            assert r.status_code == (500 if i % 4 == 0 else 200), r.text

    # a proxied none of them: all it shows comes from b's counters in Redis.
    deadline = time.monotonic() + 30
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        seen = _stats(a, name)
        series = seen["series"]
        if (
            seen["invocations"] == 40
            and seen["errors"] == 10
            and any(v for v in series["rate"] if v)
            and any(v for v in series["errors"] if v)
            and any(v for v in series["p50"] if v)
        ):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"gateway a never showed gateway b's 40 calls and 10 errors: {seen}")
    # The latency comes from b's histogram: the handler sleeps 30 ms, so p50 is in (25 ms, 100 ms].
    p50 = max(v for v in series["p50"] if v)
    assert 0.025 <= p50 <= 0.1, series["p50"]
    # b itself counts the same calls (its own).
    mine = _stats(b, name)
    assert mine["invocations"] == 40 and mine["errors"] == 10
