"""The series behind the console's charts: a bounded ring of samples per function, kept in the gateway's memory.

Nothing here runs on the invoke path. The proxy already counts calls and their durations in
:class:`gateway.metrics.Metrics` (cumulative counters and histograms); with several gateways each also publishes
them to Redis on its tick (:mod:`autoscaler.shared`) and :class:`OtherGateways` adds up the others'. A sampler reads
them every ``STOKER_CONSOLE_SAMPLE_S`` and :meth:`SeriesBook.sample` turns the increase since the previous sample
into a point: calls per second, errors (5xx) per second, p50 and p99 latency (interpolated within the histogram's
buckets, as Prometheus's ``histogram_quantile`` does), and the gauges it is given (replicas, desired replicas, calls
in flight, queue lag). Each function keeps 15 minutes of points in float arrays (a few KB) plus its last scaling events.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.metrics import BUCKETS, Metrics

WINDOW_S = 900.0  # the charts show the last 15 minutes
RECENT_S = 10.0  # the numbers beside them are the mean over the last 10 seconds
MAX_POINTS = 900
FIELDS = ("rate", "errors", "p50", "p99", "replicas", "desired", "inflight", "lag")
GAUGES = FIELDS[4:]
EVENTS_KEPT = 50


@dataclass(frozen=True)
class Counters:
    """One function's cumulative counters at one moment: calls, 5xx answers, and calls per duration bucket."""

    calls: int
    errors: int
    buckets: tuple[int, ...]


@dataclass(frozen=True)
class ScaleEvent:
    """A replica change and why (the autoscaler's or the activator's reason), for the function page's markers."""

    at: float  # Unix time
    before: int
    after: int
    source: str
    reason: str


def counters(metrics: Metrics) -> dict[str, Counters]:
    """Every function's counters, summed over status codes, read from the gateway's metrics."""
    return {fn: _counters(row) for fn, row in metrics.chart_counts().items()}


def _counters(row: tuple[int, ...]) -> Counters:
    """``(calls, 5xx, buckets...)``, the shape :meth:`Metrics.chart_counts` and the Redis snapshots carry."""
    return Counters(row[0], row[1], tuple(row[2:])) if len(row) >= 2 else Counters(0, 0, ())


def _add(a: Counters, b: Counters) -> Counters:
    if not b.buckets:
        buckets = a.buckets
    elif not a.buckets:
        buckets = b.buckets
    else:
        buckets = tuple(x + y for x, y in zip(a.buckets, b.buckets, strict=False))
    return Counters(a.calls + b.calls, a.errors + b.errors, buckets)


def _increase(now: Counters, before: Counters) -> Counters:
    old = before.buckets or (0,) * len(now.buckets)
    if len(old) != len(now.buckets):  # another bucket layout (a gateway of another version): rates only
        old = now.buckets
    return Counters(
        max(0, now.calls - before.calls),
        max(0, now.errors - before.errors),
        tuple(max(0, x - y) for x, y in zip(now.buckets, old, strict=True)),
    )


