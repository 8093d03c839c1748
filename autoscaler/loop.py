"""The autoscaler's control loop: read the gateway's counters on a tick, decide (:mod:`autoscaler.decider`), apply
through the backend, log and export every change with its reason.

Thin on purpose: :meth:`AutoscalerLoop.tick` takes ``now``, so tests can drive it, and all judgement lives in the
decider. Every replica change the platform makes itself goes through :meth:`AutoscalerLoop.scale_to` (the
activator's scale-from-zero too), so the loop can tell its own changes from outside ones (``stoker scale``, a
deploy), which it holds for one stable window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from autoscaler.backlog import CallTime, queue_demand
from autoscaler.decider import Decider, DeciderSpec, Decision
from runtime.backends.base import Backend, FunctionRecord, TendsPool
from stoker.background import BackgroundLoop
from stoker.config import Config
from stoker.errors import StokerError
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)


class LoadCounters(Protocol):
    """What the loop reads from the gateway (:class:`gateway.metrics.Metrics`): calls in flight per function
    (waiting ones included), calls started, and the time integral of in-flight calls."""

    inflight: dict[str, int]
    started: dict[str, int]

    def inflight_seconds(self, function: str, now: float) -> float: ...

    def call_seconds(self) -> dict[str, tuple[float, int]]:
        """Per function: cumulative call-seconds and calls finished (the mean call time's source)."""
        ...


Backlog = Callable[[str], Awaitable[tuple[int, int]]]
"""A function's queued calls: ``(lag, running)``, not yet delivered to a worker and delivered but unfinished
(``QueueService.load(fn)``: ``lag``, ``pending``), read once per tick."""


@dataclass
class _State:
    deployment: FunctionDeployment  # the version the decider was made for
    decider: Decider
    last_time: float
    last_area: float
    last_started: int
    applied: int  # replicas as the loop last saw or set them
    call_time: CallTime = field(default_factory=CallTime)
    last: Decision | None = None


class AutoscalerLoop:
    """Decides and applies desired replicas for every function of a backend."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        metrics: LoadCounters,
        clock: Callable[[], float] = time.monotonic,
        backlog: Backlog | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.backlog = backlog
        self.clock = clock
        self.scale_events: dict[tuple[str, str, str], int] = {}  # (function, direction, source) -> count
        # Told of every replica change applied: (function, before, after, source, reason); the console's markers.
        self.on_scale: Callable[[str, int, int, str, str], None] | None = None
        self._states: dict[str, _State] = {}
        self._loop = BackgroundLoop(self._run, "autoscaler")

    # --- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run :meth:`tick` every ``autoscale_tick_s`` in the background (when autoscaling is on)."""
        if self.config.autoscale:
            self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.autoscale_tick_s)
            try:
                await self.tick(self.clock())
            except Exception as exc:  # one bad tick must not end autoscaling for good
                self._log(f"tick failed: {type(exc).__name__}: {exc}", logging.WARNING)

    # --- deciding ------------------------------------------------------------------------------------------
    async def tick(self, now: float) -> list[Decision]:
        """Record one load sample per function, decide, and apply the changes; return the decisions."""
        decisions = []
        seen = set()
        call_seconds = self.metrics.call_seconds()
        for record in self.backend.functions():
            fn = _fn(record)
            seen.add(fn)
            state = self._state(record, now)
            dt = now - state.last_time
            if dt <= 0:
                continue
            area = self.metrics.inflight_seconds(fn, now)
            started = self.metrics.started.get(fn, 0)
            mean_s = state.call_time.update(*call_seconds.get(fn, (0.0, 0)))
            note = ""
            if record.deployment.settings.scale_type == "rps":
                load = (started - state.last_started) / dt
            else:
                # Queued calls are a demand for concurrency (autoscaler/backlog.py): what drains them within
                # STOKER_QUEUE_DRAIN_S at the measured call time, beyond the calls the queue runs already (those are
                # in flight through the proxy, so in the in-flight load).
                lag, running = await self._backlog(fn)
                demand = queue_demand(lag, running, mean_s, self.config.queue_drain_s)
                load = (area - state.last_area) / dt + demand.extra
                note = demand.reason
            state.last_time, state.last_area, state.last_started = now, area, started
            state.decider.record(now, max(0.0, load), note)
            if record.replicas != state.applied:
                state.decider.hold(now)  # changed by someone else: respect it for a stable window
                state.applied = record.replicas
            decision = state.decider.decide(now, record.replicas)
            state.last = decision
            decisions.append(decision)
            if not decision.changes:
                continue
            if decision.desired == 0 and self.metrics.inflight.get(fn, 0) > 0:
                continue  # a request arrived since the sample; the next tick sees it
            await self.scale_to(record, decision.desired, decision.reason, source="autoscaler")
        for fn in set(self._states) - seen:
            del self._states[fn]
        await self._tend_pool()
        return decisions

    async def _tend_pool(self) -> None:
        """Let a backend whose warm pool lives in the orchestrator (Swarm, Kubernetes) refill it and retire the
        pool replicas that bridged a cold start: once a tick, by the one process that autoscales."""
        if not isinstance(self.backend, TendsPool):
            return
        try:
            await self.backend.tend_pool()
        except Exception as exc:  # an orchestrator hiccup: the pool is tended again next tick
            self._log(f"warm pool: {type(exc).__name__}: {str(exc)[:200]}", logging.WARNING)

    async def _backlog(self, fn: str) -> tuple[int, int]:
        if self.backlog is None:
            return 0, 0
        try:
            return await self.backlog(fn)
        except Exception:  # the queue unreachable: scale on the request load alone this tick
            return 0, 0

    async def scale_to(self, record: FunctionRecord, replicas: int, reason: str, source: str = "activator") -> None:
        """Apply a replica count the platform chose, log it with its reason and count it."""
        fn = _fn(record)
        before = record.replicas
        if replicas == before:
            return
        state = self._state(record, self.clock())
        state.applied = replicas
        direction = "up" if replicas > before else "down"
        key = (fn, direction, source)
        self.scale_events[key] = self.scale_events.get(key, 0) + 1
        self._log(f"{fn}: {before} -> {replicas} replicas ({source}: {reason})")
        if self.on_scale is not None:
            self.on_scale(fn, before, replicas, source, reason)
        try:
            await self.backend.scale(record.deployment.service, record.deployment.namespace, replicas)
        except StokerError as exc:  # removed meanwhile, or the backend refused: the next tick looks again
            self._log(f"{fn}: scaling to {replicas} failed: {exc}", logging.WARNING)

    def _state(self, record: FunctionRecord, now: float) -> _State:
        fn = _fn(record)
        state = self._states.get(fn)
        # Equality, not identity: backends that mirror an orchestrator (Swarm, Kubernetes) rebuild the deployment
        # from labels on every poll; only a real change (a redeploy) is a new version.
        if state is None or (state.deployment is not record.deployment and state.deployment != record.deployment):
            decider = Decider(DeciderSpec.from_settings(record.deployment.settings, self.config), now)
            if state is not None:
                decider.hold(now)  # a redeploy is an outside change
            elif record.replicas > max(decider.spec.min_replicas, 1):
                # First seen above what a deploy starts with: someone set it (a manual scale before this loop's
                # first look, or replicas restored after a restart); an empty load window is no reason to undo it.
                decider.hold(now)
            state = _State(
                record.deployment,
                decider,
                now,
                self.metrics.inflight_seconds(fn, now),
                self.metrics.started.get(fn, 0),
                record.replicas,
            )
            self._states[fn] = state
        return state

    def desired(self, fn: str) -> int | None:
        """The replicas the last decision for ``fn`` (name.namespace) wanted; None before the first one."""
        state = self._states.get(fn)
        return state.last.desired if state is not None and state.last is not None else None

    def _log(self, text: str, level: int = logging.INFO) -> None:
        logger.log(level, "autoscaler: %s", text)

    # --- metrics -------------------------------------------------------------------------------------------
    def render_metrics(self) -> Iterable[str]:
        """Prometheus lines: the latest decision per function and the scale events so far."""
        yield "# HELP stoker_autoscaler_desired_replicas Replicas the autoscaler wants, by function"
        yield "# TYPE stoker_autoscaler_desired_replicas gauge"
        for fn, state in sorted(self._states.items()):
            if state.last is not None:
                yield f'stoker_autoscaler_desired_replicas{{function_name="{fn}"}} {state.last.desired}'
        yield "# HELP stoker_autoscaler_load Average load per function (stable and panic windows)"
        yield "# TYPE stoker_autoscaler_load gauge"
        for fn, state in sorted(self._states.items()):
            if state.last is not None:
                yield f'stoker_autoscaler_load{{function_name="{fn}",window="stable"}} {state.last.stable_load:.3f}'
                yield f'stoker_autoscaler_load{{function_name="{fn}",window="panic"}} {state.last.panic_load:.3f}'
        yield "# HELP stoker_autoscaler_panic 1 while the function's autoscaler is in panic mode"
        yield "# TYPE stoker_autoscaler_panic gauge"
        for fn, state in sorted(self._states.items()):
            if state.last is not None:
                yield f'stoker_autoscaler_panic{{function_name="{fn}"}} {int(state.last.panicking)}'
        yield "# HELP stoker_autoscaler_scale_total Replica changes made by the platform"
        yield "# TYPE stoker_autoscaler_scale_total counter"
        for (fn, direction, source), n in sorted(self.scale_events.items()):
            labels = f'function_name="{fn}",direction="{direction}",source="{source}"'
            yield f"stoker_autoscaler_scale_total{{{labels}}} {n}"


def _fn(record: FunctionRecord) -> str:
    return f"{record.deployment.service}.{record.deployment.namespace}"
