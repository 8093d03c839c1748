"""The queue side of a platform process: accept async calls, subscribe functions to their streams when they are
deployed, publish messages, run a worker per function on the streams it reads, deliver callbacks from the outbox,
fire timer triggers once per tick, report queue load, list and replay dead letters.

``functions`` is a callable returning the deployed functions, so this package needs nothing from the gateway or the
backends; ``invoke`` runs one invocation through the gateway's own proxy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from events import schedule
from events.callbacks import DEFAULT_POLICY
from events.messages import Invocation, new_call_id
from events.outbox import CallbackOutbox
from events.queue import (
    CallRecord,
    Fields,
    Queue,
    QueueUnavailable,
    StreamInfo,
    async_stream,
    dead_stream,
    group_of,
    stream_problem,
)
from events.redis_queue import RedisQueue
from events.sqlite_queue import SQLiteQueue
from events.worker import FunctionWorker, Invoke, WorkerSettings, log, per_replica_limit, worker_concurrency
from stoker.background import BackgroundLoop
from stoker.callback_policy import CallbackPolicy
from stoker.errors import Conflict, InvalidRequest
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)

STREAM_ANNOTATION = "com.stoker.queue.stream"
CONCURRENCY_ANNOTATION = "com.stoker.queue.concurrency"
CALL_PENDING_TTL_S = 7 * 24 * 3600.0  # a queued call stays known this long, however long the queue is
TICK_KEY_TTL_S = 24 * 3600.0
# Callbacks posted at once per process: STOKER_QUEUE_CONCURRENCY caps a function's worker, which follows its replicas
# (256 by default); a receiver gets no more than this many connections from one process at a time.
CALLBACKS_AT_ONCE = 16
# How often a function's worker follows its ready replicas, and a new function gets its worker (QueueService.follow):
# an in-memory look, far cheaper than a full sync.
FOLLOW_EVERY_S = 0.1


class CallIdInUse(Conflict):
    """An async call's chosen id names a call the queue already knows (409): its record is left as it is."""


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
    ahead: int = 0  # of ``pending``, read ahead by this process's worker and not started (events/consumer.py)

    @property
    def backlog(self) -> int:
        return self.lag + self.pending

    def for_scaling(self) -> tuple[int, int]:
        """(queued, running) as the autoscaler counts them (autoscaler/backlog.py): messages read ahead wait like
        the lag; they are no call in flight yet. (A process with no worker, ``stoker controller``, cannot tell the
        gateways' few read-ahead messages from their running calls.)"""
        return self.lag + self.ahead, max(0, self.pending - self.ahead)


def annotated_streams(dep: FunctionDeployment) -> list[str]:
    values = {**dep.labels, **dep.annotations}
    return [s.strip() for s in values.get(STREAM_ANNOTATION, "").split(",") if s.strip()]


def subscriptions(dep: FunctionDeployment, triggers: list[tuple[str, str]]) -> list[str]:
    """Every stream a function reads: its async stream, its annotated streams, its ``stoker trigger`` streams."""
    fn = f"{dep.service}.{dep.namespace}"
    added = [s for f, s in triggers if f in (fn, dep.service)]
    return [async_stream(fn), *dict.fromkeys(annotated_streams(dep) + added)]


def check_streams(dep: FunctionDeployment) -> None:
    """Refuse a ``com.stoker.queue.stream`` annotation naming a stream that cannot be a user's stream (stoker's own
    ``stoker:*`` streams above all: a function must not read another's async calls)."""
    for stream in annotated_streams(dep):
        problem = stream_problem(stream)
        if problem:
            raise InvalidRequest(f"{STREAM_ANNOTATION}: {problem}")


