"""The chart ring: bounded, rates from counter increases, percentiles from histogram buckets (no I/O, time given)."""

from __future__ import annotations

import math

from gateway.console.series import Counters, OtherGateways, ScaleEvent, SeriesBook, counters, quantile
from gateway.metrics import BUCKETS, Metrics


def test_quantile_interpolates_within_buckets_like_prometheus() -> None:
    assert math.isnan(quantile(0.5, [0, 0, 0]))
    # 10 observations in (0, 0.005], 10 in (0.005, 0.01]
    counts = [10, 10] + [0] * (len(BUCKETS) - 1)
    assert quantile(0.5, counts) == 0.005
    assert abs(quantile(0.75, counts) - 0.0075) < 1e-12
    assert quantile(0.99, [0] * len(BUCKETS) + [3]) == BUCKETS[-1]  # above every bound: the last bound


def test_a_ring_keeps_15_minutes_and_no_more() -> None:
    book = SeriesBook(step_s=10)
    assert book.points == 90
    gauges = {"f.ns": {"replicas": 1, "desired": 1, "inflight": 0, "lag": 0}}
    for i in range(500):
        book.sample(1000.0 + 10 * i, {"f.ns": Counters(i * 20, 0, ())}, gauges)
    series = book.functions["f.ns"]
    assert len(series.timestamps()) == 90 and series.timestamps()[-1] == 1000.0 + 10 * 499
    assert series.column("rate") == [2.0] * 90  # 20 calls per 10 s
    assert sum(len(a) * a.itemsize for a in series.data.values()) + len(series.times) * 8 < 4096


def test_rates_and_percentiles_come_from_the_increase_since_the_last_sample() -> None:
    metrics = Metrics()
    book = SeriesBook(step_s=1)
    gauges = {"f.ns": {"replicas": 2, "desired": 3, "inflight": 0, "lag": 5}}
    book.sample(0.0, counters(metrics), gauges)  # the baseline
    for i in range(100):  # 97 fast answers, 3 slow failures: the 99th percentile is a slow one
        metrics.call_started("f.ns")
        metrics.call_finished("f.ns", 502 if i < 3 else 200, 3.0 if i < 3 else 0.002)
    book.sample(2.0, counters(metrics), gauges)
    s = book.functions["f.ns"]
    assert s.column("rate")[-1] == 50.0 and s.column("errors")[-1] == 1.5
    assert s.column("p50")[-1] is not None and s.column("p50")[-1] <= 0.005  # type: ignore[operator]
    assert 2.5 <= s.column("p99")[-1] <= 5.0  # type: ignore[operator]
    assert s.column("lag")[-1] == 5 and s.column("desired")[-1] == 3
    book.sample(3.0, counters(metrics), gauges)  # no calls since: no rate, no latency
    assert s.column("rate")[-1] == 0 and s.column("p99")[-1] is None
    book.sample(4.0, counters(metrics), {})  # removed: forgotten
    assert "f.ns" not in book.functions


def test_a_scale_up_from_zero_is_a_cold_start() -> None:
    book = SeriesBook(step_s=1)
    book.scaled("f.ns", ScaleEvent(1.0, 0, 1, "activator", "a request waits"))
    book.scaled("f.ns", ScaleEvent(2.0, 1, 3, "autoscaler", "load"))
    assert book.functions["f.ns"].cold_starts == 1 and len(book.functions["f.ns"].events) == 2


def test_other_gateways_add_each_ones_increase_with_no_spike_when_one_comes_or_goes() -> None:
    others = OtherGateways()
    hist = [0] * (len(BUCKETS) + 1)
    fast, slow = list(hist), list(hist)
    fast[0], slow[-1] = 1, 1

    def row(calls: int, errors: int, per_bucket: list[int], times: int) -> tuple[int, ...]:
        return (calls, errors, *(n * times for n in per_bucket))

    others.add({"b": {"f.ns": row(100, 10, fast, 100)}})
    assert others.plus({}) == {}  # first sight: a baseline, not calls
    others.add({"b": {"f.ns": row(130, 12, fast, 130)}, "c": {"f.ns": row(9000, 900, slow, 9000)}})
    grown = others.plus({})["f.ns"]
    assert (grown.calls, grown.errors, grown.buckets[0], grown.buckets[-1]) == (30, 2, 30, 0)  # c's history left out
    # b goes away; c grows by 5 slow calls; a function b never had before counts from zero.
    others.add({"c": {"f.ns": row(9005, 900, slow, 9005), "g.ns": row(1, 1, slow, 1)}})
    total = others.plus({"f.ns": Counters(7, 0, tuple(fast))})["f.ns"]
    assert (total.calls, total.errors, total.buckets[0], total.buckets[-1]) == (42, 2, 31, 5)
    assert others.total["g.ns"] == Counters(1, 1, tuple(slow))
    others.add({"c": {"f.ns": row(9005, 900, slow, 9005), "g.ns": row(3, 2, slow, 3)}})
    assert others.total["g.ns"] == Counters(3, 2, tuple(n * 3 for n in slow))
    others.forget(["f.ns"])
    assert set(others.total) == {"f.ns"}
