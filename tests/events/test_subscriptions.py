"""Subscriptions are live from the moment a deploy or a trigger is answered (both real queues): messages published
right after it reach a worker that starts only later, and the history before it does not."""

from __future__ import annotations

import asyncio
import time

from events.messages import Invocation, Result
from events.queue import Queue, group_of
from events.retry import RetryPolicy
from events.service import QueueService
from events.worker import WorkerSettings
from stoker.spec import FunctionDeployment
from tests.wait_support import wait_until_async


def _service(queue: Queue, deps: list[FunctionDeployment], seen: list[bytes]) -> QueueService:
    async def invoke(inv: Invocation) -> Result:
        seen.append(inv.body)
        return Result(200, [], b"", 0.0, inv.function)

    settings = WorkerSettings(8, RetryPolicy(3, 0.01, 0.05), claim_idle_s=5.0, block_s=0.1)
    return QueueService(queue, lambda: deps, invoke, settings, sync_interval_s=0.05)


async def test_messages_published_right_after_subscribe_reach_a_worker_started_later(queue: Queue, name: str) -> None:
    service_name, namespace = name.split(".")
    stream = f"orders-{name}"
    await queue.add(stream, {"body": "history"})  # before the deploy: not for this function
    dep = FunctionDeployment(service_name, namespace, annotations={"com.stoker.queue.stream": stream})
    seen: list[bytes] = []
    service = _service(queue, [dep], seen)
    await service.subscribe(dep)  # what a deploy does before it is answered
    sent = [f"m{i}".encode() for i in range(50)]
    for body in sent:
        await queue.add(stream, {"body": body})
    await service.start()  # the worker starts afterwards (on main: at the next sync, at the end of the stream)
    try:
        await wait_until_async(lambda: len(seen) >= len(sent), 20)
        # Everything the group will ever be given has been: nothing left to deliver, nothing unacknowledged (a
        # redelivery or the history would show up in ``seen`` by then).
        deadline = time.monotonic() + 20
        while (info := await queue.info(stream, group_of(name))).lag or info.pending:
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.02)
        assert sorted(seen) == sorted(sent)
    finally:
        await service.stop(1)


async def test_a_trigger_reads_what_is_published_right_after_it_is_added(queue: Queue, name: str) -> None:
    service_name, namespace = name.split(".")
    stream = f"events-{name}"
    await queue.add(stream, {"body": "history"})
    seen: list[bytes] = []
    service = _service(queue, [FunctionDeployment(service_name, namespace)], seen)
    assert await service.add_trigger(name, stream) is True
    await queue.add(stream, {"body": "first"})
    await service.start()
    try:
        await wait_until_async(lambda: seen == [b"first"], 20)
    finally:
        await queue.set_trigger(name, stream, False)
        await service.stop(1)  # (closes the queue)


async def test_load_counts_every_subscribed_stream_without_a_worker(queue: Queue, name: str) -> None:
    # What ``stoker controller`` reads (it runs no worker): a function's backlog on its annotated stream too, not only
    # its async stream, so a trigger's backlog scales it.
    service_name, namespace = name.split(".")
    stream = f"orders-{name}"
    dep = FunctionDeployment(service_name, namespace, annotations={"com.stoker.queue.stream": stream})
    service = _service(queue, [dep], [])
    await service.subscribe(dep)
    for i in range(3):
        await queue.add(stream, {"body": str(i)})
    assert (await service.load(name)).lag == 3