class QueueService:
    def __init__(
        self,
        queue: Queue,
        functions: Callable[[], list[FunctionDeployment]],
        invoke: Invoke,
        settings: WorkerSettings,
        sync_interval_s: float = 1.0,
        callback_policy: CallbackPolicy = DEFAULT_POLICY,
        ready: Callable[[str], int] | None = None,
    ) -> None:
        self.queue = queue
        # Ready replicas of a function (name.namespace): its worker runs that many x their in-flight limit at once,
        # followed every FOLLOW_EVERY_S (events.worker.worker_concurrency); None: settings.concurrency, fixed.
        self.ready = ready
        self.callback_policy = callback_policy
        self.functions = functions
        self.invoke = invoke
        self.settings = settings
        self.sync_interval_s = sync_interval_s
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.workers: dict[str, tuple[list[str], FunctionWorker, asyncio.Task[None]]] = {}
        self._cron_after: dict[tuple[str, str], float] = {}
        self._cron_broken: set[tuple[str, str]] = set()  # schedules whose failure was logged (once each)
        self._supervisor = BackgroundLoop(self._supervise, "queue supervisor")
        self.outbox = CallbackOutbox(
            queue,
            self.consumer,
            min(settings.concurrency, CALLBACKS_AT_ONCE),
            settings.claim_idle_s,
            settings.block_s,
            callback_policy,
        )
        self._outbox_task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._supervisor.start()
        self._outbox_task = asyncio.create_task(self.outbox.run())

    async def stop(self, grace_s: float) -> None:
        await self._supervisor.stop()
        await asyncio.gather(self.outbox.stop(grace_s), *(w.stop(grace_s) for _, w, _ in self.workers.values()))
        for _, _, task in self.workers.values():
            task.cancel()
        if self._outbox_task is not None:
            self._outbox_task.cancel()
        self.workers.clear()
        await self.queue.close()

    # -- async calls ----------------------------------------------------------------------------------------
    async def accept(self, inv: Invocation, call_id: str = "") -> str:
        """Persist an async call under ``call_id`` (the caller's, checked with
        :func:`~events.messages.caller_call_id`) or a new one; return the id. Raises QueueUnavailable, having stored
        nothing, and CallIdInUse when a call of that id is known (queued, running, or its result still kept)."""
        inv.call_id = call_id or new_call_id()
        inv.enqueued_at = time.time()
        stream = async_stream(inv.function)
        if await self.queue.enqueue_new_call(stream, inv.encode(), inv.call_id, CALL_PENDING_TTL_S) is None:
            raise CallIdInUse(f"call id {inv.call_id!r} is in use; send another X-Call-Id, or none for a new one")
        return inv.call_id

    async def call(self, call_id: str) -> CallRecord | None:
        return await self.queue.get_call(call_id)

    # -- subscriptions and messages -------------------------------------------------------------------------
    async def subscribe(self, dep: FunctionDeployment) -> None:
        """Make ``dep``'s subscriptions live now: its consumer group on each of its users' streams, created at the
        stream's current end (its start for a stream that does not exist yet), so every message published after
        this returns is delivered, whichever process's worker reads it and however long until it starts. Called
        before a deploy is answered. Raises QueueUnavailable.

        Only the annotated streams: a ``stoker trigger``'s group is made when the trigger is (the function exists
        then, and the group outlives a redeploy), and the async stream is read from its start. So a function with no
        annotated stream deploys without asking the queue anything, even while it is down."""
        fn = f"{dep.service}.{dep.namespace}"
        for stream in annotated_streams(dep):
            await self.queue.ensure_group(stream, group_of(fn), from_start=False)

    async def add_trigger(self, function: str, stream: str) -> bool:
        """Subscribe ``function`` (name.namespace) to ``stream`` from now on; True when the trigger is new."""
        await self.queue.ensure_group(stream, group_of(function), from_start=False)
        return await self.queue.set_trigger(function, stream, True)

    async def publish(self, stream: str, fields: Fields) -> str:
        """Append a message to a user's stream; return its id. Raises InvalidRequest for stoker's own streams."""
        problem = stream_problem(stream)
        if problem:
            raise InvalidRequest(problem)
        return await self.queue.add(stream, fields)

    # -- observation ----------------------------------------------------------------------------------------
    async def load(self, function: str) -> QueueLoad:
        """Backlog of ``function`` (name.namespace) over all its streams: the autoscaler's queue signal."""
        lag = pending = 0
        entry = self.workers.get(function)
        for stream in entry[0] if entry else await self._streams_of(function):
            info = await self.queue.info(stream, group_of(function))
            lag, pending = lag + info.lag, pending + info.pending
        if entry is None:
            return QueueLoad(lag, pending, 0)
        return QueueLoad(lag, pending, entry[1].inflight, min(pending, len(entry[1].ahead)))

    async def _streams_of(self, function: str) -> list[str]:
        """The streams of a function this process runs no worker for (yet, or ever: ``stoker controller`` only reads
        the queue's load): its subscriptions as deployed."""
        for dep in self.functions():
            if f"{dep.service}.{dep.namespace}" == function:
                return subscriptions(dep, await self.queue.triggers())
        return [async_stream(function)]

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
        wanted = None if ids is None else set(ids)  # an empty list replays nothing
        for msg in await self.queue.entries(dead_stream(function), 100_000):
            if wanted is not None and msg.id not in wanted:
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
        """A full sync (triggers from the queue, workers started and stopped, cron) every ``sync_interval_s``, and at
        once when the deployed functions change; in between, every FOLLOW_EVERY_S, each worker's concurrency follows
        its function's ready replicas (:meth:`follow`: no I/O). So a function just deployed gets its worker, and a
        replica that becomes ready takes queued calls, within FOLLOW_EVERY_S rather than a sync interval."""
        next_sync: float = -float("inf")
        synced: frozenset[str] | None = None
        while True:
            pause = min(FOLLOW_EVERY_S, self.sync_interval_s)
            try:
                deps = {f"{dep.service}.{dep.namespace}": dep for dep in self.functions()}
                if time.monotonic() >= next_sync or frozenset(deps) != synced:  # a failed sync waits its interval
                    next_sync, synced = time.monotonic() + self.sync_interval_s, frozenset(deps)
                    await self._sync(time.time(), deps)
                else:
                    self.follow(deps)
            except QueueUnavailable as exc:
                log(f"{exc}; retrying")
            except Exception as exc:  # a bug must not end the supervisor: no worker would start or stop again
                log(f"supervisor: {type(exc).__name__}: {exc}")
                pause = self.sync_interval_s  # logged once a sync interval, not ten times a second
            await asyncio.sleep(pause)

    def follow(self, deps: dict[str, FunctionDeployment]) -> None:
        """Resize each worker of ``deps`` (name.namespace -> deployment) to its function's concurrency now: its ready
        replicas may have changed."""
        for fn, (_, worker, _) in self.workers.items():
            dep = deps.get(fn)
            if dep is not None and (concurrency := self.concurrency(fn, dep)) != worker.concurrency:
                worker.resize(concurrency)

    async def _sync(self, now: float, deps: dict[str, FunctionDeployment]) -> None:
        """Start and stop workers for ``deps`` (name.namespace -> deployment, as deployed now), fire cron ticks."""
        triggers = await self.queue.triggers()
        wanted = {fn: (subscriptions(dep, triggers), dep) for fn, dep in deps.items()}
        for fn in list(self.workers):
            if fn not in wanted or wanted[fn][0] != self.workers[fn][0]:
                await self._stop_worker(fn)
        for fn, (streams, dep) in wanted.items():
            if fn not in self.workers:
                self._start_worker(fn, streams, dep)
        self.follow(deps)
        await self.fire_cron(now, list(deps.values()))

    def concurrency(self, fn: str, dep: FunctionDeployment) -> int:
        """How many of ``fn``'s queued calls run at once in this process: its ``com.stoker.queue.concurrency``
        annotation (fixed), else its ready replicas x their in-flight limit within 1 and ``STOKER_QUEUE_CONCURRENCY``
        (when this service knows replicas), else ``STOKER_QUEUE_CONCURRENCY``."""
        raw = {**dep.labels, **dep.annotations}.get(CONCURRENCY_ANNOTATION, "")
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
        if self.ready is None:
            return self.settings.concurrency
        return worker_concurrency(self.ready(fn), per_replica_limit(dep.settings), self.settings.concurrency)

    def _start_worker(self, fn: str, streams: list[str], dep: FunctionDeployment) -> None:
        settings = self.settings
        concurrency = self.concurrency(fn, dep)
        if concurrency != settings.concurrency:
            settings = WorkerSettings(
                concurrency, settings.policy, settings.claim_idle_s, settings.result_ttl_s, settings.block_s
            )
        worker = FunctionWorker(self.queue, fn, streams, self.invoke, settings, self.consumer)
        self.workers[fn] = (streams, worker, asyncio.create_task(worker.run()))

    async def _stop_worker(self, fn: str) -> None:
        _, worker, task = self.workers.pop(fn)
        await worker.stop(5.0)
        task.cancel()

    async def fire_cron(self, now: float, deps: list[FunctionDeployment]) -> list[str]:
        """Enqueue the ticks of ``deps``' schedules due since the last call (the first call only starts the clock);
        return the ids of the messages this process enqueued. Every process computes the same ticks; claiming a
        tick and enqueuing it are one atomic step, so each tick is enqueued exactly once across processes.

        A schedule that fails (one deployed before deploys checked that it fires, say) is logged once and skipped:
        it never keeps another function's schedule from firing."""
        added = []
        for dep in deps:
            expression = schedule.schedule_of(dep.labels, dep.annotations)
            if not expression:
                continue
            key = (f"{dep.service}.{dep.namespace}", expression)
            try:
                added += await self._fire(key, now)
            except QueueUnavailable:
                raise  # the queue, not this schedule: every function waits for it alike
            except Exception as exc:
                if key not in self._cron_broken:
                    self._cron_broken.add(key)
                    logger.warning("%s: schedule %r skipped: %s", key[0], expression, exc)
        return added

    async def _fire(self, key: tuple[str, str], now: float) -> list[str]:
        fn, expression = key
        added = []
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
