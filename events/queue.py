"""The one small interface every queue backend fills in (Redis Streams, embedded SQLite), and its plain types.

Semantics are Redis Streams' with consumer groups: a message read by a consumer stays *pending* (owned by it) until
acknowledged; a pending message whose owner went quiet for longer than an idle time can be reclaimed by another
consumer; a reclaim or a redelivery counts as a delivery, so ``deliveries`` is the attempt number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from stoker.errors import StokerError

ASYNC_PREFIX = "stoker:async:"
DEAD_PREFIX = "stoker:dead:"
GROUP_PREFIX = "stoker:"
RESERVED_PREFIX = "stoker:"  # stoker's own streams and keys: no user stream may be named so
# The callback outbox: one entry per finished async call with an X-Callback-Url, added in the same transaction as the
# call's result, read by every platform process through one group and deleted once delivered (events/outbox.py).
CALLBACK_STREAM = "stoker:callbacks"
CALLBACK_GROUP = "stoker:callbacks"
MAX_STREAM_NAME = 256

Fields = dict[str, bytes | str]


def async_stream(function: str) -> str:
    """The stream of a function's async calls, cron ticks and replayed dead letters (``function``: name.namespace)."""
    return ASYNC_PREFIX + function


def dead_stream(function: str) -> str:
    return DEAD_PREFIX + function


def group_of(function: str) -> str:
    """The consumer group of a function: one per function, on each stream it reads."""
    return GROUP_PREFIX + function


def stream_problem(stream: str) -> str | None:
    """Why ``stream`` cannot name a user's stream (a trigger's, an annotation's, a publish target), or None."""
    if not stream:
        return "give a stream name"
    if len(stream) > MAX_STREAM_NAME:
        return f"stream name is {len(stream)} characters long; the most is {MAX_STREAM_NAME}"
    if not all("!" <= c <= "~" for c in stream):  # what the OpenAPI document's pattern says, exactly
        return f"stream {stream!r}: only printable ASCII is allowed (no spaces or control characters)"
    if stream.startswith(RESERVED_PREFIX):
        return f"stream {stream!r}: names starting with {RESERVED_PREFIX!r} are stoker's own"
    return None


class QueueUnavailable(StokerError):
    """The queue cannot be reached (Redis down); nothing was stored. A 503 where it reaches a client."""

    status = 503


@dataclass
class Message:
    stream: str
    id: str
    fields: dict[bytes, bytes]
    deliveries: int = 1


@dataclass
class StreamInfo:
    stream: str
    length: int
    lag: int  # entries not yet delivered to the group
    pending: int  # delivered, not yet acknowledged


@dataclass
class CallRecord:
    status: str
    result: bytes | None  # an encoded :class:`events.messages.Result` once done
    callback_error: str = ""  # why its callback could not be delivered (after the outbox gave up on it)


@dataclass(frozen=True)
class Completion:
    """What finishing a message stores together with its acknowledgement, in one transaction (:meth:`Queue.finish`):
    a dead letter, the call's result, the callback's outbox entry. All of it is stored with the ack or none of it,
    so a crash (or Redis dying) in between can never leave an acknowledged call without its result."""

    call_id: str = ""  # the async call whose record becomes done with ``result``
    result: bytes = b""  # its encoded :class:`events.messages.Result`
    ttl_s: float = 3600.0  # how long the result stays
    callback: bytes = b""  # an encoded :class:`events.messages.Callback` to append to the outbox
    dead_stream: str = ""  # where ``dead`` goes
    dead: Fields = field(default_factory=dict)  # the fields of a dead letter to append


class Queue(Protocol):
    """A durable queue with consumer groups, call records and once-only messages."""

    kind: str

    async def ping(self) -> None:
        """Raise QueueUnavailable when the queue cannot be used."""

    async def close(self) -> None: ...

    async def add(self, stream: str, fields: dict[str, bytes | str]) -> str:
        """Append a message; return its id."""

    async def enqueue_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str:
        """Append an encoded invocation and record its call as queued, both or neither (a replayed dead letter: its
        call's record is replaced)."""

    async def enqueue_new_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str | None:
        """As :meth:`enqueue_call`, only if no call ``call_id`` is recorded (queued, running or with its result kept):
        checked and stored in one transaction. None, storing nothing, when one is: a caller's chosen id never
        overwrites or reveals another call's record."""

    async def ensure_group(self, stream: str, group: str, from_start: bool) -> None:
        """Create the group (and the stream) unless it exists; new groups read from the start or only new entries."""

    async def read(self, streams: list[str], group: str, consumer: str, count: int, block_s: float) -> list[Message]:
        """New messages for ``consumer``, waiting up to ``block_s`` for one."""

    async def reclaim(self, stream: str, group: str, consumer: str, min_idle_s: float, count: int) -> list[Message]:
        """Take over messages pending longer than ``min_idle_s`` (their consumer died)."""

    async def renew(self, stream: str, group: str, consumer: str, ids: list[str]) -> None:
        """Reset the idle time of messages this consumer still works on, so nobody reclaims them."""

    async def release(self, stream: str, group: str, consumer: str, msgs: list[Message]) -> None:
        """Give back messages this consumer read and never started: still pending, but reclaimable by any consumer at
        once (as if idle for ages), their delivery count taken back so that the next delivery is the same attempt."""

    async def redeliver(self, stream: str, group: str, consumer: str, msg_id: str) -> Message | None:
        """Count a new delivery of a pending message (a retry); None when it is gone."""

    async def ack(self, stream: str, group: str, ids: list[str], delete: bool) -> None:
        """Acknowledge; ``delete`` also removes the entries (stoker's own single-group streams)."""

    async def bury(self, msg: Message, group: str, dead: str, fields: dict[str, bytes | str], delete: bool) -> None:
        """Append a dead letter and acknowledge the message, both or neither."""

    async def finish(self, msg: Message, group: str, delete: bool, done: Completion) -> bool:
        """Acknowledge ``msg`` (``delete``: and remove it) and store what ``done`` carries, all in one transaction.
        False, storing nothing, when the message was no longer pending (another delivery of it finished first: its
        result and callback stand)."""

    async def entries(self, stream: str, count: int) -> list[Message]:
        """The oldest ``count`` entries of a stream."""

    async def delete(self, stream: str, ids: list[str]) -> None: ...

    async def info(self, stream: str, group: str) -> StreamInfo: ...

    async def set_call(self, call_id: str, status: str, result: bytes | None, ttl_s: float) -> None:
        """Record a call's status (and result). Without a result, a call already done stays done: a late duplicate
        delivery marking it running must not hide the result."""

    async def note_callback(self, call_id: str, problem: str) -> None:
        """Record on the call (if it is still known) why its callback could not be delivered."""

    async def get_call(self, call_id: str) -> CallRecord | None: ...

    async def add_once(self, key: str, ttl_s: float, stream: str, fields: dict[str, bytes | str]) -> str | None:
        """Claim ``key`` (across processes, until it expires) and append the message, both or neither: the first
        caller gets the message id, later callers None. A process dying mid-call leaves neither, never a claim
        without its message."""

    async def triggers(self) -> list[tuple[str, str]]:
        """(function, stream) pairs added with ``stoker trigger create``."""

    async def set_trigger(self, function: str, stream: str, present: bool) -> bool:
        """Add or remove a trigger; True when it changed."""
