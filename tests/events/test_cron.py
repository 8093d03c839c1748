"""Timer triggers through the queue service, on both real queues: each tick is enqueued exactly once, however many
processes (services, each with its own connection) compute it at the same moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from events.messages import Invocation, Result
from events.queue import Queue, async_stream
from events.redis_queue import RedisQueue
from events.retry import RetryPolicy
from events.service import QueueService
from events.sqlite_queue import SQLiteQueue
from events.worker import WorkerSettings
from stoker.spec import FunctionDeployment
from tests.events.conftest import redis_url


async def _never(inv: Invocation) -> Result:
    raise AssertionError("no worker runs in these tests")


@pytest.fixture
def where(kind: str, tmp_path: Path) -> str:
    """The test's queue: a SQLite file, or a Redis database of the test's own."""
    return str(tmp_path / "queue.db") if kind == "embedded" else redis_url()


def _open(where: str) -> Queue:
    """A new connection to the same queue, as another gateway or controller process would have."""
    return RedisQueue(where) if where.startswith("redis://") else SQLiteQueue(Path(where))


def _service(queue: Queue, deps: list[FunctionDeployment]) -> QueueService:
    return QueueService(queue, lambda: deps, _never, WorkerSettings(1, RetryPolicy(3, 0.01, 0.05), 5.0))


def _ticks(queue_entries: list[bytes]) -> list[str]:
    return [dict(Invocation.decode(m).headers)["x-stoker-tick"] for m in queue_entries]


@pytest.mark.parametrize("kind", ["embedded", "redis"])
async def test_services_racing_for_the_same_tick_enqueue_it_once(where: str, name: str) -> None:
    service, namespace = name.split(".")
    dep = FunctionDeployment(service, namespace, annotations={"topic": "cron-function", "schedule": "*/5 * * * *"})
    services = [_service(_open(where), [dep]) for _ in range(4)]
    try:
        start = 1_700_000_000.0  # a multiple of 300 plus 200: the next */5 tick is 100 s later
        for s in services:
            assert await s.fire_cron(start, [dep]) == []  # the first look only starts the clock
        due = start + 100
        added = await asyncio.gather(*(s.fire_cron(due, [dep]) for s in services))
        assert sorted(len(a) for a in added) == [0, 0, 0, 1]
        entries = await services[0].queue.entries(async_stream(name), 100)
        assert _ticks([m.fields[b"m"] for m in entries]) == [str(int(due))]
        # Later looks at the same tick (a slower process, a restart) enqueue nothing more.
        late = _service(_open(where), [dep])
        await late.fire_cron(due - 1, [dep])
        assert await late.fire_cron(due + 1, [dep]) == []
        await late.queue.close()
        assert len(await services[0].queue.entries(async_stream(name), 100)) == 1
    finally:
        for s in services:
            await s.queue.close()


@pytest.mark.parametrize("kind", ["embedded", "redis"])
async def test_many_ticks_from_many_services_each_enqueued_once(where: str, name: str) -> None:
    service, namespace = name.split(".")
    dep = FunctionDeployment(service, namespace, annotations={"com.stoker.schedule": "* * * * * *"})  # every second
    services = [_service(_open(where), [dep]) for _ in range(3)]
    try:
        now = 1_700_000_000.0
        for s in services:
            await s.fire_cron(now, [dep])
        for _ in range(20):
            now += 1
            await asyncio.gather(*(s.fire_cron(now, [dep]) for s in services))
        entries = await services[0].queue.entries(async_stream(name), 100)
        assert _ticks([m.fields[b"m"] for m in entries]) == [str(int(1_700_000_001 + i)) for i in range(20)]
    finally:
        for s in services:
            await s.queue.close()


@pytest.mark.parametrize("kind", ["embedded", "redis"])
async def test_a_schedule_that_never_fires_does_not_stop_the_others(where: str, name: str) -> None:
    # February 31st parses but names no date: deploys refuse it now, but one deployed before (restored from a
    # backend's state) must not keep the functions after it in the list from firing.
    service, namespace = name.split(".")
    broken = FunctionDeployment(f"{service}-feb", namespace, annotations={"com.stoker.schedule": "0 0 31 2 *"})
    good = FunctionDeployment(service, namespace, annotations={"com.stoker.schedule": "* * * * * *"})
    s = _service(_open(where), [broken, good])
    try:
        now = 1_700_000_000.0
        await s.fire_cron(now, [broken, good])
        for _ in range(3):
            now += 1
            await s.fire_cron(now, [broken, good])
        entries = await s.queue.entries(async_stream(name), 100)
        assert _ticks([m.fields[b"m"] for m in entries]) == [str(int(1_700_000_001 + i)) for i in range(3)]
    finally:
        await s.queue.close()
