"""The queue on Redis Streams: XADD, consumer groups (XREADGROUP), XAUTOCLAIM for dead consumers, XCLAIM to renew
and redeliver, MULTI for the steps that must happen together."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc

from events.batch import Batcher
from events.queue import CALLBACK_STREAM, CallRecord, Completion, Message, QueueUnavailable, StreamInfo

_CALL = "stoker:call:"
_ONCE = "stoker:once:"
_TRIGGERS = "stoker:triggers"
_GIVEN_BACK_IDLE_MS = 365 * 24 * 3600 * 1000  # a given-back message's idle time: past any claim idle time

# SET NX and XADD in one script: Redis runs it atomically (and persists it as one unit in the AOF), so a claimed
# key always has its message. MULTI cannot do this: a transaction cannot make XADD depend on SET's answer.
_ADD_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
"""

# Append an async call and record it as queued, unless a record of that call id exists (a caller's chosen id).
# KEYS: stream, call record. ARGV: encoded invocation, record ttl ms.
_ENQUEUE_NEW = """
if redis.call('EXISTS', KEYS[2]) == 1 then
    return false
end
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
redis.call('HSET', KEYS[2], 'status', 'queued')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return id
"""

# Settle a message in one step (Redis runs a script atomically, and persists its effects as one MULTI in the AOF):
# ack it, and only if this ack was the one that took it off the pending list, store the call's result, the callback's
# outbox entry and the dead letter. A second delivery that finishes later (the message was reclaimed while its first
# run went on) finds it acknowledged and stores nothing, so a call has one result and one callback.
# KEYS: stream, call record, outbox stream, dead stream. ARGV: group, id, delete (0/1), result ('' for none),
# result ttl ms, callback ('' for none), then the dead letter's fields (none: no dead letter).
_FINISH = """
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
    redis.call('XDEL', KEYS[1], ARGV[2])
end
if acked == 0 then
    return 0
end
if #ARGV > 6 then
    redis.call('XADD', KEYS[4], '*', unpack(ARGV, 7))
end
if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[2], 'status', 'done', 'result', ARGV[4])
    redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
if ARGV[6] ~= '' then
    redis.call('XADD', KEYS[3], '*', 'm', ARGV[6])
end
return 1
"""

# Give back messages a consumer read and never started: each one still pending on that consumer (not reclaimed by
# another meanwhile) gets an idle time past any claim idle time, so the next XAUTOCLAIM takes it, and its delivery
# count set back (the claim adds the one taken back). KEYS: stream. ARGV: group, consumer, idle ms, then id, count
# pairs.
_RELEASE = """
for i = 4, #ARGV, 2 do
    if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) == 1 then
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i],
                   'IDLE', ARGV[3], 'RETRYCOUNT', ARGV[i + 1], 'JUSTID')
    end
end
return 0
"""

# A call's progress (running, retrying), unless it is done already: a late duplicate must not hide the result.
_PROGRESS = """
if redis.call('HGET', KEYS[1], 'status') == 'done' then
    return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Note a callback's failure on its call, only while the call is known (HSET alone would create a key without TTL).
_NOTE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'callback', ARGV[1])
end
return 0
"""


_ScriptCall = tuple[Any, list[str], list[Any]]  # a registered script, its keys, its arguments


