"""The JSON the console reads, as management API routes (so the CLI and other clients can use them too).

``GET /system/stats``: every function with its numbers now and its 15-minute series (``?series=false`` leaves the
series out). ``GET /system/stats/{name}``: one function, with every series and its recent scaling events.
``GET /system/platform``: backend, version, queue and Redis state, warm pool, autoscaler settings, gateways seen.
The series come from :mod:`gateway.console.series`, sampled by :class:`Sampler` off the invoke path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from autoscaler.loop import AutoscalerLoop
from autoscaler.shared import GATEWAYS_KEY, gateway_id, read_snapshots
from events.service import QueueService
from gateway.console.series import (
    FIELDS,
    Counters,
    FunctionSeries,
    OtherGateways,
    ScaleEvent,
    SeriesBook,
    counters,
)
from gateway.metrics import Metrics
from gateway.resources import resource
from runtime.backends.base import Backend, FunctionRecord
from stoker import __version__
from stoker.config import Config
from stoker.errors import InvalidRequest, NotFound
from stoker.names import DEFAULT_NAMESPACE, InvalidName, validate_name

logger = logging.getLogger(__name__)
OVERVIEW_FIELDS = ("rate", "errors", "p50", "p99")
_LAG_TIMEOUT_S = 2.0


def _fn(record: FunctionRecord) -> str:
    return f"{record.deployment.service}.{record.deployment.namespace}"


def _compact(column: list[float | None]) -> list[float | None]:
    """An idle function's all-zero series as [] (with 500 functions, most are idle: the overview stays small)."""
    return column if any(v for v in column) else []


class Sampler:
    """Adds one point per function to the book every ``STOKER_CONSOLE_SAMPLE_S`` (a background task): this gateway's
    calls plus, with Redis, those of the other gateways sharing it (their published counters)."""

    def __init__(
        self, config: Config, backend: Backend, metrics: Metrics, autoscaler: AutoscalerLoop, queue: QueueService
    ) -> None:
        self.book = SeriesBook(config.console_sample_s)
        self.backend = backend
        self.metrics = metrics
        self.autoscaler = autoscaler
        self.queue = queue
        self.lag: dict[str, int] = {}
        self.others = OtherGateways()
        self.shared = bool(config.redis_url)
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        autoscaler.on_scale = self.scaled

    def counters(self) -> dict[str, Counters]:
        """Every function's calls on the platform: this gateway's now, the others' as of the last sample."""
        return self.others.plus(counters(self.metrics))

    async def _read_others(self) -> None:
        """The other gateways' chart counters from Redis; while it does not answer, their share of the charts waits
        (this gateway's own calls still count)."""
        redis = getattr(self.queue.queue, "redis", None)
        if not self.shared or redis is None:
            return
        me = gateway_id()
        try:
            snaps = await asyncio.wait_for(read_snapshots(redis), _LAG_TIMEOUT_S)
        except Exception as exc:
            if not self._failing:
                logger.warning("console: cannot read the other gateways' counters: %s", exc)
            self._failing = True
            return
        self._failing = False
        self.others.add({s.gateway: s.charts for s in snaps if s.gateway != me})

    def scaled(self, fn: str, before: int, after: int, source: str, reason: str) -> None:
        self.book.scaled(fn, ScaleEvent(time.time(), before, after, source, reason))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="console-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.sample(time.time())
            except Exception:  # one bad sample must not end the charts for good
                logger.exception("console: sampling failed")
            await asyncio.sleep(self.book.step_s)

    async def sample(self, at: float) -> None:
        await self._read_lag()
        await self._read_others()
        gauges: dict[str, dict[str, float]] = {}
        for record in self.backend.functions():
            fn = _fn(record)
            desired = self.autoscaler.desired(fn)
            gauges[fn] = {
                "replicas": record.available,
                "desired": record.replicas if desired is None else desired,
                "inflight": self.metrics.inflight.get(fn, 0),
                "lag": self.lag.get(fn, 0),
            }
        self.others.forget(gauges)
        self.book.sample(at, self.counters(), gauges)

    async def _read_lag(self) -> None:
        """Queue lag of the functions with a queue worker; one that the queue cannot tell keeps its last value."""

        async def one(fn: str) -> None:
            with contextlib.suppress(Exception):
                self.lag[fn] = (await asyncio.wait_for(self.queue.load(fn), _LAG_TIMEOUT_S)).lag

        functions = list(self.queue.workers)
        await asyncio.gather(*(one(fn) for fn in functions))
        for fn in set(self.lag) - set(functions):
            del self.lag[fn]


