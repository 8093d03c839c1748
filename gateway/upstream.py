"""A small, fast HTTP/1.1 client for gateway -> replica calls, with keep-alive pools per replica.

Why not httpx or aiohttp: the invoke path is the product's hot path, and a protocol object fed by httptools (the
parser uvicorn uses) costs a fraction of a general client per request. It speaks exactly what replicas need: one
request per connection at a time, content-length request bodies, content-length or chunked responses.

Answers of up to :data:`WHOLE_UP_TO` bytes (by their content-length) come back whole, as before. Larger ones, and
those of unknown length, come back as soon as their head is in, with a :class:`BodyStream` to read the rest as it
arrives: while more than :data:`HIGH_WATER` bytes of it wait to be read (the client is slower than the replica),
the connection stops reading from the replica, so memory per call stays bounded whatever the answer's size.

Nothing unsafe is written: :func:`encode_head` refuses a request line or header that could carry a line break
(see :mod:`gateway.wire`) with :class:`~stoker.errors.InvalidRequest`.

At most once: once a request's bytes are written, a failure is reported with ``sent=True`` and never retried here
(the replica may have run it). Only a request that never left (the connection could not be made, the pooled
connection was already closed, or writing it failed with EPIPE because the replica had closed it) is ``sent=False``,
which the proxy retries on another replica. A pooled connection is checked before it is reused (one zero-timeout
poll, as urllib3 does): one with anything to read while idle has been closed by its replica (or broke the protocol),
even if the event loop has not yet seen it, and is dropped rather than written to. :meth:`Upstream.abort`
closes every connection to a replica that died, so calls in flight on it fail at once instead of hanging (a killed
container sends no reset).
"""

from __future__ import annotations

import asyncio
import select
import time
from collections import deque
from collections.abc import Iterable

import httptools

from gateway.wire import bad_token, bad_value, header_problem, problem
from stoker.errors import InvalidRequest

CONNECT_TIMEOUT_S = 2.0  # loopback and bridge networks connect in microseconds; a vanished address never answers
_REPLAYABLE = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))  # idempotent and bodiless: safe to send twice
IDLE_TTL_S = 3.0  # replicas close idle keep-alive connections after 5 s (uvicorn's default); drop ours sooner
MAX_IDLE_PER_REPLICA = 256
WHOLE_UP_TO = 256 * 1024  # answers up to this content-length are read whole; larger or unsized ones stream
HIGH_WATER = 256 * 1024  # a stream stops reading from the replica while this much waits for the client
SMALL_BODY = 64 * 1024  # request bodies up to this size are copied behind the head and written with it
HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer", b"upgrade",
     b"host", b"content-length", b"expect")
)  # fmt: skip


