"""uvicorn's httptools protocol, with the status line and headers of a response sent with its body.

uvicorn writes a response's head and its body with two ``transport.write`` calls, which for the small answers of a
function platform means two system calls (and often two TCP segments) per request. Here the head is held until
the body's first write in the same turn of the event loop (or until that turn ends, for a response that streams),
and both go out in one write. The gateway and every replica serve with this protocol:
``uvicorn.Config(..., http=CoalescingHttpToolsProtocol)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_PREFIX = b"HTTP/1."


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

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped: Any = _CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(wrapped)
