"""The embedded queue: Redis Streams' consumer-group semantics on one SQLite file in ``$STOKER_HOME``.

Used when no Redis URL is configured, so ``stoker up`` alone offers async calls and triggers, and nothing accepted is
lost when the process restarts: every step commits before it returns (WAL journal; ``synchronous=NORMAL`` survives a
killed process, which is the promise here, not a power cut). Calls run on the event loop: each is a few tens of
microseconds, cheaper than handing it to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from events.batch import Batcher
from events.queue import CALLBACK_STREAM, CallRecord, Completion, Message, QueueUnavailable, StreamInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, fields BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS entries_stream ON entries (stream, seq);
CREATE TABLE IF NOT EXISTS groups (stream TEXT, grp TEXT, last_seq INTEGER NOT NULL, PRIMARY KEY (stream, grp));
CREATE TABLE IF NOT EXISTS pending (
    stream TEXT, grp TEXT, seq INTEGER, consumer TEXT NOT NULL, delivered_at REAL NOT NULL, deliveries INTEGER NOT NULL,
    PRIMARY KEY (stream, grp, seq));
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, status TEXT NOT NULL, result BLOB, expires REAL NOT NULL, callback TEXT);
CREATE TABLE IF NOT EXISTS once_keys (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS triggers (function TEXT, stream TEXT, PRIMARY KEY (function, stream));
"""

_Finish = tuple[Message, str, bool, Completion]  # what finish() settles: message, group, delete, completion


def _seq(msg_id: str) -> int:
    return int(msg_id.split("-", 1)[0])


def _id(seq: int) -> str:
    return f"{seq}-0"


def _pack(fields: dict[str, bytes | str]) -> bytes:
    return bytes(msgpack.packb({k: v.encode() if isinstance(v, str) else v for k, v in fields.items()}))


def _unpack(data: bytes) -> dict[bytes, bytes]:
    return {k.encode(): v for k, v in msgpack.unpackb(data).items()}


