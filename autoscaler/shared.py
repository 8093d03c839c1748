"""Per-function load counters shared across gateways through Redis, so one controller sees the total.

Gateways keep counting in memory (:class:`gateway.metrics.Metrics`: no Redis round trip on the invoke path); a
:class:`CounterPublisher` writes one snapshot of them per tick: the JSON of ``{inflight, started, area}`` per
function, ``charts`` (calls, 5xx answers and the duration histogram's buckets per function, for the console's
charts on every gateway, :func:`read_snapshots`) and ``seconds`` (call-seconds so far per function: the mean call
time the autoscaler turns a queue backlog into concurrency with, autoscaler/backlog.py), under
``stoker:load:gw:<gateway id>`` (expiring after a few ticks), and the gateway's id in the sorted set
``stoker:load:gateways`` scored by the flush time. A gateway that dies stops refreshing; its snapshot expires.

The controller's :class:`SharedLoad` reads every live snapshot once a tick and :func:`merge` (pure) adds them up into
the :class:`autoscaler.loop.LoadCounters` shape: ``inflight`` is the sum of the latest snapshots; ``started`` and the
in-flight time integral grow by each gateway's increase since the previous read, so a gateway appearing (its history
is not load now) or disappearing (its counters vanish) never makes a spike or a negative rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis

from stoker.background import BackgroundLoop

logger = logging.getLogger(__name__)

GATEWAYS_KEY = "stoker:load:gateways"
SNAPSHOT_PREFIX = "stoker:load:gw:"


class GatewayCounters(Protocol):
    """What the publisher reads from :class:`gateway.metrics.Metrics`."""

    inflight: dict[str, int]
    started: dict[str, int]

    def inflight_seconds(self, function: str, now: float) -> float: ...

    def chart_counts(self) -> dict[str, tuple[int, ...]]: ...

    def call_seconds(self) -> dict[str, tuple[float, int]]: ...


@dataclass(frozen=True)
class Snapshot:
    """One gateway's cumulative counters at one flush."""

    gateway: str
    inflight: dict[str, int]
    started: dict[str, int]
    area: dict[str, float]  # in-flight call-seconds so far
    charts: dict[str, tuple[int, ...]] = field(default_factory=dict)  # (calls, 5xx, buckets...) per function
    seconds: dict[str, float] = field(default_factory=dict)  # call-seconds of the calls finished so far

    def encode(self) -> str:
        return json.dumps(
            {
                "inflight": self.inflight,
                "started": self.started,
                "area": self.area,
                "charts": self.charts,
                "seconds": self.seconds,
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, gateway: str, raw: bytes | str) -> Snapshot:
        data = json.loads(raw)
        return cls(
            gateway,
            {k: int(v) for k, v in data.get("inflight", {}).items()},
            {k: int(v) for k, v in data.get("started", {}).items()},
            {k: float(v) for k, v in data.get("area", {}).items()},
            {k: tuple(int(n) for n in v) for k, v in data.get("charts", {}).items()},
            {k: float(v) for k, v in data.get("seconds", {}).items()},
        )

    @classmethod
    def of(cls, gateway: str, counters: GatewayCounters, now: float) -> Snapshot:
        functions = set(counters.started) | set(counters.inflight)
        return cls(
            gateway,
            {fn: n for fn, n in counters.inflight.items() if n},
            dict(counters.started),
            {fn: counters.inflight_seconds(fn, now) for fn in functions},
            counters.chart_counts(),
            {fn: seconds for fn, (seconds, _) in counters.call_seconds().items()},
        )


@dataclass
class Totals:
    """The sum over gateways, in the shape the autoscaler loop reads (plus the raw sum of ``started``)."""

    inflight: dict[str, int] = field(default_factory=dict)  # now, summed over the live gateways
    started: dict[str, int] = field(default_factory=dict)  # only grows
    area: dict[str, float] = field(default_factory=dict)  # only grows
    started_now: dict[str, int] = field(default_factory=dict)  # sum of the live gateways' own counters
    seen: dict[str, Snapshot] = field(default_factory=dict)  # the latest snapshot per live gateway
    # Call-seconds and calls finished (the charts' first column), grown like ``area``: the mean call time's source.
    calls: dict[str, tuple[float, int]] = field(default_factory=dict)


def merge(totals: Totals, snapshots: Iterable[Snapshot]) -> Totals:
    """Fold the live gateways' latest snapshots into ``totals``; pure: returns a new object."""
    started, area, calls = dict(totals.started), dict(totals.area), dict(totals.calls)
    inflight: dict[str, int] = {}
    started_now: dict[str, int] = {}
    seen: dict[str, Snapshot] = {}
    for snap in snapshots:
        before = totals.seen.get(snap.gateway)
        for fn, n in snap.started.items():
            started_now[fn] = started_now.get(fn, 0) + n
            base = before.started.get(fn, 0) if before is not None else n  # first sight: a baseline, not load
            started[fn] = started.get(fn, 0) + max(0, n - base)
        for fn, a in snap.area.items():
            base_area = before.area.get(fn, 0.0) if before is not None else a
            area[fn] = area.get(fn, 0.0) + max(0.0, a - base_area)
        for fn, n in snap.inflight.items():
            inflight[fn] = inflight.get(fn, 0) + n
        for fn, row in snap.charts.items():
            seconds, count = snap.seconds.get(fn, 0.0), row[0] if row else 0
            if before is None:  # first sight: a baseline
                base_s, base_n = seconds, count
            else:
                base_s, base_n = before.seconds.get(fn, 0.0), (before.charts.get(fn) or (0,))[0]
            if count >= base_n and seconds >= base_s:  # else that gateway restarted under the same id: no step
                total_s, total_n = calls.get(fn, (0.0, 0))
                calls[fn] = (total_s + seconds - base_s, total_n + count - base_n)
        seen[snap.gateway] = snap
    return Totals(inflight, started, area, started_now, seen, calls)


async def read_snapshots(redis: Any) -> list[Snapshot]:
    """Every live gateway's latest snapshot (an expired or unreadable one is left out); raises the Redis error."""
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in await redis.zrange(GATEWAYS_KEY, 0, -1)]
    raws = await redis.mget([SNAPSHOT_PREFIX + i for i in ids]) if ids else []
    snaps = []
    for gateway, raw in zip(ids, raws, strict=True):
        if raw is not None:  # expired: that gateway is gone
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                snaps.append(Snapshot.decode(gateway, raw))
    return snaps


