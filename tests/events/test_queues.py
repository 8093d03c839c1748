"""Both queue backends against the same consumer-group semantics (real Redis, real SQLite)."""

from __future__ import annotations

import asyncio
import time

from events.queue import CALLBACK_STREAM, Completion, Message, Queue, async_stream, dead_stream, group_of
from events.redis_queue import RedisQueue
from tests.events.conftest import redis_url


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
    read_at = time.monotonic()
    # Renewed every 0.3 s against an idle limit of 1 s (room for a loaded machine), for longer than the limit.
    while time.monotonic() - read_at < 1.5:
        await asyncio.sleep(0.3)  # time passing is the behaviour under test
        await queue.renew(stream, group, "worker", [msg_id])
        assert await queue.reclaim(stream, group, "other", 1.0, 10) == []
    assert await _wait_reclaim(queue, stream, group, "other", 1.0) == [msg_id]  # not renewed any more: taken


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
    deadline = time.monotonic() + 10
    while await queue.get_call(name) is not None:  # expires (Redis counts in whole milliseconds or seconds)
        assert time.monotonic() < deadline, "the call record did not expire"
        await asyncio.sleep(0.02)
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


async def test_finish_stores_the_result_and_the_callback_with_the_ack_and_only_once(queue: Queue, name: str) -> None:
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    outbox_group = f"test-{name}"  # a reader of the outbox from now on (other tests' callbacks may pass by too)
    await queue.ensure_group(CALLBACK_STREAM, outbox_group, from_start=False)
    await queue.enqueue_call(stream, b"m", name, 60)
    (msg,) = await queue.read([stream], group, "first", 10, 0.1)
    await queue.set_call(name, "running", None, 60)
    # A reclaim hands the message to a second consumer while the first one still runs it.
    (again,) = [m for m in await _reclaimed(queue, stream, group, "second")]
    done = Completion(name, b"first result", 60, f"first callback {name}".encode())
    assert await queue.finish(msg, group, True, done) is True
    record = await queue.get_call(name)
    assert record is not None and (record.status, record.result) == ("done", b"first result")
    info = await queue.info(stream, group)
    assert (info.length, info.pending) == (0, 0)
    # The late duplicate marks the call running (ignored: it is done) and finishes: it stores nothing.
    await queue.set_call(name, "running", None, 60)
    assert (
        await queue.finish(again, group, True, Completion(name, b"second", 60, f"second callback {name}".encode()))
        is False
    )
    record = await queue.get_call(name)
    assert record is not None and (record.status, record.result) == ("done", b"first result")
    outbox = await queue.read([CALLBACK_STREAM], outbox_group, "c", 1000, 0.1)
    assert [m.fields[b"m"] for m in outbox if name.encode() in m.fields[b"m"]] == [f"first callback {name}".encode()]
    await queue.ack(CALLBACK_STREAM, outbox_group, [m.id for m in outbox if name.encode() in m.fields[b"m"]], True)


async def test_finish_can_bury_and_store_a_failed_result_together(queue: Queue, name: str) -> None:
    stream, group, dead = async_stream(name), group_of(name), dead_stream(name)
    await queue.ensure_group(stream, group, from_start=True)
    await queue.enqueue_call(stream, b"m", name, 60)
    (msg,) = await queue.read([stream], group, "c", 10, 0.1)
    done = Completion(name, b"500 result", 60, dead_stream=dead, dead={"m": b"m", "error": "500: boom"})
    assert await queue.finish(msg, group, True, done) is True
    (letter,) = await queue.entries(dead, 10)
    assert letter.fields[b"error"] == b"500: boom"
    record = await queue.get_call(name)
    assert record is not None and (record.status, record.result) == ("done", b"500 result")
    assert (await queue.info(stream, group)).pending == 0


async def test_a_callback_failure_is_noted_on_a_known_call_only(queue: Queue, name: str) -> None:
    await queue.set_call(name, "done", b"r", 60)
    await queue.note_callback(name, "callback http://x failed")
    record = await queue.get_call(name)
    assert record is not None and record.callback_error == "callback http://x failed"
    await queue.note_callback(name + "-gone", "callback failed")
    assert await queue.get_call(name + "-gone") is None  # no record appears (on Redis: none without a TTL)


async def _reclaimed(queue: Queue, stream: str, group: str, consumer: str) -> list[Message]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = await queue.reclaim(stream, group, consumer, 0.05, 10)
        if got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError("nothing reclaimed")


async def test_concurrent_finishes_each_settle_their_own_message_once(queue: Queue, name: str) -> None:
    """Workers settle messages together (in batches): each finish still answers for its own message, and a duplicate
    delivery finishing at the same time stores nothing."""
    stream, group = async_stream(name), group_of(name)
    await queue.ensure_group(stream, group, from_start=True)
    calls = [f"{name}-{i}" for i in range(60)]
    for call in calls:
        await queue.enqueue_call(stream, call.encode(), call, 60)
    msgs = await queue.read([stream], group, "first", 100, 0.1)
    assert len(msgs) == len(calls)
    twice = msgs[:10]  # finished by two deliveries at once
    dones = [queue.finish(m, group, True, Completion(m.fields[b"m"].decode(), m.fields[b"m"], 60)) for m in msgs]
    dupes = [queue.finish(m, group, True, Completion(m.fields[b"m"].decode(), b"duplicate", 60)) for m in twice]
    results = await asyncio.gather(*dones, *dupes)
    for i in range(len(twice)):  # one of the two finishes of each won, the other stored nothing
        assert sorted([results[i], results[len(msgs) + i]]) == [False, True]
    assert all(results[len(twice) : len(msgs)])
    for call in calls[len(twice) :]:
        record = await queue.get_call(call)
        assert record is not None and (record.status, record.result) == ("done", call.encode())
    for call in calls[: len(twice)]:
        record = await queue.get_call(call)
        assert record is not None and record.status == "done" and record.result in (call.encode(), b"duplicate")
    info = await queue.info(stream, group)
    assert (info.length, info.pending) == (0, 0)


async def test_finish_on_a_redis_that_forgot_its_scripts(name: str) -> None:
    """Redis restarted (or SCRIPT FLUSH): the batched scripts are loaded again and the messages settled."""
    queue = RedisQueue(redis_url())
    try:
        stream, group = async_stream(name), group_of(name)
        await queue.ensure_group(stream, group, from_start=True)
        await queue.enqueue_call(stream, b"m", name, 60)
        (msg,) = await queue.read([stream], group, "c", 10, 0.1)
        await queue.redis.script_flush()
        await queue.set_call(name, "running", None, 60)
        await queue.redis.script_flush()
        assert await queue.finish(msg, group, True, Completion(name, b"result", 60)) is True
        record = await queue.get_call(name)
        assert record is not None and (record.status, record.result) == ("done", b"result")
    finally:
        await queue.close()
