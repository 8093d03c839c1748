"""The worker against real queues; the invoke seam stands in for the function (the HTTP path is tested in
tests/gateway/test_async*.py)."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections import Counter
from typing import Any

from events.messages import Invocation, Result
from events.queue import Message, Queue, async_stream, dead_stream, group_of
from events.retry import RetryPolicy
from events.worker import FunctionWorker, WorkerSettings
from tests.wait_support import wait_until_async


def _settings(**kw: object) -> WorkerSettings:
    base: dict[str, object] = {"policy": RetryPolicy(3, 0.01, 0.05), "claim_idle_s": 5.0, "block_s": 0.1}
    return WorkerSettings(**{**base, **kw})  # type: ignore[arg-type]


async def test_failures_are_retried_then_dead_lettered_with_the_attempt_count(queue: Queue, name: str) -> None:
    calls: Counter[str] = Counter()

    async def invoke(inv: Invocation) -> Result:
        calls[inv.call_id] += 1
        return Result(500, [], b"poison", 0.001, name)

    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, _settings(), "w1")
    task = asyncio.create_task(worker.run())
    call_id = f"c-{name}"  # call records are keyed by id on a shared redis-server: one of this run's own
    await queue.enqueue_call(async_stream(name), Invocation(name, call_id=call_id).encode(), call_id, 60)
    try:
        await wait_until_async(lambda: calls[call_id] == 3 and worker.inflight == 0, 20)
        (dead,) = await queue.entries(dead_stream(name), 10)
        assert dead.fields[b"attempts"] == b"3" and b"poison" in dead.fields[b"error"]
        assert Invocation.decode(dead.fields[b"m"]).call_id == call_id
        record = await queue.get_call(call_id)
        assert record is not None and record.status == "done" and record.result is not None
        assert Result.decode(record.result).status == 500
        # No attempt after the last: the message is acknowledged (nothing pending that could be redelivered or
        # reclaimed) and its stream is empty.
        assert (await queue.info(async_stream(name), group_of(name))).pending == 0
        assert await queue.entries(async_stream(name), 10) == []
        assert calls[call_id] == 3
    finally:
        await worker.stop(1)
        task.cancel()


async def test_a_long_invocation_is_not_redelivered_while_it_runs(queue: Queue, name: str) -> None:
    runs: Counter[str] = Counter()

    async def slow(inv: Invocation) -> Result:
        runs[inv.call_id] += 1
        await asyncio.sleep(1.5)  # five times the idle time after which a silent consumer's messages are taken
        return Result(200, [], b"ok", 1.5, name)

    settings = _settings(claim_idle_s=0.3)
    workers = [FunctionWorker(queue, name, [async_stream(name)], slow, settings, f"w{i}") for i in (1, 2)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    call_id = f"long-{name}"
    await queue.enqueue_call(async_stream(name), Invocation(name, call_id=call_id).encode(), call_id, 60)
    try:
        await wait_until_async(lambda: runs[call_id] >= 1, 20)
        await wait_until_async(lambda: all(w.inflight == 0 for w in workers), 20)
        record = await queue.get_call(call_id)
        assert record is not None and record.status == "done"
        assert runs[call_id] == 1
    finally:
        for w, t in zip(workers, tasks, strict=True):
            await w.stop(1)
            t.cancel()


async def test_an_async_call_reads_running_while_it_runs_and_done_after(queue: Queue, name: str) -> None:
    # "running" is written once the call has run RUNNING_AFTER_S (a shorter call goes from queued to done in one
    # write), while the call goes on, and never after its result.
    release = asyncio.Event()
    started: list[str] = []

    async def invoke(inv: Invocation) -> Result:
        started.append(inv.call_id)
        if inv.call_id.startswith("slow"):
            await release.wait()
        return Result(200, [], b"ok", 0.0, name)

    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, _settings(), "w1")
    task = asyncio.create_task(worker.run())
    slow, quick = f"slow-{name}", f"quick-{name}"
    try:
        for call_id in (slow, quick):
            await queue.enqueue_call(async_stream(name), Invocation(name, call_id=call_id).encode(), call_id, 60)
        await wait_until_async(lambda: slow in started, 20, "the slow call to start")

        async def status(call_id: str) -> str:
            record = await queue.get_call(call_id)
            return record.status if record else "unknown"

        seen = {"": ""}
        deadline = asyncio.get_running_loop().time() + 10
        while seen != {slow: "running", quick: "done"}:
            assert asyncio.get_running_loop().time() < deadline, f"after 10 s: {seen}"
            await asyncio.sleep(0.02)
            seen = {call_id: await status(call_id) for call_id in (slow, quick)}
        await asyncio.sleep(0.3)  # the slow call goes on: still running, however long it takes
        assert await status(slow) == "running"
        release.set()
        await wait_until_async(lambda: worker.inflight == 0, 20, "the slow call to be settled")
        record = await queue.get_call(slow)
        assert record is not None and record.status == "done" and Result.decode(record.result or b"").body == b"ok"
    finally:
        release.set()
        await worker.stop(1)
        task.cancel()


async def test_concurrency_per_function_is_bounded(queue: Queue, name: str) -> None:
    running = peak = done = 0

    async def invoke(inv: Invocation) -> Result:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        done += 1
        return Result(200, [], b"", 0.05, name)

    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, _settings(concurrency=3), "w")
    for _ in range(12):
        await queue.add(async_stream(name), {"m": Invocation(name).encode()})
    task = asyncio.create_task(worker.run())
    try:
        await wait_until_async(lambda: done == 12, 20)
        assert peak == 3
    finally:
        await worker.stop(1)
        task.cancel()


async def test_a_busy_worker_reads_messages_in_groups_not_one_per_freed_slot(queue: Queue, name: str) -> None:
    """Under load, calls end one by one; the worker waits a moment for more free slots before reading again, so the
    queue is asked once per group of messages (a round trip to Redis each), not once per message."""
    reads: list[int] = []
    read = queue.read

    async def counted(*args: Any, **kwargs: Any) -> list[Message]:
        got = await read(*args, **kwargs)
        if got:
            reads.append(len(got))
        return got

    queue.read = counted  # type: ignore[method-assign]  # observes the real queue's reads
    done: Counter[str] = Counter()
    spread = random.Random(7)

    async def invoke(inv: Invocation) -> Result:
        await asyncio.sleep(spread.uniform(0.001, 0.004))  # calls end at different moments
        done[inv.call_id] += 1
        return Result(200, [], b"", 0.002, name)

    total = 300
    for i in range(total):
        await queue.enqueue_call(async_stream(name), Invocation(name, call_id=f"c{i}").encode(), f"c{i}", 60)
    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, _settings(concurrency=16), "w1")
    task = asyncio.create_task(worker.run())
    try:
        await wait_until_async(lambda: len(done) == total and worker.inflight == 0, 20)
        assert sum(reads) == total and sum(done.values()) == total
        # a quarter of the worker's 16 slots at a time, but when calls ended too far apart
        assert statistics.median(reads) >= 4, f"{len(reads)} reads for {total} messages: {reads}"
    finally:
        await worker.stop(1)
        task.cancel()


async def test_resize_changes_how_many_calls_run_at_once(queue: Queue, name: str) -> None:
    # A function's replicas change; its worker follows (events/service.py re-reads them every sync).
    running = most = finished = 0
    release = asyncio.Semaphore(0)

    async def invoke(inv: Invocation) -> Result:
        nonlocal running, most, finished
        running += 1
        most = max(most, running)
        await release.acquire()
        running -= 1
        finished += 1
        return Result(200, [], b"ok", 0.001, name)

    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, _settings(concurrency=2), "w1")
    task = asyncio.create_task(worker.run())
    for i in range(12):
        await queue.add(async_stream(name), {"m": Invocation(name, body=str(i).encode()).encode()})
    try:
        await wait_until_async(lambda: running == 2, 20)
        await asyncio.sleep(0.2)  # room for a third, which must not start
        assert most == 2
        worker.resize(5)
        await wait_until_async(lambda: running == 5, 20)
        worker.resize(1)  # shrinking cancels nothing: the 5 finish, then one at a time
        for _ in range(5):
            release.release()
        await wait_until_async(lambda: finished == 5 and running == 1, 20)
        most = 1
        await asyncio.sleep(0.2)
        assert most == 1 and running == 1
        for _ in range(7):
            release.release()
        await wait_until_async(lambda: finished == 12 and worker.inflight == 0, 20)
        assert most == 1
    finally:
        for _ in range(12):
            release.release()
        await worker.stop(1)
        task.cancel()
