"""The queue side of a platform process: accept async calls, run a worker per function on the streams it reads,
fire timer triggers once per tick, report queue load, list and replay dead letters.

``functions`` is a callable returning the deployed functions, so this package needs nothing from the gateway or the
backends; ``invoke`` runs one invocation through the gateway's own proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from events import schedule
from events.callbacks import DEFAULT_POLICY, post_callback
from events.messages import Invocation, Result, new_call_id
from events.queue import CallRecord, Queue, QueueUnavailable, StreamInfo, async_stream, dead_stream, group_of
from events.redis_queue import RedisQueue
from events.sqlite_queue import SQLiteQueue
from events.worker import FunctionWorker, Invoke, WorkerSettings, log
from stoker.callback_policy import CallbackPolicy
from stoker.spec import FunctionDeployment

STREAM_ANNOTATION = "com.stoker.queue.stream"
CONCURRENCY_ANNOTATION = "com.stoker.queue.concurrency"
CALL_PENDING_TTL_S = 7 * 24 * 3600.0  # a queued call stays known this long, however long the queue is
TICK_KEY_TTL_S = 24 * 3600.0


def open_queue(redis_url: str, home: Path) -> Queue:
    """Redis Streams when a URL is given, else the embedded SQLite queue in ``$STOKER_HOME/queue.db``."""
    if redis_url:
        return RedisQueue(redis_url)
    return SQLiteQueue(home / "queue.db")


@dataclass(frozen=True)
class QueueLoad:
    """A function's queue backlog: ``lag`` not yet delivered, ``pending`` delivered and not finished (running or
    waiting for a retry), ``inflight`` running in this process. The autoscaler reads it as a scaling signal."""

    lag: int
    pending: int
    inflight: int

    @property
    def backlog(self) -> int:
        return self.lag + self.pending


def subscriptions(dep: FunctionDeployment, triggers: list[tuple[str, str]]) -> list[str]:
    """Every stream a function reads: its async stream, its annotated streams, its ``stoker trigger`` streams."""
    fn = f"{dep.service}.{dep.namespace}"
    values = {**dep.labels, **dep.annotations}
    annotated = [s.strip() for s in values.get(STREAM_ANNOTATION, "").split(",") if s.strip()]
    added = [s for f, s in triggers if f in (fn, dep.service)]
    return [async_stream(fn), *dict.fromkeys(annotated + added)]


class QueueService:
    def __init__(
        self,
        queue: Queue,
        functions: Callable[[], list[FunctionDeployment]],
        invoke: Invoke,
        settings: WorkerSettings,
        sync_interval_s: float = 1.0,
        callback_policy: CallbackPolicy = DEFAULT_POLICY,
    ) -> None:
        self.queue = queue
        self.callback_policy = callback_policy
        self.functions = functions
        self.invoke = invoke
        self.settings = settings
        self.sync_interval_s = sync_interval_s
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.workers: dict[str, tuple[list[str], FunctionWorker, asyncio.Task[None]]] = {}
        self._cron_after: dict[tuple[str, str], float] = {}
        self._loop: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.create_task(self._supervise())

    async def stop(self, grace_s: float) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await asyncio.gather(*(w.stop(grace_s) for _, w, _ in self.workers.values()))
        for _, _, task in self.workers.values():
            task.cancel()
        for task in list(self._callbacks):
            task.cancel()
        self.workers.clear()
        await self.queue.close()

    # -- async calls ----------------------------------------------------------------------------------------
    async def accept(self, inv: Invocation) -> str:
        """Persist an async call; return its call id. Raises QueueUnavailable, having stored nothing."""
        inv.call_id = new_call_id()
        inv.enqueued_at = time.time()
        await self.queue.enqueue_call(async_stream(inv.function), inv.encode(), inv.call_id, CALL_PENDING_TTL_S)
        return inv.call_id

    async def call(self, call_id: str) -> CallRecord | None:
        return await self.queue.get_call(call_id)

    async def _finished(self, inv: Invocation, result: Result) -> None:
        if inv.callback_url and inv.call_id:
            task = asyncio.create_task(self._callback(inv, result))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    async def _callback(self, inv: Invocation, result: Result) -> None:
        problem = await post_callback(inv.callback_url, inv.call_id, result, policy=self.callback_policy)
        if problem:
            log(f"{inv.function} call {inv.call_id}: {problem}")

    # -- observation ----------------------------------------------------------------------------------------
    async def load(self, function: str) -> QueueLoad:
        """Backlog of ``function`` (name.namespace) over all its streams: the autoscaler's queue signal."""
        lag = pending = 0
        entry = self.workers.get(function)
        for stream in entry[0] if entry else [async_stream(function)]:
            info = await self.queue.info(stream, group_of(function))
            lag, pending = lag + info.lag, pending + info.pending
        return QueueLoad(lag, pending, entry[1].inflight if entry else 0)

    async def streams(self) -> list[tuple[str, StreamInfo, int]]:
        """(function, stream info, dead letters) for every stream of every function."""
        rows = []
        for fn, (streams, _, _) in sorted(self.workers.items()):
            dead = (await self.queue.info(dead_stream(fn), "")).length
            for stream in streams:
                rows.append((fn, await self.queue.info(stream, group_of(fn)), dead))
        return rows

    async def dead_letters(self, function: str, count: int = 1000) -> list[dict[str, str]]:
        out = []
        for msg in await self.queue.entries(dead_stream(function), count):
            entry = {k.decode(): v.decode("utf-8", "replace") for k, v in msg.fields.items() if k != b"m"}
            out.append({"deadId": msg.id, **entry})
        return out

    async def replay(self, function: str, ids: list[str] | None = None) -> int:
        """Move dead letters (all, or those ids) back onto the function's async stream; return how many."""
        moved = 0
        for msg in await self.queue.entries(dead_stream(function), 100_000):
            if ids and msg.id not in ids:
                continue
            inv = Invocation.decode(msg.fields[b"m"])
            if inv.call_id:
                await self.queue.enqueue_call(async_stream(function), inv.encode(), inv.call_id, CALL_PENDING_TTL_S)
            else:
                await self.queue.add(async_stream(function), {"m": inv.encode()})
            await self.queue.delete(dead_stream(function), [msg.id])
            moved += 1
        return moved

    # -- supervision ----------------------------------------------------------------------------------------
    async def _supervise(self) -> None:
        while True:
            try:
                await self._sync(time.time())
            except QueueUnavailable as exc:
                log(f"{exc}; retrying")
            except Exception as exc:
                log(f"supervisor: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self.sync_interval_s)

    async def _sync(self, now: float) -> None:
        triggers = await self.queue.triggers()
        wanted: dict[str, tuple[list[str], FunctionDeployment]] = {}
        for dep in self.functions():
            wanted[f"{dep.service}.{dep.namespace}"] = (subscriptions(dep, triggers), dep)
        for fn in list(self.workers):
            if fn not in wanted or wanted[fn][0] != self.workers[fn][0]:
                await self._stop_worker(fn)
        for fn, (streams, dep) in wanted.items():
            if fn not in self.workers:
                self._start_worker(fn, streams, dep)
        await self.fire_cron(now, [dep for _, dep in wanted.values()])

    def _start_worker(self, fn: str, streams: list[str], dep: FunctionDeployment) -> None:
        raw = {**dep.labels, **dep.annotations}.get(CONCURRENCY_ANNOTATION, "")
        settings = self.settings
        if raw.isdigit() and int(raw) > 0:
            settings = WorkerSettings(int(raw), settings.policy, settings.claim_idle_s, settings.result_ttl_s)
        worker = FunctionWorker(self.queue, fn, streams, self.invoke, settings, self.consumer, self._finished)
        self.workers[fn] = (streams, worker, asyncio.create_task(worker.run()))

    async def _stop_worker(self, fn: str) -> None:
        _, worker, task = self.workers.pop(fn)
        await worker.stop(5.0)
        task.cancel()

    async def fire_cron(self, now: float, deps: list[FunctionDeployment]) -> list[str]:
        """Enqueue the ticks of ``deps``' schedules due since the last call (the first call only starts the clock);
        return the ids of the messages this process enqueued. Every process computes the same ticks; claiming a
        tick and enqueuing it are one atomic step, so each tick is enqueued exactly once across processes."""
        added = []
        for dep in deps:
            expression = schedule.schedule_of(dep.labels, dep.annotations)
            if not expression or not schedule.valid(expression):
                continue
            fn = f"{dep.service}.{dep.namespace}"
            key = (fn, expression)
            after = self._cron_after.setdefault(key, now)  # ticks missed while no process ran are not replayed
            for tick in schedule.due_ticks(expression, after, now):
                inv = Invocation(
                    fn,
                    headers=[("x-stoker-schedule", expression), ("x-stoker-tick", str(int(tick)))],
                    origin=f"cron:{int(tick)}",
                    enqueued_at=now,
                )
                msg_id = await self.queue.add_once(
                    f"cron:{fn}:{int(tick)}", TICK_KEY_TTL_S, async_stream(fn), {"m": inv.encode()}
                )
                if msg_id is not None:
                    added.append(msg_id)
            self._cron_after[key] = now
        return added
