"""Queue backlog as a demand for concurrency (autoscaler/backlog.py), alone and driving the decider through traces of a
simulated queue on a fake clock (no sleeps, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from autoscaler.backlog import CallTime, queue_demand
from autoscaler.decider import Decider, DeciderSpec

DRAIN_S = 10.0


def test_no_backlog_adds_nothing() -> None:
    assert queue_demand(0, 5, 0.5, DRAIN_S).extra == 0.0


def test_cheap_calls_need_no_more_than_what_runs() -> None:
    # 10,000 calls of 3 ms are 30 s of one slot's work: 3 slots drain them in 10 s, and 10 run already.
    demand = queue_demand(10_000, 10, 0.003, DRAIN_S)
    assert demand.extra == 0.0
    assert "10010 x 3.0 ms / 10 s drain" in demand.reason


def test_slow_calls_ask_for_the_concurrency_that_drains_them() -> None:
    # 990 queued + 10 running calls of 1 s in 10 s: 100 at once, 90 more than run now.
    assert queue_demand(990, 10, 1.0, DRAIN_S).extra == pytest.approx(90.0)


def test_never_more_than_one_slot_per_call() -> None:
    assert queue_demand(5, 0, 60.0, DRAIN_S).extra == 5.0


def test_queued_with_nothing_running_wakes_the_function() -> None:
    assert queue_demand(3, 0, 0.0001, DRAIN_S).extra == 1.0
    unmeasured = queue_demand(3, 0, None, DRAIN_S)
    assert unmeasured.extra == 1.0 and "not measured" in unmeasured.reason
    assert queue_demand(3, 2, None, DRAIN_S).extra == 0.0  # running: they get timed, and count as in flight


def test_call_time_is_the_mean_since_the_last_read_with_calls() -> None:
    ct = CallTime()
    assert ct.update(0.0, 0) is None
    assert ct.update(2.0, 4) == pytest.approx(0.5)  # first read: everything so far
    assert ct.update(2.3, 7) == pytest.approx(0.1)  # 3 calls, 0.3 s
    assert ct.update(2.3, 7) == pytest.approx(0.1)  # no call this tick: the last figure stays
    assert ct.update(1.0, 1) == pytest.approx(1.0)  # counters reset (a restart): from scratch


@dataclass
class SimQueue:
    """A function fed by its queue: the worker runs ``replicas x slots`` calls at once (worker concurrency follows
    replicas), each taking ``service_s`` on a replica, and the platform's process handles at most ``max_rate`` calls
    per second whatever the replicas (two cores). Measured call time and in-flight follow Little's law."""

    lag: int
    service_s: float
    slots: int = 10
    max_rate: float = 3000.0

    def tick(self, replicas: int, dt: float) -> tuple[float, float, int, int]:
        """Run ``dt`` seconds; return (average in flight, mean call time, lag, running) at the end."""
        concurrency = min(max(1, replicas * self.slots) if replicas else 0, self.lag)
        if concurrency == 0:
            return 0.0, 0.0, self.lag, 0
        rate = min(concurrency / self.service_s, self.max_rate)
        done = min(self.lag, int(rate * dt))
        self.lag -= done
        return float(concurrency), concurrency / rate, max(0, self.lag - concurrency), min(concurrency, self.lag)


def drive(sim: SimQueue, seconds: int, replicas: int = 1, known: bool = True) -> list[int]:
    """The loop's arithmetic on a fake clock: load = in flight + the backlog's demand; every decision applied."""
    spec = DeciderSpec(target=10.0, min_replicas=0, max_replicas=20)
    decider = Decider(spec, now=0.0)
    mean: float | None = None
    lag, running = sim.lag, 0
    history = []
    for t in range(1, seconds + 1):
        inflight, measured, lag, running = sim.tick(replicas, 1.0)
        if known and measured:
            mean = measured
        demand = queue_demand(lag, running, mean, DRAIN_S)
        decider.record(float(t), inflight + demand.extra, demand.reason)
        replicas = decider.decide(float(t), replicas).desired
        history.append(replicas)
    return history


def test_a_no_op_backlog_stays_at_one_or_two_replicas() -> None:
    sim = SimQueue(lag=10_000, service_s=0.0003)
    history = drive(sim, 30)
    assert sim.lag == 0
    assert max(history) <= 2  # raw lag as load (the old rule) asked for the maximum, 20


def test_a_one_second_function_backlog_scales_out_and_drains() -> None:
    sim = SimQueue(lag=1000, service_s=1.0)
    history = drive(sim, 60)
    assert max(history) >= 8  # 1000 s of work, 10 s to drain: about 100 at once, 10 replicas of 10
    assert sim.lag == 0
    one_replica = math.ceil(1000 / 10)  # seconds to drain at one replica's 10 calls at once
    assert history.index(max(history)) < 10 < one_replica


def test_a_backlog_at_zero_without_a_measured_call_time_gets_one_replica() -> None:
    spec = DeciderSpec(target=10.0, min_replicas=0, max_replicas=20)
    decider = Decider(spec, now=0.0)
    demand = queue_demand(500, 0, None, DRAIN_S)
    decider.record(1.0, demand.extra, demand.reason)
    decision = decider.decide(1.0, 0)
    assert decision.desired == 1
    assert "not measured yet" in decision.reason
