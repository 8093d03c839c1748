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


async def test_a_function_deployed_while_the_service_runs_gets_its_worker_and_follows_its_replicas(
    queue: Queue, name: str
) -> None:
    # A full sync only once a minute: the worker must start because the function appeared, and run as many calls at
    # once as its ready replicas allow as soon as they are ready, not at the next sync (the first messages after a
    # deploy waited up to a sync interval for a worker, then ran one at a time until the next one).
    service_name, namespace = name.split(".")
    stream = f"jobs-{name}"
    deps: list[FunctionDeployment] = []
    ready = {name: 1}
    running, most = 0, 0
    release = asyncio.Event()

    async def invoke(inv: Invocation) -> Result:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return Result(200, [], b"", 0.0, inv.function)

    settings = WorkerSettings(64, RetryPolicy(3, 0.01, 0.05), claim_idle_s=5.0, block_s=0.1)
    service = QueueService(queue, lambda: deps, invoke, settings, sync_interval_s=60, ready=lambda fn: ready[fn])
    await service.start()
    try:
        await asyncio.sleep(0.3)  # the first full sync is over: the next is a minute away
        dep = FunctionDeployment(
            service_name,
            namespace,
            labels={"com.stoker.concurrency": "2"},
            annotations={"com.stoker.queue.stream": stream},
        )
        await service.subscribe(dep)
        deps.append(dep)  # what a deploy does next
        for i in range(20):
            await queue.add(stream, {"body": str(i)})
        await wait_until_async(lambda: running == 2, 10, "the new function's worker to run 2 calls (1 replica x 2)")
        await asyncio.sleep(0.3)
        assert most == 2
        ready[name] = 3
        await wait_until_async(lambda: running == 6, 10, "the worker to follow 3 ready replicas (3 x 2 calls)")
        await asyncio.sleep(0.3)
        assert most == 6
    finally:
        release.set()
        await service.stop(1)


async def test_the_supervisor_outlives_a_listing_of_functions_that_fails(queue: Queue, name: str) -> None:
    # The backend's listing can fail (a bug, a backend not ready): the supervisor logs it and tries again, or no
    # worker would ever start or stop again.
    service_name, namespace = name.split(".")
    stream = f"after-{name}"
    dep = FunctionDeployment(service_name, namespace, annotations={"com.stoker.queue.stream": stream})
    listed = 0

    def functions() -> list[FunctionDeployment]:
        nonlocal listed
        listed += 1
        if listed <= 2:
            raise RuntimeError("the backend is not ready")
        return [dep]

    seen: list[bytes] = []

    async def invoke(inv: Invocation) -> Result:
        seen.append(inv.body)
        return Result(200, [], b"", 0.0, inv.function)

    settings = WorkerSettings(8, RetryPolicy(3, 0.01, 0.05), claim_idle_s=5.0, block_s=0.1)
    service = QueueService(queue, functions, invoke, settings, sync_interval_s=0.05)
    await service.subscribe(dep)
    await queue.add(stream, {"body": "m"})
    await service.start()
    try:
        await wait_until_async(lambda: seen == [b"m"], 20, "the message, once the listing works")
    finally:
        await service.stop(1)
