"""One function's queue worker: read its streams through its consumer group, run each message as one invocation
with bounded concurrency (:class:`events.consumer.StreamConsumer`), acknowledge only after a 2xx, retry failures with
backoff, bury what keeps failing.

Settling a message is one transaction (:meth:`events.queue.Queue.finish`): the ack, the call's result, the callback's
outbox entry and the dead letter are stored together or not at all, so a queue that dies in between leaves the
message pending (it runs again once reclaimed), never an acknowledged call without its result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from events.consumer import StreamConsumer, log
from events.messages import Callback, CallStatus, Invocation, Result, dead_letter, from_stream_entry
from events.queue import ASYNC_PREFIX, Completion, Message, Queue, QueueUnavailable, dead_stream, group_of
from events.retry import RetryPolicy, Verdict, decide
from stoker.spec import FunctionSettings

__all__ = ["FunctionWorker", "Invoke", "WorkerSettings", "log", "per_replica_limit", "worker_concurrency"]

Invoke = Callable[[Invocation], Awaitable[Result]]

# An async call is noted "running" once it has run this long: its status reads "queued" until then, and a call that
# ends sooner is stored done without a "running" write (one write to the queue per call instead of two: 1.2x the
# async calls per second of a no-op function, bench/queues.py).
RUNNING_AFTER_S = 0.05


def per_replica_limit(settings: FunctionSettings) -> int:
    """The calls one replica of a function should run at once: its in-flight limit (``com.stoker.concurrency``);
    without one, its autoscaling target when that counts calls in flight (``capacity``, 10 by default: the load
    a replica is meant to carry, so the queue alone never asks for more replicas than it has); 0 (no figure: the
    cap alone) for a function scaled on requests per second."""
    if settings.concurrency > 0:
        return settings.concurrency
    return settings.scale_target if settings.scale_type == "capacity" else 0


def worker_concurrency(ready: int, per_replica: int, cap: int) -> int:
    """A function's queue worker runs ``ready`` replicas x ``per_replica`` calls at once (0: no per-replica figure),
    at most ``cap`` (``STOKER_QUEUE_CONCURRENCY``), and at least 1: with no replica ready, one call goes through the
    proxy and wakes the function (the activator scales it from zero)."""
    if per_replica <= 0:
        return max(1, cap if ready > 0 else 1)
    return max(1, min(cap, ready * per_replica))


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 16  # invocations in flight per function (per process); the cap when it follows replicas
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    claim_idle_s: float = 30.0  # a pending message idle this long belongs to a dead consumer
    result_ttl_s: float = 3600.0
    block_s: float = 1.0


class FunctionWorker(StreamConsumer):
    def __init__(
        self,
        queue: Queue,
        function: str,
        streams: list[str],
        invoke: Invoke,
        settings: WorkerSettings,
        consumer: str,
    ) -> None:
        super().__init__(
            queue,
            function,
            streams,
            group_of(function),
            consumer,
            settings.concurrency,
            settings.claim_idle_s,
            settings.block_s,
        )
        self.function = function
        self.invoke = invoke
        self.settings = settings

    def from_start(self, stream: str) -> bool:
        # A user's stream is subscribed at deploy (or trigger create) at its position then; a group missing later
        # (the stream was deleted) starts at the end, like a new subscription.
        return _own(stream)

    def _decode(self, msg: Message) -> Invocation:
        if _own(msg.stream):
            return Invocation.decode(msg.fields.get(b"m", b""))
        return from_stream_entry(self.function, msg.stream, msg.id, msg.fields)

    async def handle(self, msg: Message) -> None:
        own = _own(msg.stream)
        try:
            inv = self._decode(msg)
        except ValueError as exc:
            bad = Invocation(self.function, body=msg.fields.get(b"m", b""), origin=f"{msg.stream}:{msg.id}")
            fields = dead_letter(bad, f"undecodable message: {exc}", msg.deliveries, msg.stream, msg.id, time.time())
            self.call_over(msg)
            await self.queue.finish(
                msg, self.group, own, Completion(dead_stream=dead_stream(self.function), dead=fields)
            )
            return
        policy, ttl = self.settings.policy, self.settings.result_ttl_s
        current: Message | None = msg
        while current is not None:
            attempt = current.deliveries
            # The call's "running" goes to the queue once it has run for RUNNING_AFTER_S, while it runs: a call
            # shorter than that goes from queued to done with one write, not two. Awaited before the settle, so
            # never after it (and a late one could not hide a result).
            notes: list[asyncio.Task[None]] = []
            timer = self._running_later(inv.call_id, ttl, notes) if inv.call_id else None
            try:
                result = await self.invoke(inv)
            finally:
                if timer is not None:
                    timer.cancel()
            for note in notes:
                await note
            result.attempts = attempt
            verdict, delay = decide(policy, result.status, attempt)
            if verdict is Verdict.RETRY:
                if inv.call_id:
                    await self.queue.set_call(inv.call_id, CallStatus.RETRYING, None, ttl)
                await asyncio.sleep(delay)  # still held: the renew loop keeps others from reclaiming it
                current = await self.queue.redeliver(msg.stream, self.group, self.consumer, msg.id)
                continue
            self.call_over(msg)  # settling is no call: the next message starts while this one is settled
            done = _completion(inv, result, ttl)
            if verdict is Verdict.DEAD:
                error = f"{result.status}: {result.body[:500].decode('utf-8', 'replace')}"
                fields = dead_letter(inv, error, attempt, msg.stream, msg.id, time.time())
                done = Completion(
                    done.call_id, done.result, ttl, done.callback, dead_stream=dead_stream(self.function), dead=fields
                )
            await self.queue.finish(msg, self.group, own, done)
            return

    def _running_later(self, call_id: str, ttl_s: float, notes: list[asyncio.Task[None]]) -> asyncio.TimerHandle:
        """Note ``call_id`` running in RUNNING_AFTER_S (unless the timer is cancelled first); the write's task goes
        into ``notes``, for the caller to await before it settles the call."""
        return asyncio.get_running_loop().call_later(
            RUNNING_AFTER_S, lambda: notes.append(asyncio.create_task(self._progress(call_id, ttl_s)))
        )

    async def _progress(self, call_id: str, ttl_s: float) -> None:
        try:
            await self.queue.set_call(call_id, CallStatus.RUNNING, None, ttl_s)
        except QueueUnavailable as exc:  # only progress: the settle decides, and leaves the message pending if it fails
            log(f"{self.function}: call {call_id}: its running status not stored: {exc}")


def _completion(inv: Invocation, result: Result, ttl_s: float) -> Completion:
    """The result of an async call (and its callback, if it asked for one) to store with the message's ack."""
    if not inv.call_id:
        return Completion()
    callback = Callback(inv.callback_url, inv.call_id, result).encode() if inv.callback_url else b""
    return Completion(inv.call_id, result.encode(), ttl_s, callback)


def _own(stream: str) -> bool:
    """stoker's own per-function streams (one group each, entries deleted once done) vs. a user's streams."""
    return stream.startswith(ASYNC_PREFIX)
