"""Wire types of the queue, encoded with msgpack: one :class:`Invocation` per message, one :class:`Result` per call.

Messages on stoker's own streams (``async``, ``dead``) hold one field, ``m``, with a msgpack-encoded invocation. A
message on a user's stream (a queue trigger) is turned into an invocation by :func:`from_stream_entry`.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgpack


class CallStatus(StrEnum):
    """Where an async call is; ``done`` also covers a call that failed after its last attempt."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    DONE = "done"


def new_call_id() -> str:
    """An unguessable call id (128 random bits): knowing one must not reveal another's result."""
    return secrets.token_hex(16)


# A caller's own X-Call-Id kept for an async call (as OpenFaaS does): it names a Redis key and a database row, so a
# strict set (a UUID, a hex digest, a dotted or dashed name) and a bounded length; anything else gets a new id.
_CALLER_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def caller_call_id(value: str) -> str:
    """``value`` when it is a safe call id to keep, else ``""``."""
    return value if _CALLER_CALL_ID.fullmatch(value) else ""


@dataclass
class Invocation:
    """One function call as stored in a queue: the HTTP request to replay and where its answer goes."""

    function: str  # name.namespace
    method: str = "POST"
    path: str = "/"
    query: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    call_id: str = ""  # empty for trigger messages that are not async calls (no stored result)
    callback_url: str = ""
    origin: str = ""  # "stream:id" of a trigger message, "cron:tick", or "" for an async call
    enqueued_at: float = 0.0

    def encode(self) -> bytes:
        return _packb(
            [
                1,
                self.function,
                self.method,
                self.path,
                self.query,
                [list(h) for h in self.headers],
                self.body,
                self.call_id,
                self.callback_url,
                self.origin,
                self.enqueued_at,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Invocation:
        """Raises ValueError for anything that is not an encoded invocation."""
        try:
            raw = msgpack.unpackb(data)
            version, fn, method, path, query, headers, body, call_id, callback, origin, at = raw
        except Exception as exc:  # msgpack raises several unrelated types for garbage
            raise ValueError(f"not an encoded invocation: {exc}") from None
        if version != 1:
            raise ValueError(f"unknown invocation version {version!r}")
        return cls(fn, method, path, query, [(str(k), str(v)) for k, v in headers], body, call_id, callback, origin, at)


@dataclass
class Result:
    """A finished call: the function's answer (or the gateway's error for it) and how long it took."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    duration_s: float
    function: str
    attempts: int = 1

    def encode(self) -> bytes:
        return _packb(
            [1, self.status, [list(h) for h in self.headers], self.body, self.duration_s, self.function, self.attempts]
        )

    @classmethod
    def decode(cls, data: bytes) -> Result:
        _, status, headers, body, duration, function, attempts = msgpack.unpackb(data)
        return cls(status, [(str(k), str(v)) for k, v in headers], body, duration, function, attempts)

    def header(self, name: str, default: str = "") -> str:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), default)


@dataclass
class Callback:
    """An outbox entry: a finished call's result to POST to the caller's ``X-Callback-Url``."""

    url: str
    call_id: str
    result: Result

    def encode(self) -> bytes:
        return _packb([1, self.url, self.call_id, self.result.encode()])

    @classmethod
    def decode(cls, data: bytes) -> Callback:
        """Raises ValueError for anything that is not an encoded callback."""
        try:
            version, url, call_id, result = msgpack.unpackb(data)
            if version != 1:
                raise ValueError(f"unknown callback version {version!r}")
            return cls(str(url), str(call_id), Result.decode(result))
        except Exception as exc:  # msgpack raises several unrelated types for garbage
            raise ValueError(f"not an encoded callback: {exc}") from None


def fields_from_json(data: Any) -> dict[str, str]:
    """A published JSON object as the fields of a stream message (what :func:`from_stream_entry` reads back): text
    values as they are, numbers and booleans as their JSON text. Raises ValueError naming what cannot be a field."""
    if not isinstance(data, dict) or not data:
        raise ValueError('a JSON body must be an object with at least one field, e.g. {"order": "7"}')
    fields: dict[str, str] = {}
    for key, value in data.items():
        if not key:
            raise ValueError("field names cannot be empty")
        if isinstance(value, str):
            fields[key] = value
        elif isinstance(value, bool | int | float):
            fields[key] = json.dumps(value)
        else:
            kind = "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else "null"
            raise ValueError(f"field {key!r}: {kind} cannot be a field; give text, a number or a boolean")
    return fields


def from_stream_entry(function: str, stream: str, msg_id: str, fields: dict[bytes, bytes]) -> Invocation:
    """A message of a user's stream as an invocation: the ``body`` field if there is one, else all fields as a JSON
    object; the stream and message id go in headers so the function can deduplicate."""
    if b"body" in fields:
        body, content_type = fields[b"body"], "application/octet-stream"
    else:
        body = json.dumps({_text(k): _text(v) for k, v in fields.items()}).encode()
        content_type = "application/json"
    headers = [("content-type", content_type), ("x-stoker-stream", stream), ("x-stoker-message-id", msg_id)]
    return Invocation(function=function, headers=headers, body=body, origin=f"{stream}:{msg_id}")


def _packb(value: Any) -> bytes:
    return bytes(msgpack.packb(value))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def dead_letter(inv: Invocation, error: str, attempts: int, stream: str, msg_id: str, at: float) -> dict[str, Any]:
    """The fields of a dead-letter entry: the invocation (to replay), the last error and the attempt count."""
    return {
        "m": inv.encode(),
        "error": error,
        "attempts": str(attempts),
        "stream": stream,
        "id": msg_id,
        "at": f"{at:.3f}",
    }