class ConsoleAPI:
    def __init__(
        self, config: Config, backend: Backend, metrics: Metrics, autoscaler: AutoscalerLoop, sampler: Sampler
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.autoscaler = autoscaler
        self.sampler = sampler
        self.queue = sampler.queue

    def routes(self) -> list[Route]:
        return [
            resource("/system/stats", GET=self.stats),
            resource("/system/stats/{name}", GET=self.function_stats),
            resource("/system/platform", GET=self.platform),
        ]

    def _row(self, record: FunctionRecord, now: dict[str, Counters], fields: tuple[str, ...]) -> dict[str, Any]:
        fn = _fn(record)
        dep = record.deployment
        series: FunctionSeries | None = self.sampler.book.functions.get(fn)
        counted = now.get(fn, Counters(0, 0, ()))
        desired = self.autoscaler.desired(fn)
        row: dict[str, Any] = {
            "name": dep.service,
            "namespace": dep.namespace,
            "image": dep.image or f"source:{dep.service}",
            "replicas": record.replicas,
            "availableReplicas": record.available,
            "desiredReplicas": record.replicas if desired is None else desired,
            "invocations": counted.calls,
            "errors": counted.errors,
            "inflight": self.metrics.inflight.get(fn, 0),
            "coldStarts": series.cold_starts if series else 0,
            "lag": self.sampler.lag.get(fn, 0),
            "message": record.message,
        }
        for f in ("rate", "errors", "p50", "p99"):
            recent = series.recent(f, self.sampler.book.recent_points) if series else None
            row["errorsPerSecond" if f == "errors" else f] = recent
        if fields:
            row["series"] = {
                "t": series.timestamps() if series else [],
                **{f: _compact(series.column(f)) if series else [] for f in fields},
            }
        return row

    async def stats(self, request: Request) -> Response:
        q = request.query_params
        namespace = q.get("namespace") or None
        if namespace is not None:
            namespace = _name(namespace, "namespace")
        with_series = q.get("series", "true")
        if with_series not in ("true", "false"):
            raise InvalidRequest(f"series: {with_series!r} is neither true nor false")
        now = self.sampler.counters()
        fields = OVERVIEW_FIELDS if with_series == "true" else ()
        rows = [self._row(r, now, fields) for r in self.backend.functions(namespace)]
        return JSONResponse({"stepSeconds": self.sampler.book.step_s, "time": time.time(), "functions": rows})

    async def function_stats(self, request: Request) -> Response:
        name = _name(request.path_params["name"], "function")
        namespace = _name(request.query_params.get("namespace") or DEFAULT_NAMESPACE, "namespace")
        record = self.backend.get(name, namespace)
        if record is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        row = self._row(record, self.sampler.counters(), FIELDS)
        series = self.sampler.book.functions.get(_fn(record))
        row["events"] = [
            {"time": e.at, "from": e.before, "to": e.after, "source": e.source, "reason": e.reason}
            for e in (series.events if series else ())
        ]
        return JSONResponse({"stepSeconds": self.sampler.book.step_s, "time": time.time(), **row})

    async def platform(self, request: Request) -> Response:
        c = self.config
        pool = getattr(self.backend, "warm_replicas", None)  # optional: only backends with a warm pool have it
        warm = pool() if callable(pool) else None
        return JSONResponse(
            {
                "backend": self.backend.name,
                "version": __version__,
                "gateway": gateway_id(),
                "gateways": await self._gateways(),
                "queue": {"kind": self.queue.queue.kind, **await self._queue_state()},
                "warmPool": {"size": c.pool_size, "ready": warm},
                "autoscaler": {
                    "enabled": c.autoscale,
                    "tickSeconds": c.autoscale_tick_s,
                    "stableWindowSeconds": c.stable_window_s,
                    "panicWindowSeconds": c.panic_window_s,
                    "panicThreshold": c.panic_threshold,
                    "maxScaleUpRate": c.max_scale_up_rate,
                    "maxScaleDownRate": c.max_scale_down_rate,
                },
                "console": {"sampleSeconds": c.console_sample_s, "sessionSeconds": c.console_session_s},
                "functions": len(self.backend.functions()),
            }
        )

    async def _queue_state(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.queue.queue.ping(), _LAG_TIMEOUT_S)
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"ok": True, "error": ""}

    async def _gateways(self) -> list[dict[str, Any]]:
        """Gateways that published their counters to Redis lately (with several gateways); else this one."""
        redis = getattr(self.queue.queue, "redis", None)
        if redis is None or not self.config.redis_url:
            return [{"id": gateway_id(), "seen": time.time()}]
        try:
            rows = await asyncio.wait_for(redis.zrange(GATEWAYS_KEY, 0, -1, withscores=True), _LAG_TIMEOUT_S)
        except Exception:
            return []
        return [{"id": gid.decode() if isinstance(gid, bytes) else str(gid), "seen": score} for gid, score in rows]


def _name(value: str, what: str) -> str:
    try:
        return validate_name(value, what)
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None
