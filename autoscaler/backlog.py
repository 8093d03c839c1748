"""Queue backlog as a demand for concurrency, through Little's law. Pure: no I/O, no clock.

A queued call is not load by itself: 10,000 no-op calls that take 0.3 ms each are 3 seconds of one slot's work, and
10,000 one-second calls are 10,000 seconds of it. What a backlog asks for is the concurrency that finishes it within
a drain target (``STOKER_QUEUE_DRAIN_S``) at the function's measured call time:

    needed = (lag + running) x mean call time / drain_s        (at most lag + running: one call per slot)
    extra  = max(0, needed - running)

``running`` (the queue's delivered, unfinished calls) already counts in the function's in-flight load, so only what
the backlog needs beyond it is added. Two floors keep a queue able to wake a function:

- calls queued and none running: at least one call's worth, so a function at zero gets a replica;
- no call time measured yet: that same one call, until the first calls are timed.

The mean call time comes from cumulative counters (call-seconds and calls finished, the gateway's duration histogram
or the sum over gateways the controller reads), read once a tick by :class:`CallTime`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueDemand:
    """Concurrency a function's backlog adds to its in-flight load, and why."""

    extra: float
    reason: str


def queue_demand(lag: int, running: int, mean_s: float | None, drain_s: float) -> QueueDemand:
    """The concurrency to add for ``lag`` queued calls not yet delivered, ``running`` delivered and unfinished, calls
    taking ``mean_s`` on average (None: not measured yet), to be drained within ``drain_s``."""
    if drain_s <= 0:
        raise ValueError(f"drain_s: must be greater than zero, got {drain_s:g}")
    lag, running = max(0, lag), max(0, running)
    if lag == 0:
        return QueueDemand(0.0, "")
    if mean_s is None:
        if running:
            return QueueDemand(0.0, f"queue: {lag} queued, {running} running, call time not measured yet")
        return QueueDemand(1.0, f"queue: {lag} queued, none running, call time not measured yet: one call's worth")
    backlog = lag + running
    needed = min(float(backlog), backlog * mean_s / drain_s)
    extra = max(0.0, needed - running)
    reason = (
        f"queue: {backlog} x {mean_s * 1000:.1f} ms / {drain_s:g} s drain = {needed:.1f} concurrency, "
        f"{running} running: +{extra:.1f}"
    )
    if running == 0 and extra < 1.0:
        return QueueDemand(1.0, f"{reason}; none running: one call's worth")
    return QueueDemand(extra, reason)


class CallTime:
    """A function's mean call time from cumulative ``(call-seconds, calls)`` counters, read once a tick: the mean
    over the calls finished since the previous read that saw any, so one slow call an hour ago does not linger and
    a tick without calls keeps the last figure. The first read takes the mean of everything so far."""

    def __init__(self) -> None:
        self._seconds = 0.0
        self._calls = 0
        self.mean: float | None = None

    def update(self, seconds: float, calls: int) -> float | None:
        if calls < self._calls or seconds < self._seconds:  # counters reset (a gateway restarted): start over
            self._seconds, self._calls = 0.0, 0
        done = calls - self._calls
        if done > 0:
            self.mean = (seconds - self._seconds) / done
            self._seconds, self._calls = seconds, calls
        return self.mean