def gateway_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _redis(url: str) -> Any:
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)


class CounterPublisher:
    """A gateway's side: flush this process's counters to Redis every ``interval_s`` (never per request)."""

    def __init__(
        self,
        redis_url: str,
        counters: GatewayCounters,
        interval_s: float,
        gateway: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis: Any = _redis(redis_url)
        self.counters = counters
        self.interval_s = interval_s
        self.ttl_s = max(5.0, 5 * interval_s)  # a few missed flushes (a busy host) do not drop the gateway
        self.gateway = gateway or gateway_id()
        self.clock = clock
        self._loop = BackgroundLoop(self._run, "counter publisher")
        self._failing = False

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        with contextlib.suppress(Exception):  # leaving cleanly: the controller stops counting us at once
            await self.redis.zrem(GATEWAYS_KEY, self.gateway)
            await self.redis.delete(SNAPSHOT_PREFIX + self.gateway)
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def flush(self) -> None:
        """Write one snapshot now."""
        snap = Snapshot.of(self.gateway, self.counters, self.clock())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(SNAPSHOT_PREFIX + self.gateway, snap.encode(), px=int(self.ttl_s * 1000))
            pipe.zadd(GATEWAYS_KEY, {self.gateway: time.time()})
            await pipe.execute()

    async def _run(self) -> None:
        while True:
            try:
                await self.flush()
                if self._failing:
                    logger.info("load counters: publishing to Redis again")
                self._failing = False
            except Exception as exc:  # Redis down: the gateway keeps serving; the controller sees stale load
                if not self._failing:
                    logger.warning("load counters: cannot publish: %s", exc)
                self._failing = True
            await asyncio.sleep(self.interval_s)


class SharedLoad:
    """The controller's side: the total across gateways, refreshed by :meth:`refresh` before each tick.

    Fits :class:`autoscaler.loop.LoadCounters`; ``inflight_seconds`` returns the integral as of the last refresh.
    """

    def __init__(self, redis_url: str, stale_after_s: float) -> None:
        self.redis: Any = _redis(redis_url)
        self.stale_after_s = stale_after_s
        self.totals = Totals()
        self.inflight: dict[str, int] = self.totals.inflight
        self.started: dict[str, int] = self.totals.started

    def inflight_seconds(self, function: str, now: float) -> float:
        return self.totals.area.get(function, 0.0)

    def call_seconds(self) -> dict[str, tuple[float, int]]:
        return self.totals.calls

    @property
    def gateways(self) -> list[str]:
        return sorted(self.totals.seen)

    async def refresh(self) -> None:
        """Read the live gateways' snapshots and fold them in; raises the Redis error when it is down."""
        cutoff = time.time() - self.stale_after_s
        await self.redis.zremrangebyscore(GATEWAYS_KEY, "-inf", cutoff)
        self.totals = merge(self.totals, await read_snapshots(self.redis))
        self.inflight, self.started = self.totals.inflight, self.totals.started

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()
