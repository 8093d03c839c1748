"""Both queue backends against the same consumer-group semantics (real Redis, real SQLite)."""

from __future__ import annotations

import asyncio
import time

from events.queue import Queue, async_stream, group_of


async def _wait_reclaim(q: Queue, stream: str, group: str, consumer: str, idle: float) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = await q.reclaim(stream, group, consumer, idle, 10)
        if got:
            return [m.id for m in got]
        await asyncio.sleep(0.02)
    return []


async def test_read_ack_and_lag(queue: Queue, name: str) -> None:
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    ids = [await queue.add(stream, {"m": f"{i}"}) for i in range(3)]
    assert (await queue.info(stream, group)).lag == 3
    got = await queue.read([stream], group, "c1", 2, 0.1)
    assert [m.id for m in got] == ids[:2] and got[0].fields[b"m"] == b"0" and got[0].deliveries == 1
    info = await queue.info(stream, group)
    assert (info.lag, info.pending) == (1, 2)
    await queue.ack(stream, group, ids[:2], delete=True)
    info = await queue.info(stream, group)
    assert (info.length, info.lag, info.pending) == (1, 1, 0)
    assert await queue.read([stream], group, "c2", 10, 0.1) != []
    assert await queue.read([stream], group, "c2", 10, 0.05) == []  # each message goes to one consumer once


async def test_a_dead_consumers_messages_are_reclaimed_with_their_delivery_count(queue: Queue, name: str) -> None:
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    msg_id = await queue.add(stream, {"m": "x"})
    await queue.read([stream], group, "dead", 10, 0.1)
    assert await queue.reclaim(stream, group, "alive", 5.0, 10) == []  # not idle long enough yet
    assert await _wait_reclaim(queue, stream, group, "alive", 0.2) == [msg_id]
    again = await queue.redeliver(stream, group, "alive", msg_id)
    assert again is not None and again.deliveries == 3  # read, reclaim, redeliver


async def test_renewed_messages_are_not_reclaimed(queue: Queue, name: str) -> None:
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    msg_id = await queue.add(stream, {"m": "x"})
    await queue.read([stream], group, "worker", 10, 0.1)
    for _ in range(5):
        await asyncio.sleep(0.1)
        await queue.renew(stream, group, "worker", [msg_id])
        assert await queue.reclaim(stream, group, "other", 0.3, 10) == []


async def test_bury_moves_to_dead_letters_and_acks_together(queue: Queue, name: str) -> None:
    stream, group, dead = async_stream(name), group_of(name), f"stoker:dead:{name}"
    await queue.ensure_group(stream, group, from_start=True)
    await queue.add(stream, {"m": "x"})
    (msg,) = await queue.read([stream], group, "c", 10, 0.1)
    await queue.bury(msg, group, dead, {"m": b"x", "error": "boom", "attempts": "3"}, delete=True)
    assert (await queue.info(stream, group)).pending == 0
    (entry,) = await queue.entries(dead, 10)
    assert entry.fields[b"error"] == b"boom" and entry.fields[b"attempts"] == b"3"


async def test_a_group_created_for_new_messages_skips_history(queue: Queue, name: str) -> None:
    stream = f"user-{name}"
    await queue.add(stream, {"old": "1"})
    await queue.ensure_group(stream, "g", from_start=False)
    await queue.add(stream, {"new": "1"})
    got = await queue.read([stream], "g", "c", 10, 0.1)
    assert [m.fields for m in got] == [{b"new": b"1"}]


async def test_call_records_once_keys_and_triggers(queue: Queue, name: str) -> None:
    assert await queue.get_call(name) is None
    await queue.enqueue_call(async_stream(name), b"inv", name, 60)
    record = await queue.get_call(name)
    assert record is not None and record.status == "queued" and record.result is None
    await queue.set_call(name, "done", b"result", 60)
    record = await queue.get_call(name)
    assert record is not None and (record.status, record.result) == ("done", b"result")
    await queue.set_call(name, "done", b"result", 0.01)
    await asyncio.sleep(1.1)
    assert await queue.get_call(name) is None  # expired
    first = await queue.add_once(f"tick:{name}", 60, async_stream(name), {"m": b"tick"})
    assert first is not None
    assert await queue.add_once(f"tick:{name}", 60, async_stream(name), {"m": b"tick"}) is None
    assert [m.fields for m in await queue.entries(async_stream(name), 10) if m.id == first] == [{b"m": b"tick"}]
    assert len(await queue.entries(async_stream(name), 10)) == 2  # the call enqueued above and one tick
    assert await queue.set_trigger(name, "orders", True) is True
    assert await queue.set_trigger(name, "orders", True) is False
    assert (name, "orders") in await queue.triggers()
    assert await queue.set_trigger(name, "orders", False) is True
    assert (name, "orders") not in await queue.triggers()
