"""The decision function driven by simulated traffic traces on a fake clock (no sleeps, no I/O)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from autoscaler.decider import Decider, DeciderError, DeciderSpec, Decision
from stoker.config import Config
from stoker.spec import FunctionDeployment

TICK = 1.0


def run(
    spec: DeciderSpec, trace: Callable[[float], float], seconds: float, start_replicas: int = 1
) -> list[tuple[float, Decision]]:
    """Drive a decider tick by tick, applying every decision at once; ``trace(t)`` is the load during second t."""
    decider = Decider(spec, now=0.0)
    replicas = start_replicas
    out: list[tuple[float, Decision]] = []
    t = 0.0
    while t < seconds:
        t += TICK
        decider.record(t, trace(t))
        decision = decider.decide(t, replicas)
        replicas = decision.desired
        out.append((t, decision))
    return out


def replicas_at(history: list[tuple[float, Decision]], t: float) -> int:
    return next(d.desired for when, d in history if when >= t)


def test_step_load_scales_up_within_the_panic_window() -> None:
    # 1 client, then 20 at t=10: with target 1 in flight per replica, 20 replicas are needed.
    spec = DeciderSpec(target=1)
    history = run(spec, lambda t: 1.0 if t < 10 else 20.0, 40)
    assert replicas_at(history, 9) == 1
    first_panic = next(when for when, d in history if d.panicking)
    assert 10 <= first_panic <= 10 + spec.panic_window_s
    assert replicas_at(history, 10 + spec.panic_window_s) == 20
    assert max(d.desired for _, d in history) == 20  # not more than the load asks for


def test_panic_never_scales_down_and_ends_after_a_calm_stable_window() -> None:
    spec = DeciderSpec(target=1, stable_window_s=20, panic_window_s=4)
    history = run(spec, lambda t: 30.0 if 5 <= t < 8 else 0.5, 120)
    during = [d.desired for when, d in history if 5 <= when < 25]
    assert during == sorted(during)  # panic mode: only up
    assert all(d.panicking for when, d in history if 8 <= when < 25)
    assert not history[-1][1].panicking
    assert history[-1][1].desired == 1  # load 0.5 with target 1


def test_ramp_follows_the_load_without_overshoot() -> None:
    spec = DeciderSpec(target=10, stable_window_s=10, panic_window_s=2)
    history = run(spec, lambda t: min(t, 100.0), 200)
    desired = [d.desired for _, d in history]
    assert desired == sorted(desired)  # a rising ramp never scales down
    assert desired[-1] == 10  # 100 in flight / target 10


def test_spike_then_quiet_scales_down_at_the_limited_rate() -> None:
    spec = DeciderSpec(target=1, stable_window_s=10, panic_window_s=2, max_scale_down_rate=2)
    history = run(spec, lambda t: 16.0 if t <= 20 else 1.0, 60)
    peak = max(d.desired for _, d in history)
    assert peak == 16
    after = [d.desired for when, d in history if when > 20]
    # each step down at most halves
    assert all(b >= a // 2 for a, b in itertools.pairwise(after))
    assert after[-1] == 1


def test_idle_function_scales_to_zero_after_zero_duration_only_when_allowed() -> None:
    allowed = DeciderSpec(target=5, scale_to_zero=True, zero_after_s=30, stable_window_s=10, panic_window_s=2)
    history = run(allowed, lambda t: 3.0 if t <= 5 else 0.0, 60)
    assert replicas_at(history, 30) == 1
    zero_at = next(when for when, d in history if d.desired == 0)
    assert 5 + 30 <= zero_at <= 5 + 30 + TICK
    assert "scale to zero" in dict(history)[zero_at].reason

    kept = DeciderSpec(target=5, scale_to_zero=False, min_replicas=1, stable_window_s=10, panic_window_s=2)
    assert all(d.desired == 1 for _, d in run(kept, lambda t: 3.0 if t <= 5 else 0.0, 2000))


def test_a_short_zero_duration_holds_after_a_scale_from_zero_too() -> None:
    # zero-duration 10 s, stable window 60 s: a call at zero (the activator scales to 1), then nothing. The function
    # goes back to zero 10 s after its last load, as it did the first time, not when the window forgets the call.
    spec = DeciderSpec(target=10, scale_to_zero=True, zero_after_s=10, stable_window_s=60, panic_window_s=6)
    decider = Decider(spec, now=0.0)
    replicas, t, zeros = 1, 0.0, []
    while t < 100:
        t += TICK
        if 20 <= t < 23:  # the cold start: scaled from zero by the activator at t=20, the call lasts 3 s
            replicas = max(replicas, 1)
        decider.record(t, 1.0 if 20 <= t < 23 else 0.0)
        decision = decider.decide(t, replicas)
        if decision.desired == 0 and replicas > 0:
            zeros.append((t, decision.reason))
        replicas = decision.desired
    assert [when for when, _ in zeros] == [10.0, 32.0]  # first time: 10 s after deploy; again 10 s after the call
    assert "zero-duration 10s" in zeros[1][1]


def test_at_zero_stays_at_zero_until_load_returns() -> None:
    spec = DeciderSpec(target=5, scale_to_zero=True, zero_after_s=10, stable_window_s=10, panic_window_s=2)
    history = run(spec, lambda t: 12.0 if t >= 50 else 0.0, 60, start_replicas=0)
    assert all(d.desired == 0 for when, d in history if when < 50)
    assert replicas_at(history, 50) >= 1
    assert replicas_at(history, 55) == 3  # 12 / 5


def test_bounds_and_hold_after_an_outside_change() -> None:
    spec = DeciderSpec(target=1, min_replicas=2, max_replicas=4, stable_window_s=10, panic_window_s=2)
    assert run(spec, lambda t: 50.0, 20)[-1][1].desired == 4
    assert run(spec, lambda t: 0.0, 20)[-1][1].desired == 2

    decider = Decider(spec, now=0.0)
    decider.record(1.0, 0.0)
    decider.hold(1.0)  # someone scaled to 4 by hand at t=1
    assert decider.decide(1.0, 4).desired == 4
    decider.record(10.0, 0.0)
    assert decider.decide(10.0, 4).desired == 4
    decider.record(11.5, 0.0)
    assert decider.decide(11.5, 4).desired == 2


def test_max_scale_up_rate_caps_each_step() -> None:
    spec = DeciderSpec(target=1, max_scale_up_rate=2, stable_window_s=10, panic_window_s=2)
    history = run(spec, lambda t: 64.0, 10)
    steps = [d.desired for _, d in history]
    assert steps[:4] == [2, 4, 8, 16]
    assert "max scale-up rate" in history[0][1].reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": 0}, "target: must be greater than zero"),
        ({"min_replicas": -1}, "min_replicas: must be 0 or more"),
        ({"min_replicas": 5, "max_replicas": 3}, "max_replicas: must be at least 1 and at least min_replicas (5)"),
        ({"panic_window_s": 90}, "panic_window_s: must be greater than zero and at most stable_window_s (60)"),
        ({"panic_threshold": 1}, "panic_threshold: must be greater than 1"),
        ({"max_scale_down_rate": 0.5}, "max_scale_down_rate: must be greater than 1"),
        ({"zero_after_s": 0}, "zero_after_s: must be greater than zero"),
    ],
)
def test_bad_parameters_are_refused_with_a_precise_error(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(DeciderError) as err:
        DeciderSpec(**kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_spec_from_labels_and_platform_config(tmp_path: object) -> None:
    dep = FunctionDeployment.from_json(
        {
            "service": "f",
            "image": "x",
            "labels": {
                "com.openfaas.scale.target": "7",
                "com.openfaas.scale.min": "0",
                "com.openfaas.scale.zero-duration": "2m",
            },
        }
    )
    spec = DeciderSpec.from_settings(dep.settings, Config.from_env({}, stable_window_s=30.0))
    assert (spec.target, spec.min_replicas, spec.scale_to_zero, spec.zero_after_s) == (7, 0, True, 120)
    assert spec.stable_window_s == 30
