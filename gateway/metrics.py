"""Prometheus metrics with the OpenFaaS gateway's names, rendered in the text exposition format.

Kept in plain dicts: the invoke path updates two counters and a histogram per call, and that must cost well under a
microsecond or two.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Invocation counters per function (``name.namespace``) and status code."""

    def __init__(self) -> None:
        self.invocations: dict[tuple[str, int], int] = {}
        self.started: dict[str, int] = {}
        self.seconds: dict[tuple[str, int], _Histogram] = {}
        # Load for the autoscaler: calls in flight (waiting for a replica included) and their time integral,
        # so a tick sees the average over its whole interval, not a sample that misses short bursts.
        self.inflight: dict[str, int] = {}
        self._inflight_area: dict[str, float] = {}
        self._inflight_since: dict[str, float] = {}

    def _inflight_add(self, function: str, delta: int) -> None:
        now = time.monotonic()
        n = self.inflight.get(function, 0)
        self._inflight_area[function] = self._inflight_area.get(function, 0.0) + n * (
            now - self._inflight_since.get(function, now)
        )
        self._inflight_since[function] = now
        self.inflight[function] = n + delta

    def inflight_seconds(self, function: str, now: float) -> float:
        """Cumulative in-flight call-seconds of ``function`` up to ``now`` (``time.monotonic()``)."""
        n = self.inflight.get(function, 0)
        return self._inflight_area.get(function, 0.0) + n * max(0.0, now - self._inflight_since.get(function, now))

    def call_started(self, function: str) -> None:
        self.started[function] = self.started.get(function, 0) + 1
        self._inflight_add(function, 1)

    def call_finished(self, function: str, code: int, seconds: float) -> None:
        self._inflight_add(function, -1)
        key = (function, code)
        self.invocations[key] = self.invocations.get(key, 0) + 1
        hist = self.seconds.get(key)
        if hist is None:
            hist = self.seconds[key] = _Histogram()
        hist.observe(seconds)

    def call_seconds(self) -> dict[str, tuple[float, int]]:
        """Per function: call-seconds and calls finished so far, summed over status codes (the autoscaler's mean
        call time, once a tick; never on the invoke path)."""
        out: dict[str, tuple[float, int]] = {}
        for (fn, _), hist in self.seconds.items():
            total, count = out.get(fn, (0.0, 0))
            out[fn] = (total + hist.total, count + hist.count)
        return out

    def chart_counts(self) -> dict[str, tuple[int, ...]]:
        """Per function: ``(calls, 5xx answers, calls per duration bucket...)`` summed over status codes, cumulative.
        Read by the console's sampler and the Redis publisher on their ticks, never on the invoke path."""
        out: dict[str, list[int]] = {}
        width = len(BUCKETS) + 1
        for (fn, code), hist in self.seconds.items():
            row = out.setdefault(fn, [0] * (2 + width))
            row[0] += hist.count
            if code >= 500:
                row[1] += hist.count
            for i, n in enumerate(hist.counts):
                row[2 + i] += n
        return {fn: tuple(row) for fn, row in out.items()}

    def invocation_count(self, function: str) -> int:
        return sum(n for (name, _), n in self.invocations.items() if name == function)

    def forget(self, function: str) -> None:
        """Drop a removed function's series."""
        for table in (self.invocations, self.seconds):
            for key in [k for k in table if k[0] == function]:
                del table[key]
        for state in (self.started, self._inflight_area, self._inflight_since):
            state.pop(function, None)
        if not self.inflight.get(function):
            self.inflight.pop(function, None)

    def render(self, replicas: Iterable[tuple[str, int]], extra: Callable[[], Iterable[str]] | None = None) -> str:
        """The exposition text; ``replicas`` gives ``(function, replica count)`` for gateway_service_count."""
        out = [
            "# HELP gateway_function_invocation_total Function invocations by status code",
            "# TYPE gateway_function_invocation_total counter",
        ]
        for (fn, code), n in sorted(self.invocations.items()):
            out.append(f'gateway_function_invocation_total{{function_name="{fn}",code="{code}"}} {n}')
        out += [
            "# HELP gateway_function_invocation_started Function invocations started",
            "# TYPE gateway_function_invocation_started counter",
        ]
        for fn, n in sorted(self.started.items()):
            out.append(f'gateway_function_invocation_started{{function_name="{fn}"}} {n}')
        out += [
            "# HELP gateway_functions_seconds Function call duration seen by the gateway",
            "# TYPE gateway_functions_seconds histogram",
        ]
        for (fn, code), hist in sorted(self.seconds.items()):
            labels = f'function_name="{fn}",code="{code}"'
            running = 0
            for bound, n in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
                running += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f'gateway_functions_seconds_bucket{{{labels},le="{le}"}} {running}')
            out.append(f"gateway_functions_seconds_sum{{{labels}}} {hist.total}")
            out.append(f"gateway_functions_seconds_count{{{labels}}} {hist.count}")
        out += [
            "# HELP gateway_service_count Current replicas of a function",
            "# TYPE gateway_service_count gauge",
        ]
        for fn, n in sorted(replicas):
            out.append(f'gateway_service_count{{function_name="{fn}"}} {n}')
        if extra is not None:
            out.extend(extra())
        return "\n".join(out) + "\n"
