"""The autoscaler's decision function: from observed load, the replicas a function should have. Pure: no I/O, no
clock of its own; every call takes ``now``.

Concurrency-based, after Knative's KPA. Each tick the control loop records one sample, the function's average load
over that tick (in-flight requests, counting those waiting for a replica, for ``capacity``; requests per second for
``rps``). Then:

- stable: the mean over the stable window (60 s) divided by the per-replica target gives the desired replicas;
- panic: when the mean over the short panic window (6 s) asks for at least ``panic_threshold`` (2x) the current
  replicas, the decider panics: it scales up on the panic figure and does not scale down until it has not seen panic
  load for a whole stable window;
- the result moves at most ``max_scale_up_rate`` times up and ``max_scale_down_rate`` times down per decision, and
  stays within ``min``/``max``;
- scale to zero: a function that allows it (``com.openfaas.scale.zero=true`` or ``min`` 0) goes to zero once it has
  seen no load for ``zero_after_s`` (counted from its last sample with load, whatever the windows still hold, so
  after a scale from zero as after a deploy); a function at zero stays there until load comes back (the gateway's
  activator scales it up on the first request, without waiting for a tick);
- a change made by someone else (``stoker scale``, a deploy) is held: no scale-down for one stable window after it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from stoker.config import Config
from stoker.spec import FunctionSettings

OPENFAAS_CE_WINDOW_S = 30.0  # the longest stable window of a function scaled like OpenFaaS CE


class DeciderError(ValueError):
    """A decider parameter that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class DeciderSpec:
    """Every tuning parameter of one function's decider, validated on construction."""

    target: float = 10.0  # load one replica should carry (in-flight requests, or requests per second)
    min_replicas: int = 1
    max_replicas: int = 20
    scale_to_zero: bool = False
    zero_after_s: float = 900.0  # idle time before scaling to zero
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0  # panic when the panic window asks for this many times the current replicas
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0

    def __post_init__(self) -> None:
        if not self.target > 0:
            raise DeciderError(f"target: must be greater than zero, got {self.target:g}")
        if self.min_replicas < 0:
            raise DeciderError(f"min_replicas: must be 0 or more, got {self.min_replicas}")
        if self.max_replicas < max(self.min_replicas, 1):
            raise DeciderError(
                f"max_replicas: must be at least 1 and at least min_replicas ({self.min_replicas}), "
                f"got {self.max_replicas}"
            )
        if not self.zero_after_s > 0:
            raise DeciderError(f"zero_after_s: must be greater than zero, got {self.zero_after_s:g}")
        if not 0 < self.panic_window_s <= self.stable_window_s:
            raise DeciderError(
                f"panic_window_s: must be greater than zero and at most stable_window_s ({self.stable_window_s:g}), "
                f"got {self.panic_window_s:g}"
            )
        if not self.panic_threshold > 1:
            raise DeciderError(f"panic_threshold: must be greater than 1, got {self.panic_threshold:g}")
        for name in ("max_scale_up_rate", "max_scale_down_rate"):
            if not getattr(self, name) > 1:
                raise DeciderError(f"{name}: must be greater than 1, got {getattr(self, name):g}")

    @classmethod
    def from_settings(cls, settings: FunctionSettings, config: Config) -> DeciderSpec:
        """A function's spec: its labels for target and bounds, the platform config for windows and rates.

        A function scaled like OpenFaaS CE (``settings.openfaas_ce``) looks back at most
        :data:`OPENFAAS_CE_WINDOW_S`: OpenFaaS CE goes back to the minimum within about half a minute of the load
        ending (its alert resolves), and clients written for it (the certifier) check a minute after."""
        stable, panic = config.stable_window_s, config.panic_window_s
        if settings.openfaas_ce:
            stable, panic = min(stable, OPENFAAS_CE_WINDOW_S), min(panic, OPENFAAS_CE_WINDOW_S)
        return cls(
            target=float(settings.scale_target),
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_replicas,
            scale_to_zero=settings.scale_to_zero,
            zero_after_s=settings.zero_duration_s,
            stable_window_s=stable,
            panic_window_s=panic,
            panic_threshold=config.panic_threshold,
            max_scale_up_rate=config.max_scale_up_rate,
            max_scale_down_rate=config.max_scale_down_rate,
        )


@dataclass(frozen=True)
class Decision:
    """What the decider wants and why (the reason goes to the log and the metrics)."""

    desired: int
    current: int
    reason: str
    panicking: bool
    stable_load: float
    panic_load: float

    @property
    def changes(self) -> bool:
        return self.desired != self.current


