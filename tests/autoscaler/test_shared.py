"""Shared load counters and leader election: the pure parts with time passed in, the Redis parts on a real server."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from autoscaler.leader import LeaseAction, LeaseView, RedisLock, lease_action
from autoscaler.shared import CounterPublisher, SharedLoad, Snapshot, Totals, merge
from gateway.metrics import Metrics
from tests.redis_support import shared_redis_url


def _snap(gw: str, inflight: int, started: int, area: float) -> Snapshot:
    return Snapshot(gw, {"f.ns": inflight} if inflight else {}, {"f.ns": started}, {"f.ns": area})


def test_merge_sums_inflight_and_grows_by_each_gateways_increase() -> None:
    t = merge(Totals(), [_snap("a", 2, 100, 50.0), _snap("b", 3, 40, 10.0)])
    assert t.inflight == {"f.ns": 5}
    assert t.started_now == {"f.ns": 140}
    assert t.started == {"f.ns": 0} and t.area == {"f.ns": 0.0}  # first sight: a baseline, not load
    t = merge(t, [_snap("a", 1, 110, 52.0), _snap("b", 4, 45, 13.0)])
    assert t.inflight == {"f.ns": 5} and t.started == {"f.ns": 15} and t.area == {"f.ns": 5.0}
    # b disappears, c appears with a long history: neither makes a negative rate nor a spike.
    t = merge(t, [_snap("a", 0, 111, 52.5), _snap("c", 1, 9000, 700.0)])
    assert t.inflight == {"f.ns": 1} and t.started == {"f.ns": 16} and t.area == {"f.ns": 5.5}
    assert t.started_now == {"f.ns": 9111} and set(t.seen) == {"a", "c"}


def _timed(gw: str, calls: int, seconds: float) -> Snapshot:
    return Snapshot(gw, {}, {"f.ns": calls}, {"f.ns": 0.0}, {"f.ns": (calls, 0)}, {"f.ns": seconds})


def test_merge_adds_up_call_time_by_each_gateways_increase() -> None:
    # The controller's mean call time (the queue's demand, autoscaler/backlog.py) comes from these sums.
    t = merge(Totals(), [_timed("a", 100, 50.0), _timed("b", 10, 1.0)])
    assert t.calls == {"f.ns": (0.0, 0)}  # first sight: a baseline
    t = merge(t, [_timed("a", 104, 50.4), _timed("b", 16, 1.6)])
    assert t.calls["f.ns"][1] == 10 and t.calls["f.ns"][0] == pytest.approx(1.0)
    # a restarted gateway (counters back to small numbers) adds no step, and a new one is a baseline
    t = merge(t, [_timed("a", 2, 0.2), _timed("b", 16, 1.6), _timed("c", 900, 90.0)])
    assert t.calls["f.ns"][1] == 10


def test_snapshot_round_trips_and_reads_a_gateways_metrics() -> None:
    m = Metrics()
    m.call_started("f.ns")
    m.call_started("f.ns")
    m.call_finished("f.ns", 200, 0.1)
    snap = Snapshot.of("gw", m, time.monotonic() + 2)
    assert snap.inflight == {"f.ns": 1} and snap.started == {"f.ns": 2} and snap.area["f.ns"] >= 2.0
    assert snap.charts["f.ns"][:2] == (1, 0) and sum(snap.charts["f.ns"][2:]) == 1  # calls, 5xx, one bucket hit
    assert snap.seconds == {"f.ns": pytest.approx(0.1)}
    assert Snapshot.decode("gw", snap.encode()) == snap


def test_lease_action() -> None:
    assert lease_action(None, "me", 100.0) is LeaseAction.CREATE
    assert lease_action(LeaseView("me", 50.0, 15.0), "me", 100.0) is LeaseAction.RENEW
    assert lease_action(LeaseView("other", 90.0, 15.0), "me", 100.0) is LeaseAction.WAIT
    assert lease_action(LeaseView("other", 85.0, 15.0), "me", 100.0) is LeaseAction.TAKE  # expired
    assert lease_action(LeaseView("", 99.0, 15.0), "me", 100.0) is LeaseAction.TAKE  # released


@pytest.fixture
def redis_url() -> str:
    return shared_redis_url()


async def test_one_leader_at_a_time_and_a_standby_takes_over_after_the_ttl(redis_url: str) -> None:
    key = f"test:leader:{uuid.uuid4().hex}"
    a, b = RedisLock(redis_url, "a", 1.0, key), RedisLock(redis_url, "b", 1.0, key)
    try:
        now = time.time()
        assert await a.tick(now) and not await b.tick(now)
        assert await a.tick(now + 0.3) and not await b.tick(now + 0.3)  # renewed
        # a dies (stops renewing): b waits out the TTL in Redis, then leads.
        deadline = time.monotonic() + 5
        while not await b.tick(time.time()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert not await a.tick(time.time())  # a comes back: it renews nothing and sees b's lock
        await b.release()
        assert await a.tick(time.time())  # a clean stop hands over at once
    finally:
        await a.release()
        await a.close()
        await b.close()


async def test_publishers_flush_and_the_controller_reads_the_sum(redis_url: str) -> None:
    fn = f"f{uuid.uuid4().hex[:6]}.openfaas-fn"
    m1, m2 = Metrics(), Metrics()
    p1, p2 = CounterPublisher(redis_url, m1, 0.1), CounterPublisher(redis_url, m2, 0.1)
    p1.gateway, p2.gateway = f"{fn}-gw1", f"{fn}-gw2"
    load = SharedLoad(redis_url, 5.0)
    try:
        for _ in range(3):
            m1.call_started(fn)
        for _ in range(2):
            m2.call_started(fn)
        m2.call_finished(fn, 200, 0.01)
        await p1.flush()
        await p2.flush()
        await load.refresh()
        assert load.inflight[fn] == 4 and load.totals.started_now[fn] == 5
        m1.call_started(fn)
        await p1.flush()
        await load.refresh()
        assert load.started[fn] == 1 and load.inflight[fn] == 5
        await p2.stop()  # a gateway leaving cleanly drops out at once
        await load.refresh()
        assert load.inflight[fn] == 4 and f"{fn}-gw2" not in load.gateways
    finally:
        await p1.stop()
        await load.close()