class UpstreamError(Exception):
    """The replica could not be reached or broke the connection before answering."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent  # True when the replica may have received the request


class BodyStream:
    """The rest of a large answer, as it arrives. Reading it is what lets the replica send more."""

    __slots__ = ("_buffered", "_conn", "_done", "_error", "_parts", "_paused", "_wakeup", "received")

    def __init__(self, conn: _Connection) -> None:
        self._conn: _Connection | None = conn  # None once the answer is complete (the connection may serve another)
        self._parts: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._done = False
        self._error: UpstreamError | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.received = 0  # bytes of the body received so far

    async def read(self, timeout: float) -> bytes:
        """What has arrived since the last read (waiting for something), ``b""`` at the end of the answer. Raises
        UpstreamError when the replica breaks the answer off, TimeoutError when it sends nothing for ``timeout``."""
        while not self._parts:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._wakeup
            finally:
                self._wakeup = None
        data = self._parts.popleft() if len(self._parts) == 1 else b"".join(self._parts)
        self._parts.clear()
        self._buffered = 0
        if self._paused and self._conn is not None:
            self._paused = False
            self._conn.resume()
        return data

    def close(self) -> None:
        """Stop reading: an answer not read to its end leaves its connection unusable, so it is closed."""
        conn, self._conn = self._conn, None
        self._parts.clear()
        if conn is not None and not self._done:
            conn.close()

    # fed by the connection
    def _feed(self, data: bytes) -> None:
        self._parts.append(data)
        self._buffered += len(data)
        self.received += len(data)
        if self._buffered > HIGH_WATER and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause()
        self._wake()

    def _end(self) -> None:
        self._done = True
        self._conn = None
        self._wake()

    def _fail(self, message: str) -> None:
        self._error = UpstreamError(message, sent=True)
        self._conn = None
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class UpstreamResponse:
    """A replica's answer: whole in ``body`` when ``stream`` is None; else ``body`` is empty and ``stream`` gives
    the body, whose length is ``length`` (None: chunked)."""

    __slots__ = ("body", "headers", "length", "status", "stream")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        stream: BodyStream | None = None,
        length: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
        self.length = length


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.stream: BodyStream | None = None
        self.headed = False  # the head of the answer is in, its body not yet (decided at the end of that read)
        self.received = False
        self.reused = False  # taken from the idle pool: it has carried an answer before this request
        self.replayable = False  # this request may go again (idempotent, see _REPLAYABLE)
        self.head = False  # a HEAD answer has headers only, whatever its content-length says
        self.closed = False
        self.paused = False
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
            return
        if self.headed and self.waiter is not None:
            # The head is in but not the whole answer: wait for the rest of a small one, stream a large one.
            self.headed = False
            self._decide()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # EPIPE: our request could not be written, the replica had closed this connection already (it died while the
        # connection sat idle in the pool): it never got the whole request, so another replica may take it. The same
        # race without EPIPE (the close crossed our write): a reused connection closed before a byte of the answer,
        # for a request that may go again, is sent again elsewhere, as HTTP clients do (Go's net/http, urllib3).
        stale = self.reused and not self.received and self.replayable
        self._fail(
            "the replica closed the connection before answering", sent=not (isinstance(exc, BrokenPipeError) or stale)
        )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        if self.stream is not None:
            self.stream._feed(body)
        else:
            self.body.append(body)

    def on_headers_complete(self) -> None:
        if self.head:
            # The parser cannot know the request was HEAD and would wait for content-length bytes that never come;
            # end the message here and drop the connection, whose parser state is now unusable.
            self.closed = True
            self.on_message_complete()
            return
        self.headed = True  # see data_received: most answers are complete in the read that brings their head

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        stream, self.stream = self.stream, None
        self.pool.active.discard(self)
        keep = self.parser.should_keep_alive()
        response = None
        if stream is None:
            response = UpstreamResponse(self.parser.get_status_code(), self.headers, b"".join(self.body))
        self.headers, self.body, self.received, self.headed = [], [], False, False
        if self.paused:
            self.resume()
        if keep and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if stream is not None:
            stream._end()
        elif waiter is not None and not waiter.done():
            waiter.set_result(response)  # type: ignore[arg-type]

    def _decide(self) -> None:
        """An answer whose head is in and body is not: up to WHOLE_UP_TO bytes (by content-length) it is read
        whole; larger, or of unknown length, it goes to the caller now, with a stream for the rest."""
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                break
        if length is not None and length <= WHOLE_UP_TO:
            return
        stream = self.stream = BodyStream(self)
        for part in self.body:
            stream._feed(part)
        self.body = []
        waiter, self.waiter = self.waiter, None
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, b"", stream, length)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, message: str, sent: bool = True) -> None:
        waiter, self.waiter = self.waiter, None
        stream, self.stream = self.stream, None
        self.pool.active.discard(self)
        if waiter is not None and not waiter.done():
            waiter.set_exception(UpstreamError(message, sent=sent))
        if stream is not None:
            stream._fail(f"{message} (after {stream.received} bytes of its answer)")
        self.close()

    def dropped(self) -> bool:
        """True when this idle connection has something to read (the replica's FIN or RST, which the event loop may
        not have processed yet): it must not carry another request."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, head: bytes, body: bytes, is_head: bool = False) -> asyncio.Future[UpstreamResponse]:
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise UpstreamError(f"the connection to {_where(self.pool.host, self.pool.port)} is closed", sent=False)
        self.head = is_head
        self.replayable = head.split(b" ", 1)[0] in _REPLAYABLE
        self.waiter = asyncio.get_running_loop().create_future()
        self.pool.active.add(self)
        if len(body) <= SMALL_BODY:
            self.transport.write(head + body)
        else:  # a large body is written as it is, not copied behind the head
            self.transport.write(head)
            self.transport.write(body)
        return self.waiter


class _Pool:
    __slots__ = ("active", "host", "idle", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: deque[_Connection] = deque()
        self.active: set[_Connection] = set()  # connections with a request in flight (or an answer streaming)

    async def acquire(self) -> _Connection:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # most recently used first: warm and least likely timed out
            if not conn.closed and now - conn.idle_since < IDLE_TTL_S and not conn.dropped():
                conn.reused = True
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


def encode_head(
    method: str, target: bytes, host: bytes, headers: Iterable[tuple[bytes, bytes]], body_length: int
) -> bytes:
    """Serialise a request's line and headers; hop-by-hop headers of the client are dropped, framing is ours.
    Raises InvalidRequest for anything that could end a line early (defence in depth: the proxy checks first)."""
    why = problem(method, target, ())
    if why is not None:
        raise InvalidRequest(why)
    parts = [method.encode("ascii"), b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        if name.lower() in HOP_BY_HOP:
            continue
        if bad_token(name) or bad_value(value) or not name:
            raise InvalidRequest(header_problem(name, value))
        parts += (name, b": ", value, b"\r\n")
    parts += (b"content-length: ", str(body_length).encode(), b"\r\n\r\n")
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
        """Send one request and return the answer (see :class:`UpstreamResponse`) once its head is in, within
        ``timeout``; raises InvalidRequest (nothing sent), UpstreamError or TimeoutError. ``host`` may be the path of a
        Unix socket (``port`` is then unused)."""
        key = (host, port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(host, port)
        authority = b"localhost" if host[0] == "/" else f"{host}:{port}".encode()
        head = encode_head(method, target, authority, headers, len(body))
        conn = await pool.acquire()
        waiter = conn.send(head, body, is_head=method == "HEAD")
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

    def active(self, host: str, port: int) -> int:
        """How many connections to ``host:port`` carry a request or an answer now."""
        pool = self._pools.get((host, port))
        return len(pool.active) if pool is not None else 0

    def drop_idle(self, host: str, port: int) -> None:
        """Close the idle connections to ``host:port`` (it is stopping, and closes idle connections when it does:
        one of them taken for a request at that moment would lose a request that cannot go again); the requests in
        flight there go on."""
        pool = self._pools.get((host, port))
        if pool is not None:
            while pool.idle:
                pool.idle.pop().close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