class SQLiteQueue:
    kind = "embedded"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Private from the start (queued bodies carry callers' Authorization headers); SQLite gives its -wal and
        # -shm files the database's mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(calls)")}
        if "callback" not in columns:  # a queue.db from before callbacks failures were noted
            self.db.execute("ALTER TABLE calls ADD COLUMN callback TEXT")
        self._added = asyncio.Event()
        self._finishes: Batcher[_Finish, bool] = Batcher(self._finish_many)  # group commit (events/batch.py)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.db.close()

    def _add(self, stream: str, fields: dict[str, bytes | str]) -> str:
        cur = self.db.execute("INSERT INTO entries (stream, fields) VALUES (?, ?)", (stream, _pack(fields)))
        self._added.set()
        return _id(int(cur.lastrowid or 0))

    async def add(self, stream: str, fields: dict[str, bytes | str]) -> str:
        return self._add(stream, fields)

    async def enqueue_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str:
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                msg_id = self._add(stream, {"m": data})
                self.db.execute(
                    "INSERT OR REPLACE INTO calls VALUES (?, 'queued', NULL, ?, NULL)", (call_id, time.time() + ttl_s)
                )
        except sqlite3.OperationalError as exc:  # "database or disk is full", I/O errors: rolled back, not stored
            raise QueueUnavailable(f"{self.path}: {exc}") from None
        return msg_id

    async def enqueue_new_call(self, stream: str, data: bytes, call_id: str, ttl_s: float) -> str | None:
        now = time.time()
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("DELETE FROM calls WHERE call_id = ? AND expires <= ?", (call_id, now))
                taken = self.db.execute(  # not INSERT OR REPLACE: a record of that id stays as it is
                    "INSERT OR IGNORE INTO calls VALUES (?, 'queued', NULL, ?, NULL)", (call_id, now + ttl_s)
                )
                if taken.rowcount == 0:
                    return None
                msg_id = self._add(stream, {"m": data})
        except sqlite3.OperationalError as exc:  # "database or disk is full", I/O errors: rolled back, not stored
            raise QueueUnavailable(f"{self.path}: {exc}") from None
        return msg_id

    async def ensure_group(self, stream: str, group: str, from_start: bool) -> None:
        start = 0
        if not from_start:
            row = self.db.execute("SELECT MAX(seq) FROM entries WHERE stream = ?", (stream,)).fetchone()
            start = row[0] or 0
        self.db.execute("INSERT OR IGNORE INTO groups VALUES (?, ?, ?)", (stream, group, start))

    async def read(self, streams: list[str], group: str, consumer: str, count: int, block_s: float) -> list[Message]:
        deadline = time.monotonic() + block_s
        while True:
            self._added.clear()
            out = self._read_now(streams, group, consumer, count)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._added.wait(), min(remaining, 0.5))

    def _read_now(self, streams: list[str], group: str, consumer: str, count: int) -> list[Message]:
        out: list[Message] = []
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for stream in streams:
                row = self.db.execute("SELECT last_seq FROM groups WHERE stream = ? AND grp = ?", (stream, group))
                last = row.fetchone()
                if last is None:
                    continue
                rows = self.db.execute(
                    "SELECT seq, fields FROM entries WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (stream, last[0], count - len(out)),
                ).fetchall()
                if not rows:
                    continue
                self.db.executemany(
                    "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, 1)",
                    [(stream, group, seq, consumer, now) for seq, _ in rows],
                )
                self.db.execute(
                    "UPDATE groups SET last_seq = ? WHERE stream = ? AND grp = ?", (rows[-1][0], stream, group)
                )
                out += [Message(stream, _id(seq), _unpack(fields)) for seq, fields in rows]
                if len(out) >= count:
                    break
        return out

    async def reclaim(self, stream: str, group: str, consumer: str, min_idle_s: float, count: int) -> list[Message]:
        now = time.time()
        out: list[Message] = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT p.seq, p.deliveries, e.fields FROM pending p LEFT JOIN entries e ON e.seq = p.seq "
                "WHERE p.stream = ? AND p.grp = ? AND p.delivered_at <= ? ORDER BY p.seq LIMIT ?",
                (stream, group, now - min_idle_s, count),
            ).fetchall()
            for seq, deliveries, fields in rows:
                if fields is None:  # deleted while pending
                    self.db.execute(
                        "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?", (stream, group, seq)
                    )
                    continue
                self.db.execute(
                    "UPDATE pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 "
                    "WHERE stream = ? AND grp = ? AND seq = ?",
                    (consumer, now, stream, group, seq),
                )
                out.append(Message(stream, _id(seq), _unpack(fields), deliveries + 1))
        return out

    async def renew(self, stream: str, group: str, consumer: str, ids: list[str]) -> None:
        now = time.time()
        self.db.executemany(
            "UPDATE pending SET consumer = ?, delivered_at = ? WHERE stream = ? AND grp = ? AND seq = ?",
            [(consumer, now, stream, group, _seq(i)) for i in ids],
        )

    async def release(self, stream: str, group: str, consumer: str, msgs: list[Message]) -> None:
        # delivered_at 0: idle since the epoch, reclaimed by the next reclaim; the reclaim adds the delivery back
        with self.db:
            self.db.executemany(
                "UPDATE pending SET delivered_at = 0, deliveries = ? "
                "WHERE stream = ? AND grp = ? AND seq = ? AND consumer = ?",
                [(max(0, m.deliveries - 1), stream, group, _seq(m.id), consumer) for m in msgs],
            )

    async def redeliver(self, stream: str, group: str, consumer: str, msg_id: str) -> Message | None:
        seq = _seq(msg_id)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT fields FROM entries WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                self.db.execute("DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?", (stream, group, seq))
                return None
            self.db.execute(
                "UPDATE pending SET consumer = ?, delivered_at = ?, deliveries = deliveries + 1 "
                "WHERE stream = ? AND grp = ? AND seq = ?",
                (consumer, time.time(), stream, group, seq),
            )
            got = self.db.execute(
                "SELECT deliveries FROM pending WHERE stream = ? AND grp = ? AND seq = ?", (stream, group, seq)
            ).fetchone()
        return Message(stream, msg_id, _unpack(row[0]), got[0] if got else 1)

    def _ack(self, stream: str, group: str, seqs: list[tuple[int]], delete: bool) -> int:
        """Acknowledge; return how many of ``seqs`` were pending."""
        cur = self.db.executemany(
            "DELETE FROM pending WHERE stream = ? AND grp = ? AND seq = ?", [(stream, group, s) for (s,) in seqs]
        )
        if delete:
            self.db.executemany("DELETE FROM entries WHERE seq = ?", seqs)
        return cur.rowcount

    async def ack(self, stream: str, group: str, ids: list[str], delete: bool) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self._ack(stream, group, [(_seq(i),) for i in ids], delete)

    async def bury(self, msg: Message, group: str, dead: str, fields: dict[str, bytes | str], delete: bool) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self._add(dead, fields)
            self._ack(msg.stream, group, [(_seq(msg.id),)], delete)

    async def finish(self, msg: Message, group: str, delete: bool, done: Completion) -> bool:
        return await self._finishes.submit((msg, group, delete, done))

    async def _finish_many(self, items: list[_Finish]) -> list[bool | BaseException]:
        """Settle the messages of every worker waiting in one transaction: one commit (a WAL write) where each was
        one. Each message is settled as on its own (acked, and only if that took it off the pending list, its
        result, callback and dead letter stored), and all or none of them are."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                return [self._finish_one(*item) for item in items]
        except sqlite3.OperationalError as exc:  # rolled back: every message stays pending
            raise QueueUnavailable(f"{self.path}: {exc}") from None

    def _finish_one(self, msg: Message, group: str, delete: bool, done: Completion) -> bool:
        if self._ack(msg.stream, group, [(_seq(msg.id),)], delete) == 0:
            return False  # another delivery finished it first: its result and callback stand
        if done.dead_stream:
            self._add(done.dead_stream, done.dead)
        if done.call_id:
            self.db.execute(
                "INSERT INTO calls VALUES (?, 'done', ?, ?, NULL) ON CONFLICT (call_id) DO UPDATE SET "
                "status = 'done', result = excluded.result, expires = excluded.expires",
                (done.call_id, done.result, time.time() + done.ttl_s),
            )
        if done.callback:
            self._add(CALLBACK_STREAM, {"m": done.callback})
        return True

    async def entries(self, stream: str, count: int) -> list[Message]:
        rows = self.db.execute(
            "SELECT seq, fields FROM entries WHERE stream = ? ORDER BY seq LIMIT ?", (stream, count)
        ).fetchall()
        return [Message(stream, _id(seq), _unpack(fields)) for seq, fields in rows]

    async def delete(self, stream: str, ids: list[str]) -> None:
        self.db.executemany("DELETE FROM entries WHERE stream = ? AND seq = ?", [(stream, _seq(i)) for i in ids])

    async def info(self, stream: str, group: str) -> StreamInfo:
        length = self.db.execute("SELECT COUNT(*) FROM entries WHERE stream = ?", (stream,)).fetchone()[0]
        row = self.db.execute("SELECT last_seq FROM groups WHERE stream = ? AND grp = ?", (stream, group)).fetchone()
        last = row[0] if row else 0
        lag = self.db.execute("SELECT COUNT(*) FROM entries WHERE stream = ? AND seq > ?", (stream, last)).fetchone()[0]
        pending = self.db.execute(
            "SELECT COUNT(*) FROM pending WHERE stream = ? AND grp = ?", (stream, group)
        ).fetchone()[0]
        return StreamInfo(stream, int(length), int(lag), int(pending))

    async def set_call(self, call_id: str, status: str, result: bytes | None, ttl_s: float) -> None:
        # Without a result (progress: running, retrying) a call already done stays done.
        self.db.execute(
            "INSERT INTO calls VALUES (?, ?, ?, ?, NULL) ON CONFLICT (call_id) DO UPDATE SET "
            "status = excluded.status, result = COALESCE(excluded.result, calls.result), expires = excluded.expires "
            "WHERE excluded.result IS NOT NULL OR calls.status != 'done'",
            (call_id, status, result, time.time() + ttl_s),
        )

    async def get_call(self, call_id: str) -> CallRecord | None:
        row = self.db.execute(
            "SELECT status, result, callback FROM calls WHERE call_id = ? AND expires > ?", (call_id, time.time())
        ).fetchone()
        return CallRecord(row[0], row[1], row[2] or "") if row else None

    async def note_callback(self, call_id: str, problem: str) -> None:
        self.db.execute("UPDATE calls SET callback = ? WHERE call_id = ?", (problem, call_id))

    async def add_once(self, key: str, ttl_s: float, stream: str, fields: dict[str, bytes | str]) -> str | None:
        now = time.time()
        with self.db:  # one transaction: the key and the entry commit together or not at all
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM once_keys WHERE expires <= ?", (now,))
            cur = self.db.execute("INSERT OR IGNORE INTO once_keys VALUES (?, ?)", (key, now + ttl_s))
            if cur.rowcount != 1:
                return None
            return self._add(stream, fields)

    async def expire(self, now: float) -> None:
        """Forget expired call records (Redis expires its keys itself)."""
        self.db.execute("DELETE FROM calls WHERE expires <= ?", (now,))

    async def triggers(self) -> list[tuple[str, str]]:
        return [(f, s) for f, s in self.db.execute("SELECT function, stream FROM triggers ORDER BY 1, 2")]

    async def set_trigger(self, function: str, stream: str, present: bool) -> bool:
        if present:
            cur = self.db.execute("INSERT OR IGNORE INTO triggers VALUES (?, ?)", (function, stream))
        else:
            cur = self.db.execute("DELETE FROM triggers WHERE function = ? AND stream = ?", (function, stream))
        return cur.rowcount == 1


def _unavailable_on_database_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with SQLite's operational errors (a full disk, an I/O error, a locked file) raised as
    QueueUnavailable: what every caller already handles (retried, or 503 with Retry-After). Every change is one
    statement or one transaction, rolled back on such an error, so nothing is half done."""

    @functools.wraps(method)
    async def wrapper(self: SQLiteQueue, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            raise QueueUnavailable(f"{self.path}: {exc}") from None

    return wrapper


for _name, _method in list(vars(SQLiteQueue).items()):
    if not _name.startswith("_") and inspect.iscoroutinefunction(_method):
        setattr(SQLiteQueue, _name, _unavailable_on_database_errors(_method))
