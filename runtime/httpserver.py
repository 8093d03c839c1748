"""uvicorn's httptools protocol, with the edge's limits enforced and a response's head sent with its body.

The gateway and every replica serve with this protocol: ``uvicorn.Config(..., http=CoalescingHttpToolsProtocol
.with_limits(limits))`` (see :mod:`runtime.edgelimits`).

Limits (uvicorn has none of them for httptools): a request head must be complete within ``header_timeout_s`` of the
connection opening or of the head's first bytes (else 408, or a silent close for a connection that sent nothing), and
at most ``max_header_bytes`` long (else 431; counted on the bytes received while the head is incomplete, so a
pipelined head may get up to one more read); at most ``max_connections`` are open at once: a connection beyond it
closes the oldest one that has no request running (an idle keep-alive connection or an unfinished head), or, when
every connection is busy, is answered 503 and closed. Refusals are JSON ``{"error": ...}`` with ``connection:
close``; after a 408 or 431 the server stops sending and reads (and drops) what the client still sends for a moment,
so that a client busy writing its request still reads the answer instead of a reset.

Coalescing: uvicorn writes a response's head and its body with two ``transport.write`` calls, which for the small
answers of a function platform means two system calls (and often two TCP segments) per request. Here the head is held
until the body's first write in the same turn of the event loop (or until that turn ends, for a response that
streams), and both go out in one write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from runtime.edgelimits import EdgeLimits
from stoker.errors import error_body

logger = logging.getLogger(__name__)

_HEAD_PREFIX = b"HTTP/1."
LINGER_S = 2.0  # how long a refused client may go on sending before the connection is closed
LINGER_BYTES = 1024 * 1024  # ... and how much of it is read and dropped


class _CoalescingTransport:
    """Delegates to the real transport; holds a response head until the next write or the end of the turn."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_HEAD_PREFIX):
            self._held = data
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        self._scheduled = False
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:  # asked once or twice per request: not through __getattr__
        return self._transport.is_closing()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()
    # Connections with no request running (idle keep-alive, or a head still arriving), oldest first: the ones
    # closed to make room at the connection limit. One record per server class (see with_limits).
    _resting: ClassVar[dict[CoalescingHttpToolsProtocol, None]] = {}

    @classmethod
    def with_limits(cls, limits: EdgeLimits) -> type[CoalescingHttpToolsProtocol]:
        """The protocol class for one server: these limits and its own record of connections."""
        return type(cls.__name__, (cls,), {"limits": limits, "_resting": {}})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        # A head has begun and is not complete while uvicorn's scope (made when a request begins) is not the one
        # whose head completed last: no per-request bookkeeping for it.
        self._headed_scope: Any = None
        self._between = True  # no request since the last one ended: the next bytes begin a head
        self._head_bytes = 0
        self._completed = False  # a request ended during the current data_received
        self._chunk = 0  # length of the read being parsed
        self._lingering = -1  # bytes dropped after a refusal; -1 while not refused

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped: Any = _CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._lingering = 0  # whatever it sends is dropped
            self.transport.write(_refusal(503, "the server is at its connection limit; retry shortly", True))
            self.transport.close()
            return
        self._resting[self] = None
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._resting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering >= 0:
            self._lingering += len(data)
            if self._lingering > LINGER_BYTES:
                self.transport.close()
            return
        counting = self._between or self.scope is not self._headed_scope
        self._completed = False
        self._chunk = len(data)
        super().data_received(data)
        if self.scope is not self._headed_scope and not self.transport.is_closing():  # a head is incomplete
            # A head that began inside this read (after a pipelined request) is counted from the next read on.
            if counting and not self._completed:
                self._head_bytes += len(data)
                if self._head_bytes > self.limits.max_header_bytes:
                    limit = self.limits.max_header_bytes
                    self._refuse(431, f"the request line and headers are over the limit of {limit} bytes")
                    return
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def eof_received(self) -> None:
        if self._lingering >= 0:
            self.transport.close()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        if self._lingering >= 0:
            return
        self._headed_scope = self.scope
        self._between = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._resting.pop(self, None)
        limit = self.limits.max_header_bytes
        # A head that arrived whole in one large read was not counted on the way: measure it (rarely needed).
        if self._head_bytes + self._chunk > limit and self._head_size() > limit:
            self._refuse(431, f"the request line and headers are over the limit of {limit} bytes")
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._lingering < 0:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lingering >= 0:
            return
        self._between = True
        self._head_bytes = 0
        self._completed = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle.response_complete:  # (a closing connection leaves the record in connection_lost)
            self._resting[self] = None  # to the end: the oldest resting connection is closed first

    # limits
    def _make_room(self) -> bool:
        """Close the oldest connection with no request running; False when every connection is busy."""
        for victim in self._resting:
            del self._resting[victim]
            logger.debug("at the connection limit (%d): closing a resting connection", self.limits.max_connections)
            victim.transport.close()
            return True
        return False

    def _head_size(self) -> int:
        """The size of the head just parsed, as sent (request line, headers and their separators)."""
        return len(self.url) + 14 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        in_head = self.scope is not self._headed_scope
        if in_head and self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a request still being answered: judged once that answer is out.
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)
        elif in_head:
            self._refuse(408, f"the request head did not arrive within {self.limits.header_timeout_s:g}s")
        elif self._between:
            self.transport.close()  # nothing was sent: an idle connection, closed like an expired keep-alive

    def _refuse(self, status: int, message: str) -> None:
        """Answer, stop sending, and drop what the client still sends for a moment before closing: a client that
        writes its whole request before reading gets the answer, not a reset."""
        logger.debug("refusing a request head: %d %s", status, message)
        self._resting.pop(self, None)
        self._lingering = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
        self.transport.write(_refusal(status, message))
        try:
            self.transport.write_eof()
        except (AttributeError, NotImplementedError, OSError, RuntimeError):
            self.transport.close()
            return
        self._head_timer = self.loop.call_later(LINGER_S, self.transport.close)


def _refusal(status: int, message: str, retry_after: bool = False) -> bytes:
    body = error_body(message)
    extra = b"retry-after: 1\r\n" if retry_after else b""
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n",
            extra,
            b"\r\n",
            body,
        ]
    )
