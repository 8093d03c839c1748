"""One function's queue worker: read its streams through its consumer group, run each message as one invocation
with bounded concurrency, acknowledge only after a 2xx, retry failures with backoff, bury what keeps failing.

While a message is being worked on (running, or waiting for its retry) its idle time is renewed, so no other
consumer reclaims a long invocation that is still running; messages of a consumer that died are reclaimed
(XAUTOCLAIM) once idle for ``claim_idle_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from events.messages import CallStatus, Invocation, Result, dead_letter, from_stream_entry
from events.queue import ASYNC_PREFIX, Message, Queue, QueueUnavailable, dead_stream, group_of
from events.retry import RetryPolicy, Verdict, decide

Invoke = Callable[[Invocation], Awaitable[Result]]
Finished = Callable[[Invocation, Result], Awaitable[None]]


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 16  # invocations in flight per function (per process)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    claim_idle_s: float = 30.0  # a pending message idle this long belongs to a dead consumer
    result_ttl_s: float = 3600.0
    block_s: float = 1.0


def log(message: str) -> None:
    print(f"stoker: queue: {message}", file=sys.stderr, flush=True)


class FunctionWorker:
    def __init__(
        self,
        queue: Queue,
        function: str,
        streams: list[str],
        invoke: Invoke,
        settings: WorkerSettings,
        consumer: str,
        finished: Finished,
    ) -> None:
        self.queue = queue
        self.function = function
        self.streams = streams
        self.invoke = invoke
        self.settings = settings
        self.consumer = consumer
        self.finished = finished
        self.group = group_of(function)
        self.held: dict[str, str] = {}  # message id -> stream, for messages this worker is working on
        self.inflight = 0
        self._free = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def run(self) -> None:
        """Read and run until cancelled or stopped; survives the queue going away and coming back."""
        ready = False
        last_claim = 0.0
        renew = asyncio.create_task(self._renew_loop())
        try:
            while not self._stopping:
                try:
                    if not ready:
                        for stream in self.streams:
                            await self.queue.ensure_group(stream, self.group, from_start=_own(stream))
                        ready = True
                    await self._free.acquire()  # wait for a slot before taking messages
                    self._free.release()
                    now = time.monotonic()
                    if now - last_claim >= self.settings.claim_idle_s / 4:
                        last_claim = now
                        for stream in self.streams:
                            for msg in await self.queue.reclaim(
                                stream, self.group, self.consumer, self.settings.claim_idle_s, self._slots()
                            ):
                                await self._start(msg)
                    free = self._slots()
                    if free == 0:
                        continue
                    for msg in await self.queue.read(
                        self.streams, self.group, self.consumer, free, self.settings.block_s
                    ):
                        await self._start(msg)
                except QueueUnavailable as exc:
                    log(f"{self.function}: {exc}; retrying in 1 s")
                    ready = False
                    await asyncio.sleep(1.0)
        finally:
            renew.cancel()

    def _slots(self) -> int:
        return max(0, self.settings.concurrency - self.inflight)

    async def _start(self, msg: Message) -> None:
        await self._free.acquire()
        self.inflight += 1
        self.held[msg.id] = msg.stream
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.inflight -= 1
        self._free.release()

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let the running ones finish for up to ``grace_s``, then cancel them (they stay
        pending and are reclaimed later, so nothing is lost)."""
        self._stopping = True
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in running:
                task.cancel()

    async def _renew_loop(self) -> None:
        every = max(0.05, self.settings.claim_idle_s / 3)
        while True:
            await asyncio.sleep(every)
            by_stream: dict[str, list[str]] = {}
            for msg_id, stream in list(self.held.items()):
                by_stream.setdefault(stream, []).append(msg_id)
            for stream, ids in by_stream.items():
                with contextlib.suppress(QueueUnavailable):
                    await self.queue.renew(stream, self.group, self.consumer, ids)

    async def _handle(self, msg: Message) -> None:
        try:
            await self._attempts(msg)
        except QueueUnavailable as exc:
            # The message stays pending; it is reclaimed (and run again) once the queue is back: at least once.
            log(f"{self.function}: message {msg.id} left pending: {exc}")
        finally:
            self.held.pop(msg.id, None)

    def _decode(self, msg: Message) -> Invocation:
        if _own(msg.stream):
            return Invocation.decode(msg.fields.get(b"m", b""))
        return from_stream_entry(self.function, msg.stream, msg.id, msg.fields)

    async def _attempts(self, msg: Message) -> None:
        own = _own(msg.stream)
        try:
            inv = self._decode(msg)
        except ValueError as exc:
            bad = Invocation(self.function, body=msg.fields.get(b"m", b""), origin=f"{msg.stream}:{msg.id}")
            fields = dead_letter(bad, f"undecodable message: {exc}", msg.deliveries, msg.stream, msg.id, time.time())
            await self.queue.bury(msg, self.group, dead_stream(self.function), fields, own)
            return
        policy, ttl = self.settings.policy, self.settings.result_ttl_s
        current: Message | None = msg
        while current is not None:
            attempt = current.deliveries
            if inv.call_id:
                await self.queue.set_call(inv.call_id, CallStatus.RUNNING, None, ttl)
            result = await self.invoke(inv)
            result.attempts = attempt
            verdict, delay = decide(policy, result.status, attempt)
            if verdict is Verdict.ACK:
                await self.queue.ack(msg.stream, self.group, [msg.id], own)
            elif verdict is Verdict.DEAD:
                error = f"{result.status}: {result.body[:500].decode('utf-8', 'replace')}"
                fields = dead_letter(inv, error, attempt, msg.stream, msg.id, time.time())
                await self.queue.bury(msg, self.group, dead_stream(self.function), fields, own)
            else:
                if inv.call_id:
                    await self.queue.set_call(inv.call_id, CallStatus.RETRYING, None, ttl)
                await asyncio.sleep(delay)  # still held: the renew loop keeps others from reclaiming it
                current = await self.queue.redeliver(msg.stream, self.group, self.consumer, msg.id)
                continue
            if inv.call_id:
                await self.queue.set_call(inv.call_id, CallStatus.DONE, result.encode(), ttl)
            await self.finished(inv, result)
            return


def _own(stream: str) -> bool:
    """stoker's own per-function streams (one group each, entries deleted once done) vs. a user's streams."""
    return stream.startswith(ASYNC_PREFIX)