class OtherGateways:
    """The calls the other gateways sharing Redis proxied, as cumulative counters that only grow (pure, no I/O).

    Each :meth:`add` takes their latest snapshots (``gateway id -> function -> (calls, 5xx, buckets...)``) and adds
    each gateway's increase since its previous snapshot: a gateway seen for the first time sets a baseline (its history
    is not new calls) and one that is gone adds nothing, so neither makes a spike or a negative rate in the charts.
    """

    def __init__(self) -> None:
        self.total: dict[str, Counters] = {}
        self._seen: dict[str, dict[str, Counters]] = {}

    def add(self, snapshots: Mapping[str, Mapping[str, tuple[int, ...]]]) -> None:
        seen: dict[str, dict[str, Counters]] = {}
        empty = Counters(0, 0, ())
        for gateway, charts in snapshots.items():
            now = {fn: _counters(row) for fn, row in charts.items()}
            before = self._seen.get(gateway)
            seen[gateway] = now
            if before is None:
                continue
            for fn, counted in now.items():
                grown = _increase(counted, before.get(fn, empty))
                if grown.calls or grown.errors:
                    self.total[fn] = _add(self.total.get(fn, empty), grown)
        self._seen = seen

    def plus(self, local: Mapping[str, Counters]) -> dict[str, Counters]:
        """This gateway's own counters plus the others' increases: the platform's calls, per function."""
        out = dict(local)
        for fn, counted in self.total.items():
            out[fn] = _add(out.get(fn, Counters(0, 0, ())), counted)
        return out

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the functions not in ``keep`` (removed)."""
        wanted = set(keep)
        for fn in [f for f in self.total if f not in wanted]:
            del self.total[fn]


def quantile(q: float, counts: Iterable[int], bounds: tuple[float, ...] = BUCKETS) -> float:
    """The ``q`` quantile (0..1) of observations counted per bucket (``counts[i]`` in ``(bounds[i-1], bounds[i]]``,
    the last one above every bound), interpolated linearly within its bucket; NaN without observations. Beyond the
    last bound the answer is that bound: the histogram cannot say more."""
    counts = list(counts)
    total = sum(counts)
    if total <= 0:
        return math.nan
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            if i >= len(bounds):
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * max(0.0, rank - seen) / n
        seen += n
    return bounds[-1]


class FunctionSeries:
    """The ring of one function: ``points`` samples of every field in :data:`FIELDS`, oldest overwritten first."""

    __slots__ = ("cold_starts", "data", "events", "head", "last", "size", "times")

    def __init__(self, points: int) -> None:
        self.times = array("d", bytes(8 * points))
        self.data = {f: array("f", bytes(4 * points)) for f in FIELDS}
        self.head = 0  # where the next sample goes
        self.size = 0
        self.last: Counters | None = None
        self.cold_starts = 0
        self.events: deque[ScaleEvent] = deque(maxlen=EVENTS_KEPT)

    def add(self, at: float, values: Mapping[str, float]) -> None:
        self.times[self.head] = at
        for f, column in self.data.items():
            column[self.head] = values.get(f, math.nan)
        self.head = (self.head + 1) % len(self.times)
        self.size = min(self.size + 1, len(self.times))

    def _order(self) -> range:
        n = len(self.times)
        return range(self.head - self.size + n, self.head + n)

    def column(self, field: str) -> list[float | None]:
        """A field oldest first, NaN (no calls: no latency) as None, rounded to 4 significant digits for JSON."""
        column, n = self.data[field], len(self.times)
        return [_round(column[i % n]) for i in self._order()]

    def timestamps(self) -> list[float]:
        n = len(self.times)
        return [round(self.times[i % n], 1) for i in self._order()]

    def recent(self, field: str, points: int) -> float | None:
        """The mean of a field over the last ``points`` samples (those without a value left out): what the overview
        shows, steadier than one sample."""
        column, n = self.data[field], len(self.times)
        values = [column[(self.head - 1 - i) % n] for i in range(min(points, self.size))]
        values = [v for v in values if not math.isnan(v)]
        return _round(sum(values) / len(values)) if values else None


def _round(value: float) -> float | None:
    if math.isnan(value):
        return None
    return float(f"{value:.4g}")


class SeriesBook:
    """Every function's ring; :meth:`sample` adds one point to each from counters and gauges (no I/O, time given)."""

    def __init__(self, step_s: float) -> None:
        self.step_s = step_s
        self.points = max(2, min(MAX_POINTS, math.ceil(WINDOW_S / step_s)))
        self.recent_points = max(1, round(RECENT_S / step_s))
        self.functions: dict[str, FunctionSeries] = {}
        self._last_at: float | None = None

    def get(self, fn: str) -> FunctionSeries:
        series = self.functions.get(fn)
        if series is None:
            series = self.functions[fn] = FunctionSeries(self.points)
        return series

    def sample(self, at: float, now: Mapping[str, Counters], gauges: Mapping[str, Mapping[str, float]]) -> None:
        """One point per function in ``gauges`` (the deployed ones) at Unix time ``at``; rates are the increase of
        ``now`` over the previous sample, divided by the time between them. Functions no longer deployed are
        dropped."""
        dt = at - self._last_at if self._last_at is not None else self.step_s
        self._last_at = at
        for fn in [f for f in self.functions if f not in gauges]:
            del self.functions[fn]
        empty = Counters(0, 0, ())
        for fn, gauge in gauges.items():
            series = self.get(fn)
            current = now.get(fn, empty)
            before = series.last or current  # the first sample of a function only sets the baseline
            series.last = current
            calls = max(0, current.calls - before.calls)
            values = dict(gauge)
            values["rate"] = calls / dt if dt > 0 else 0.0
            values["errors"] = max(0, current.errors - before.errors) / dt if dt > 0 else 0.0
            if calls and current.buckets:
                old = before.buckets or (0,) * len(current.buckets)
                delta = [max(0, a - b) for a, b in zip(current.buckets, old, strict=True)]
                values["p50"] = quantile(0.5, delta)
                values["p99"] = quantile(0.99, delta)
            series.add(at, values)

    def scaled(self, fn: str, event: ScaleEvent) -> None:
        """Record a replica change; one from zero replicas is a cold start."""
        series = self.get(fn)
        series.events.append(event)
        if event.before == 0 and event.after > 0:
            series.cold_starts += 1
