"""Read-ahead (events/consumer.py): messages read before a slot frees never run beyond the concurrency, and what a
worker read ahead is not stranded when it stops (given back, run by another worker at its next reclaim, its attempt
not spent) nor when it dies (reclaimed after the claim idle time, like the messages it was running). Real queues;
the invoke seam stands in for the function."""

from __future__ import annotations

import asyncio
import time

from events.messages import Invocation, Result
from events.queue import Message, Queue, async_stream, group_of
from events.retry import RetryPolicy
from events.worker import FunctionWorker, Invoke, WorkerSettings
from tests.wait_support import wait_until_async


def _settings(**kw: object) -> WorkerSettings:
    base: dict[str, object] = {"policy": RetryPolicy(3, 0.01, 0.05), "claim_idle_s": 30.0, "block_s": 0.1}
    return WorkerSettings(**{**base, **kw})  # type: ignore[arg-type]


class Recorder:
    """An invoke per worker: who ran which call, and a gate that holds the first worker's calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ran: list[tuple[str, str]] = []  # (worker, call id), in start order
        self.running = 0
        self.most = 0
        self.gate = asyncio.Event()

    def invoke(self, worker: str, gated: bool) -> Invoke:
        async def call(inv: Invocation) -> Result:
            self.ran.append((worker, inv.call_id))
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                if gated:
                    await self.gate.wait()
                return Result(200, [], b"ok", 0.001, self.name)
            finally:
                self.running -= 1

        return call


async def _enqueue(queue: Queue, name: str, n: int) -> list[str]:
    ids = [f"c{i}-{name}" for i in range(n)]  # call records are keyed by id on a shared redis-server
    for call_id in ids:
        await queue.enqueue_call(async_stream(name), Invocation(name, call_id=call_id).encode(), call_id, 60)
    return ids


async def _attempts(queue: Queue, call_id: str) -> int:
    record = await queue.get_call(call_id)
    assert record is not None and record.status == "done" and record.result is not None
    return Result.decode(record.result).attempts


async def test_read_ahead_messages_are_pending_but_never_run_beyond_the_concurrency(queue: Queue, name: str) -> None:
    rec = Recorder(name)
    worker = FunctionWorker(queue, name, [async_stream(name)], rec.invoke("w1", True), _settings(concurrency=2), "w1")
    ids = await _enqueue(queue, name, 8)
    task = asyncio.create_task(worker.run())
    try:
        # No call timed yet: one message read ahead (events/consumer.py: read_ahead)
        await wait_until_async(lambda: rec.running == 2 and len(worker.ahead) == 1, 20)
        info = await queue.info(async_stream(name), group_of(name))
        assert (info.pending, info.lag) == (3, 5)  # 2 running and 1 read ahead are held; the rest waits in the stream
        await asyncio.sleep(0.2)  # room for a third call, which must not start
        assert rec.most == 2 and len(rec.ran) == 2
        rec.gate.set()
        await wait_until_async(lambda: len(rec.ran) == 8 and worker.inflight == 0, 20)
        assert rec.most == 2 and sorted(c for _, c in rec.ran) == sorted(ids)
    finally:
        rec.gate.set()
        await worker.stop(1)
        task.cancel()


async def test_a_stopping_worker_gives_back_what_it_read_ahead_and_another_runs_it_at_once(
    queue: Queue, name: str
) -> None:
    """The claim idle time is 30 s: the read-ahead message runs on the other worker while the stopping one still
    finishes its running call, and counts as the same attempt (its delivery to the stopping worker is taken back)."""
    rec = Recorder(name)
    settings = _settings(concurrency=1)
    first = FunctionWorker(queue, name, [async_stream(name)], rec.invoke("first", True), settings, "first")
    running, ahead, rest = await _enqueue(queue, name, 3)
    first_task = asyncio.create_task(first.run())
    other = FunctionWorker(queue, name, [async_stream(name)], rec.invoke("other", False), settings, "other")
    other_task: asyncio.Task[None] | None = None
    try:
        await wait_until_async(lambda: rec.ran == [("first", running)] and [m.id for m in first.ahead] != [], 20)
        other_task = asyncio.create_task(other.run())
        await wait_until_async(lambda: ("other", rest) in rec.ran, 20)
        started = time.monotonic()
        stopping = asyncio.create_task(first.stop(30))  # as on SIGTERM; its running call is still held at the gate
        await wait_until_async(lambda: ("other", ahead) in rec.ran, 20)
        assert time.monotonic() - started < settings.claim_idle_s / 2, "given back, not reclaimed after the idle time"
        assert not stopping.done() and rec.running == 1  # the stopping worker still runs its call meanwhile
        rec.gate.set()
        await stopping
        await wait_until_async(lambda: other.inflight == 0 and first.inflight == 0, 20)
        assert sorted(rec.ran) == sorted([("first", running), ("other", ahead), ("other", rest)])  # each ran once
        assert await _attempts(queue, ahead) == 1
        assert (await queue.info(async_stream(name), group_of(name))).pending == 0
    finally:
        rec.gate.set()
        await first.stop(1)
        await other.stop(1)
        first_task.cancel()
        if other_task is not None:
            other_task.cancel()


async def test_what_a_dead_worker_read_ahead_is_reclaimed_after_the_claim_idle_time(queue: Queue, name: str) -> None:
    """A worker that dies (its task ends with no stop: no give-back, no more renewals) leaves its read-ahead message
    pending; another worker takes it once it has been idle for claim_idle_s, as a second delivery."""
    rec = Recorder(name)
    settings = _settings(concurrency=1, claim_idle_s=1.0)
    dead = FunctionWorker(queue, name, [async_stream(name)], rec.invoke("dead", True), settings, "dead")
    running, ahead = await _enqueue(queue, name, 2)
    dead_task = asyncio.create_task(dead.run())
    other = FunctionWorker(queue, name, [async_stream(name)], rec.invoke("other", False), settings, "other")
    other_task: asyncio.Task[None] | None = None
    try:
        await wait_until_async(lambda: rec.ran == [("dead", running)] and len(dead.ahead) == 1, 20)
        dead_task.cancel()  # it stops reading and renewing, and gives nothing back: as SIGKILL leaves it
        for task in list(dead._tasks):
            task.cancel()
        killed = time.monotonic()
        other_task = asyncio.create_task(other.run())
        await wait_until_async(lambda: {("other", running), ("other", ahead)} <= set(rec.ran), 20)
        # not before it went quiet for the claim idle time (its last renewal came at most claim_idle_s / 3 earlier)
        assert time.monotonic() - killed >= settings.claim_idle_s * 2 / 3 - 0.1
        await wait_until_async(lambda: other.inflight == 0, 20)
        assert await _attempts(queue, ahead) == 2
    finally:
        rec.gate.set()
        await other.stop(1)
        if other_task is not None:
            other_task.cancel()


async def test_giving_back_leaves_alone_a_message_another_consumer_took_meanwhile(queue: Queue, name: str) -> None:
    """A consumer whose renewals failed (the queue was away) may give back a message another one reclaimed and runs:
    that one keeps it (it is not made reclaimable again, so it does not run a third time)."""
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    await queue.add(stream, {"m": Invocation(name).encode()})
    (mine,) = await queue.read([stream], group, "first", 10, 0.1)
    taken: list[Message] = []
    while not taken:  # as after claim_idle_s without renewals (idle 1 ms at least: Redis counts in milliseconds)
        taken = await queue.reclaim(stream, group, "other", 0.0, 10)
    (theirs,) = taken
    await queue.release(stream, group, "first", [mine])
    assert await queue.reclaim(stream, group, "third", 5.0, 10) == []  # still the other's, busy
    await queue.release(stream, group, "other", [theirs])  # its owner gives it back: reclaimable at once
    (again,) = await queue.reclaim(stream, group, "third", 5.0, 10)
    assert (again.id, again.deliveries) == (mine.id, 2)  # taken back from the other's second delivery
