"""A small, fast HTTP/1.1 client for gateway -> replica calls, with keep-alive pools per replica.

Why not httpx or aiohttp: the invoke path is the product's hot path, and a protocol object fed by httptools (the
parser uvicorn uses) costs a fraction of a general client per request. It speaks exactly what replicas need: one
request per connection at a time, content-length request bodies, content-length or chunked responses.

At most once: once a request's bytes are written, a failure is reported with ``sent=True`` and never retried here
(the replica may have run it). Only a request that never left (the connection could not be made, the pooled
connection was already closed, or writing it failed with EPIPE because the replica had closed it) is ``sent=False``,
which the proxy retries on another replica. :meth:`Upstream.abort`
closes every connection to a replica that died, so calls in flight on it fail at once instead of hanging (a killed
container sends no reset).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable

import httptools

CONNECT_TIMEOUT_S = 2.0  # loopback and bridge networks connect in microseconds; a vanished address never answers
IDLE_TTL_S = 3.0  # replicas close idle keep-alive connections after 5 s (uvicorn's default); drop ours sooner
MAX_IDLE_PER_REPLICA = 256
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
     b"host", b"content-length", b"expect")
)  # fmt: skip


class UpstreamError(Exception):
    """The replica could not be reached or broke the connection before answering."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent  # True when the replica may have received the request


class UpstreamResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = False
        self.head = False  # a HEAD answer has headers only, whatever its content-length says
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(f"invalid HTTP answer from the replica: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # EPIPE: our request could not be written, the replica had closed this connection already (it died while the
        # connection sat idle in the pool): it never got the whole request, so another replica may take it.
        self._fail("the replica closed the connection before answering", sent=not isinstance(exc, BrokenPipeError))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_headers_complete(self) -> None:
        if self.head:
            # The parser cannot know the request was HEAD and would wait for content-length bytes that never come;
            # end the message here and drop the connection, whose parser state is now unusable.
            self.closed = True
            self.on_message_complete()

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        self.pool.active.discard(self)
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, b"".join(self.body))
        keep = self.parser.should_keep_alive()
        self.headers, self.body, self.received = [], [], False
        if keep and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, message: str, sent: bool = True) -> None:
        waiter, self.waiter = self.waiter, None
        self.pool.active.discard(self)
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamError(message, sent=sent))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes, head: bool = False) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise UpstreamError(f"the connection to {_where(self.pool.host, self.pool.port)} is closed", sent=False)
        self.head = head
        self.waiter = asyncio.get_running_loop().create_future()
        self.pool.active.add(self)
        self.transport.write(payload)
        return self.waiter


class _Pool:
    __slots__ = ("active", "host", "idle", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: deque[_Connection] = deque()
        self.active: set[_Connection] = set()  # connections with a request in flight

    async def acquire(self) -> _Connection:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # most recently used first: warm and least likely timed out
            if not conn.closed and now - conn.idle_since < IDLE_TTL_S:
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                if self.host[0] == "/":  # a Unix socket: local replicas listen where only the platform can reach
                    _, conn = await loop.create_unix_connection(lambda: _Connection(self), self.host)
                else:
                    _, conn = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except (OSError, TimeoutError) as exc:
            reason = exc if isinstance(exc, OSError) else f"no answer in {CONNECT_TIMEOUT_S:g}s"
            where = _where(self.host, self.port)
            raise UpstreamError(f"cannot connect to replica {where}: {reason}", sent=False) from None
        return conn

    def release(self, conn: _Connection) -> None:
        if len(self.idle) >= MAX_IDLE_PER_REPLICA:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self.idle.append(conn)

    def close(self) -> None:
        """Close every connection, idle or with a request in flight (those fail with ``sent=True``)."""
        while self.idle:
            self.idle.pop().close()
        for conn in list(self.active):
            conn.close()


def _where(host: str, port: int) -> str:
    """A replica's address for an error message, which clients see: not the path of a local socket."""
    return "(local socket)" if host[0] == "/" else f"{host}:{port}"


def _expire(waiter: asyncio.Future[UpstreamResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def encode_request(
    method: str, target: bytes, host: bytes, headers: Iterable[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """Serialise one request; hop-by-hop headers of the client are dropped, framing is ours."""
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        if name.lower() not in HOP_BY_HOP:
            parts += (name, b": ", value, b"\r\n")
    parts += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
    return b"".join(parts)


class Upstream:
    """Keep-alive pools keyed by replica address."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, int], _Pool] = {}

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> UpstreamResponse:
        """Send one request and return the whole answer; raises UpstreamError or asyncio.TimeoutError. ``host`` may
        be the path of a Unix socket (``port`` is then unused)."""
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(host, port)
        authority = b"localhost" if host[0] == "/" else f"{host}:{port}".encode()
        payload = encode_request(method, target, authority, headers, body)
        conn = await pool.acquire()
        waiter = conn.send(payload, head=method == "HEAD")
        # call_later and a future are cheaper than asyncio.timeout() on a path taken thousands of times a second
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            conn.close()  # timeout, cancellation or a broken answer: the connection's state is unknown
            raise
        finally:
            timer.cancel()

    def abort(self, host: str, port: int) -> None:
        """A replica died: close its connections; the calls in flight on them fail with ``sent=True`` (502)."""
        pool = self._pools.pop((host, port), None)
        if pool is not None:
            pool.close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