@contextlib.asynccontextmanager
async def _guard(what: str) -> AsyncIterator[None]:
    try:
        yield
    except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
        raise QueueUnavailable(f"Redis is unavailable ({what}): {exc}") from None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisQueue:
    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        # Short connect timeout: with Redis down, the async route must answer 503 at once, not hang.
        # Any: redis-py's annotations of stream replies are unions of every RESP shape; the replies are read below.
        self.redis: Any = aioredis.Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=10, health_check_interval=5
        )
        self._add_once = self.redis.register_script(_ADD_ONCE)
        self._enqueue_new = self.redis.register_script(_ENQUEUE_NEW)
        self._finish = self.redis.register_script(_FINISH)
        self._progress = self.redis.register_script(_PROGRESS)
        self._note = self.redis.register_script(_NOTE)
        self._release = self.redis.register_script(_RELEASE)
        # Settling messages and noting calls' progress: the steps of concurrent workers go to Redis together, each
        # script still atomic on its own (events/batch.py).
        self._scripts: Batcher[_ScriptCall, Any] = Batcher(self._run_scripts)

    async def ping(self) -> None:
        async with _guard("ping"):
            await self.redis.ping()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def add(self, stream: str, fields: dict[str, bytes | str]) -> str:
        async with _guard("add"):
            return _text(await self.redis.xadd(stream, fields))

    async def enqueue_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str:
        async with _guard("enqueue"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(stream, {"m": data})
            pipe.hset(_CALL + call_id, mapping={"status": "queued"})
            pipe.expire(_CALL + call_id, _ms(ttl_s) // 1000 or 1)
            msg_id, *_ = await pipe.execute()
            return _text(msg_id)

    async def enqueue_new_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str | None:
        async with _guard("enqueue"):
            msg_id = await self._enqueue_new(keys=[stream, _CALL + call_id], args=[data, _ms(ttl_s) or 1])
        return None if msg_id is None else _text(msg_id)

    async def ensure_group(self, stream: str, group: str, from_start: bool) -> None:
        async with _guard("group"):
            try:
                await self.redis.xgroup_create(stream, group, id="0" if from_start else "$", mkstream=True)
            except rexc.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(self, streams: list[str], group: str, consumer: str, count: int, block_s: float) -> list[Message]:
        async with _guard("read"):
            try:
                reply = await self.redis.xreadgroup(
                    group, consumer, dict.fromkeys(streams, ">"), count=count, block=_ms(block_s)
                )
            except rexc.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted under us: recreate on the next round
                    for stream in streams:
                        await self.ensure_group(stream, group, from_start=True)
                    return []
                raise
        return [
            Message(_text(stream), _text(msg_id), fields or {})
            for stream, entries in reply or []
            for msg_id, fields in entries
        ]

    async def reclaim(self, stream: str, group: str, consumer: str, min_idle_s: float, count: int) -> list[Message]:
        async with _guard("reclaim"):
            reply = await self.redis.xautoclaim(stream, group, consumer, _ms(min_idle_s), "0-0", count=count)
            claimed = [(_text(i), f) for i, f in reply[1] if f is not None]
            deleted = [_text(i) for i in reply[2]] if len(reply) > 2 else []
            if deleted:  # entries removed while pending: nothing left to run
                await self.redis.xack(stream, group, *deleted)
            out = []
            for msg_id, fields in claimed:
                pending = await self.redis.xpending_range(stream, group, msg_id, msg_id, 1)
                deliveries = int(pending[0]["times_delivered"]) if pending else 1
                out.append(Message(stream, msg_id, fields, deliveries))
            return out

    async def renew(self, stream: str, group: str, consumer: str, ids: list[str]) -> None:
        if ids:
            async with _guard("renew"):
                await self.redis.xclaim(stream, group, consumer, 0, ids, justid=True)

    async def release(self, stream: str, group: str, consumer: str, msgs: list[Message]) -> None:
        if not msgs:
            return
        args: list[str | int] = [group, consumer, _GIVEN_BACK_IDLE_MS]
        for msg in msgs:
            args += [msg.id, max(0, msg.deliveries - 1)]
        async with _guard("release"):
            await self._release(keys=[stream], args=args)

    async def redeliver(self, stream: str, group: str, consumer: str, msg_id: str) -> Message | None:
        async with _guard("redeliver"):
            reply = await self.redis.xclaim(stream, group, consumer, 0, [msg_id])
            if not reply or reply[0][1] is None:
                await self.redis.xack(stream, group, msg_id)
                return None
            pending = await self.redis.xpending_range(stream, group, msg_id, msg_id, 1)
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            return Message(stream, msg_id, reply[0][1], deliveries)

    async def ack(self, stream: str, group: str, ids: list[str], delete: bool) -> None:
        if not ids:
            return
        async with _guard("ack"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xack(stream, group, *ids)
            if delete:
                pipe.xdel(stream, *ids)
            await pipe.execute()

    async def bury(self, msg: Message, group: str, dead: str, fields: dict[str, bytes | str], delete: bool) -> None:
        async with _guard("bury"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.xadd(dead, fields)
            pipe.xack(msg.stream, group, msg.id)
            if delete:
                pipe.xdel(msg.stream, msg.id)
            await pipe.execute()

    async def finish(self, msg: Message, group: str, delete: bool, done: Completion) -> bool:
        keys = [msg.stream, _CALL + done.call_id, CALLBACK_STREAM, done.dead_stream or msg.stream]
        args: list[bytes | str | int] = [group, msg.id, int(delete), done.result if done.call_id else b""]
        args += [_ms(done.ttl_s), done.callback]
        if done.dead_stream:
            for name, value in done.dead.items():
                args += [name, value]
        return bool(await self._scripts.submit((self._finish, keys, args)))

    async def _run_scripts(self, calls: list[_ScriptCall]) -> list[Any]:
        """One round trip for many script calls (no MULTI: each script is atomic by itself, and one failing must
        not undo the others); a script Redis has not cached (it restarted) is loaded and its calls sent again."""
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        async with _guard("settling messages"):
            for _ in range(2):
                pipe = self.redis.pipeline(transaction=False)
                for i in todo:
                    script, keys, args = calls[i]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
                missing = []
                for i, reply in zip(todo, replies, strict=True):
                    if isinstance(reply, rexc.NoScriptError):
                        missing.append(i)
                    results[i] = reply
                if not missing:
                    break
                for script in {calls[i][0] for i in missing}:
                    await self.redis.script_load(script.script)
                todo = missing
        return results

    async def entries(self, stream: str, count: int) -> list[Message]:
        async with _guard("range"):
            return [Message(stream, _text(i), f) for i, f in await self.redis.xrange(stream, count=count)]

    async def delete(self, stream: str, ids: list[str]) -> None:
        if ids:
            async with _guard("delete"):
                await self.redis.xdel(stream, *ids)

    async def info(self, stream: str, group: str) -> StreamInfo:
        async with _guard("info"):
            length = int(await self.redis.xlen(stream))
            try:
                groups = await self.redis.xinfo_groups(stream)
            except rexc.ResponseError:  # no such stream
                return StreamInfo(stream, 0, 0, 0)
            for g in groups:
                if _text(g["name"]) == group:
                    lag = g.get("lag")
                    if lag is None:  # Redis cannot tell after deletions: count what is after the last delivery
                        after = "(" + _text(g["last-delivered-id"])
                        lag = len(await self.redis.xrange(stream, min=after, count=100_000))
                    return StreamInfo(stream, length, int(lag), int(g["pending"]))
            return StreamInfo(stream, length, length, 0)

    async def set_call(self, call_id: str, status: str, result: bytes | None, ttl_s: float) -> None:
        if result is None:
            await self._scripts.submit((self._progress, [_CALL + call_id], [status, _ms(ttl_s)]))
            return
        async with _guard("call"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(_CALL + call_id, mapping={"status": status, **({"result": result} if result else {})})
            pipe.expire(_CALL + call_id, max(1, int(ttl_s)))
            await pipe.execute()

    async def get_call(self, call_id: str) -> CallRecord | None:
        async with _guard("call"):
            data = await self.redis.hgetall(_CALL + call_id)
        if not data:
            return None
        return CallRecord(_text(data.get(b"status", b"queued")), data.get(b"result"), _text(data.get(b"callback", b"")))

    async def note_callback(self, call_id: str, problem: str) -> None:
        async with _guard("call"):
            await self._note(keys=[_CALL + call_id], args=[problem])

    async def add_once(self, key: str, ttl_s: float, stream: str, fields: dict[str, bytes | str]) -> str | None:
        args: list[bytes | str | int] = [_ms(ttl_s)]
        for name, value in fields.items():
            args += [name, value]
        async with _guard("once"):
            msg_id = await self._add_once(keys=[_ONCE + key, stream], args=args)
        return None if msg_id is None else _text(msg_id)

    async def triggers(self) -> list[tuple[str, str]]:
        async with _guard("triggers"):
            members = await self.redis.smembers(_TRIGGERS)
        pairs = [_text(m).split(" ", 1) for m in members]
        return sorted((p[0], p[1]) for p in pairs if len(p) == 2)

    async def set_trigger(self, function: str, stream: str, present: bool) -> bool:
        async with _guard("triggers"):
            member = f"{function} {stream}"
            changed = await (self.redis.sadd if present else self.redis.srem)(_TRIGGERS, member)
            return bool(changed)