class Decider:
    """The state of one function's decisions: its load samples, panic mode, last activity and hold."""

    def __init__(self, spec: DeciderSpec, now: float) -> None:
        self.spec = spec
        self._samples: deque[tuple[float, float]] = deque()
        self._panic_until: float | None = None  # panicking while set; extended while panic load lasts
        self._last_active = now  # a new decider counts as active: no scale to zero before zero_after_s
        self._hold_until = 0.0
        self._note = ""  # what the latest sample's load was made of, beyond in-flight calls (the queue's part)

    @property
    def panicking(self) -> bool:
        return self._panic_until is not None

    def record(self, now: float, load: float, note: str = "") -> None:
        """One sample: the function's average load since the previous sample; ``note`` says what went into it
        beyond calls in flight (a queue's backlog), and ends the reason of the decisions until the next sample."""
        if load < 0:
            raise DeciderError(f"load: must be 0 or more, got {load:g}")
        self._note = note
        self._samples.append((now, load))
        if load > 0:
            self._last_active = now
        horizon = now - self.spec.stable_window_s
        while self._samples and self._samples[0][0] <= horizon:
            self._samples.popleft()

    def hold(self, now: float) -> None:
        """Someone else set the replicas (manual scale, deploy): do not scale down for one stable window."""
        self._hold_until = now + self.spec.stable_window_s

    def decide(self, now: float, current: int) -> Decision:
        """The replicas the function should have now, given ``current`` (its desired count as applied)."""
        spec = self.spec
        stable = self._mean(now, spec.stable_window_s)
        panic = self._mean(now, spec.panic_window_s)
        stable_want = math.ceil(stable / spec.target - 1e-9)
        panic_want = math.ceil(panic / spec.target - 1e-9)

        def decision(desired: int, reason: str) -> Decision:
            if self._note:
                reason = f"{reason} ({self._note})"
            return Decision(desired, current, reason, self.panicking, stable, panic)

        idle_for = now - self._last_active
        if current == 0 and (not self._samples or self._samples[-1][1] == 0):
            # Scaling up from zero is the activator's job, on the first request; the decider only follows load
            # that is there now, not what the windows still remember from before a manual scale to zero.
            return decision(0, "at zero with no load")
        # Idle time alone decides, not the stable window's mean: after a scale from zero the window still holds the
        # load of that first call for a whole window, which would stretch a short zero-duration to the window's length.
        if spec.scale_to_zero and idle_for >= spec.zero_after_s:
            if now < self._hold_until:
                return decision(current, f"idle {idle_for:.0f}s but held after an outside change")
            self._panic_until = None
            return decision(0, f"no load for {idle_for:.0f}s (zero-duration {spec.zero_after_s:g}s): scale to zero")

        # Panic mode: entered when the short window asks for threshold x the replicas we have.
        if panic_want >= spec.panic_threshold * max(current, 1) and panic_want > current:
            self._panic_until = now + spec.stable_window_s
        elif self._panic_until is not None and now >= self._panic_until:
            self._panic_until = None

        if self._panic_until is not None:
            desired = max(panic_want, stable_want, current)  # never down while panicking
            reason = f"panic: {panic:.1f} load over {spec.panic_window_s:g}s / target {spec.target:g}"
        else:
            desired = stable_want
            reason = f"stable: {stable:.1f} load over {spec.stable_window_s:g}s / target {spec.target:g}"

        up_limit = math.ceil(max(current, 1) * spec.max_scale_up_rate)
        down_limit = math.floor(current / spec.max_scale_down_rate)
        if desired > up_limit:
            desired, reason = up_limit, f"{reason}; capped by max scale-up rate {spec.max_scale_up_rate:g}x"
        elif desired < down_limit:
            desired, reason = down_limit, f"{reason}; slowed by max scale-down rate {spec.max_scale_down_rate:g}x"
        floor = max(spec.min_replicas, 1)
        if desired < floor:
            desired, reason = floor, f"{reason}; raised to the minimum {floor}"
        if desired > spec.max_replicas:
            desired, reason = spec.max_replicas, f"{reason}; capped at the maximum {spec.max_replicas}"
        if desired < current and now < self._hold_until:
            desired, reason = current, f"{reason}; held after an outside change"
        return decision(desired, reason)

    def _mean(self, now: float, window: float) -> float:
        horizon = now - window
        values = [load for t, load in self._samples if t > horizon]
        return sum(values) / len(values) if values else 0.0
