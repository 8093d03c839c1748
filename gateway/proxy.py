"""``/function/{name}[.{namespace}][/{path}]``: the invoke path, a raw ASGI app.

It is the hot path, so it skips Starlette's request objects: find the function, check that the request can be
forwarded safely (else 400: see :mod:`gateway.wire`), read the body (413 over the limit, 503 when the gateway already
holds its budget of bodies: :mod:`gateway.budget`), pick the replica with the fewest requests in flight, send the
request over a pooled connection, and answer with ``X-Call-Id``, ``X-Start-Time`` and ``X-Duration-Seconds``. The
path below the function is forwarded as the client sent it, still percent-encoded (``raw_path``): a decoded ``%0d%0a``
never reaches the replica's request line. With no replica that can take the request (at zero, starting, all at their
in-flight limit) it waits in the function's line in :mod:`gateway.activator`, which also starts capacity.

A small answer is sent whole; a large one (or one of unknown length) is relayed as it arrives, at the pace of the
client (see :mod:`gateway.upstream`), and the replica keeps counting as busy until it has all gone out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from urllib.parse import unquote

from starlette.types import Receive, Scope, Send

from gateway.activator import Activator, Unavailable
from gateway.budget import BodyBudget
from gateway.metrics import Metrics
from gateway.routing import choose
from gateway.upstream import Upstream, UpstreamError, UpstreamResponse
from gateway.wire import problem
from runtime.backends.base import Endpoint, FunctionLookup, FunctionRecord
from stoker.config import Config
from stoker.errors import Busy, InvalidRequest, PayloadTooLarge, StokerError, error_body
from stoker.forwarded import NAMES as FORWARDED_NAMES
from stoker.forwarded import TrustedProxies, forwarded
from stoker.names import DEFAULT_NAMESPACE

logger = logging.getLogger(__name__)

# A scope key set on a queued call the gateway replays through the proxy (gateway.async_api.ProxyInvoker).
REPLAYED = "stoker.replayed"
PREFIX = "/function/"
# Call ids only need to be unique, not secret: a per-process generator seeded from os.urandom costs a fraction of
# uuid4(), which makes a system call per id.
_random = random.Random()
_GATEWAY_TIMEOUT_MARGIN_S = 5.0  # the replica answers 504 itself at its timeout; this catches a replica that hangs


def split_path(raw_path: bytes, prefix: str) -> tuple[str, str, bytes] | None:
    """``{prefix}hello.ns/a%20b`` -> ``("hello", "ns", b"/a%20b")``: the function (decoded; the namespace defaults
    to ``openfaas-fn``) and the path below it as sent. None when the raw path does not start with ``prefix``."""
    if not raw_path.startswith(prefix.encode()):
        return None
    qualified, slash, sub = raw_path[len(prefix) :].partition(b"/")
    name, dot, namespace = unquote(qualified.decode("latin-1")).partition(".")
    return name, (namespace if dot else DEFAULT_NAMESPACE), b"/" + sub if slash else b"/"


# The function, the path below it (still percent-encoded), the query and the body, whose len() is what it took of the
# body budget: give that back once the body is no longer needed.
Admitted = tuple[FunctionRecord, bytes, bytes, bytes]


async def admit(
    scope: Scope, receive: Receive, send: Send, backend: FunctionLookup, prefix: str, limit: int, budget: BodyBudget
) -> Admitted | None:
    """The front of ``/function/`` and ``/async-function/``: the path must start with the prefix as it is (else
    400), the function exist (else 404), the path, query and headers be safe to forward (else 400) and the body fit
    (413 over ``limit``, 503 when the budget is spent). Returns None once the error is sent."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    split = split_path(raw_path, prefix)
    if split is None:
        await send_error(send, 400, f"the path must start with {prefix} as it is, not percent-encoded")
        return None
    name, namespace, path = split
    record = backend.get(name, namespace)
    if record is None:
        await send_error(send, 404, f"function {name!r} not found in namespace {namespace!r}")
        return None
    query: bytes = scope["query_string"]
    why = problem(scope["method"], path + b"?" + query if query else path, scope["headers"])
    if why is not None:
        await send_error(send, 400, f"cannot forward this request: {why}")
        return None
    try:
        body = await read_body(scope, receive, limit, budget)
    except StokerError as exc:
        await send_error(send, exc.status, str(exc), _RETRY_AFTER if exc.status == 503 else ())
        return None
    return record, path, query, body


async def send_error(send: Send, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(scope: Scope, receive: Receive, limit: int, budget: BodyBudget) -> bytes:
    """The whole request body, counted in ``budget`` as it arrives (the caller gives back ``len(body)``). Raises
    PayloadTooLarge over ``limit`` bytes (checked on the header first) and Busy when the budget cannot hold it.

    A body in several parts is gathered in one growing buffer (a bytearray, which does as bytes for every use of a
    body): held about once, not as its parts plus their join."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            break
    body: bytes | bytearray = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # never forward part of a body
            budget.give(len(body))
            raise InvalidRequest("the client went away before its whole body arrived")
        chunk: bytes = message.get("body", b"")
        if chunk:
            if len(body) + len(chunk) > limit or not budget.take(len(chunk)):
                budget.give(len(body))
                if len(body) + len(chunk) > limit:
                    raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
                raise Busy("the gateway holds as many request bodies in memory as it may; retry shortly")
            if not body:
                body = chunk  # the usual case: the whole body in one piece
            elif isinstance(body, bytearray):
                body += chunk
            else:
                body = bytearray(body)
                body += chunk
        if not message.get("more_body", False):
            break
    return body  # type: ignore[return-value]  # a bytearray; see above


class FunctionProxy:
    def __init__(
        self,
        config: Config,
        backend: FunctionLookup,
        upstream: Upstream,
        metrics: Metrics,
        activator: Activator,
        budget: BodyBudget,
    ) -> None:
        self.config = config
        self.backend = backend
        self.upstream = upstream
        self.metrics = metrics
        self.activator = activator
        self.budget = budget
        self.trusted = TrustedProxies.parse(config.trusted_proxies)
        self._turn = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
        admitted = await admit(scope, receive, send, self.backend, PREFIX, self.config.max_body_bytes, self.budget)
        if admitted is None:
            return
        record, path, query, body = admitted
        del admitted  # the body must go once the replica has it, even while a long answer is relayed
        reserved = len(body)
        name, namespace = record.deployment.service, record.deployment.namespace
        call_id = ""
        host = b""  # becomes X-Forwarded-Host (as OpenFaaS sets it)
        sent: list[tuple[bytes, bytes]] = []  # the client's X-Forwarded-*: kept only from a trusted proxy
        headers: list[tuple[bytes, bytes]] = []
        for key, value in scope["headers"]:
            if key == b"x-call-id":
                call_id = value.decode("latin-1")
            elif key in FORWARDED_NAMES:
                sent.append((key, value))
            else:
                headers.append((key, value))
                if key == b"host":
                    host = value
        call_id = call_id or f"{_random.getrandbits(128):032x}"
        client = scope.get("client")
        headers += (
            (b"x-call-id", call_id.encode()),
            (b"x-start-time", str(int(started * 1e9)).encode()),
        )
        if REPLAYED in scope:
            headers += sent
        else:
            headers += forwarded(sent, host, client[0] if client else "", scope.get("scheme", "http"), self.trusted)
        target = path + b"?" + query if query else path
        fn = f"{name}.{namespace}"
        self.metrics.call_started(fn)
        try:
            status, out_headers, out_body, streamed = await self._forward(
                record, scope["method"], target, headers, body
            )
        finally:
            self.budget.give(reserved)  # the replica has the body (or never will)
        del body
        duration = time.time() - started
        self.metrics.call_finished(fn, status, duration)
        out_headers += (
            (b"x-call-id", call_id.encode()),
            (b"x-start-time", str(int(started * 1e9)).encode()),
            (b"x-duration-seconds", f"{duration:.6f}".encode()),
        )
        if streamed is None:
            out_headers.append((b"content-length", str(len(out_body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": out_body})
            return
        response, endpoint = streamed
        try:
            await self._relay(receive, send, status, out_headers, response, record)
        finally:
            endpoint.inflight -= 1

    async def _relay(
        self,
        receive: Receive,
        send: Send,
        status: int,
        headers: list[tuple[bytes, bytes]],
        response: UpstreamResponse,
        record: FunctionRecord,
    ) -> None:
        """Send a large answer on as it comes from the replica. ``send`` waits while the client is slow, and the
        replica is not read meanwhile; a client that goes away ends the relay (and the connection to the replica).
        An answer the replica breaks off is broken off to the client too (raised: uvicorn closes the connection),
        never passed on as a complete but shorter one."""
        stream = response.stream
        assert stream is not None
        if response.length is not None:
            headers.append((b"content-length", str(response.length).encode()))
        gone = asyncio.ensure_future(receive())  # finishes when the client disconnects
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            idle_timeout = min(
                record.deployment.settings.timeout_s + _GATEWAY_TIMEOUT_MARGIN_S, self.config.upstream_timeout_s
            )
            while not gone.done():
                part = await stream.read(idle_timeout)
                if not part:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send({"type": "http.response.body", "body": part, "more_body": True})
        except (UpstreamError, TimeoutError) as exc:
            reason = str(exc) or "no data within the function's timeout"
            logger.warning("function %s: its answer was cut off: %s", record.deployment.service, reason)
            raise
        finally:
            gone.cancel()
            stream.close()

    async def _forward(
        self,
        record: FunctionRecord,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, tuple[UpstreamResponse, Endpoint] | None]:
        """The replica's answer: status, headers, and the body, or (for an answer to stream) the response to read
        it from and its endpoint, whose in-flight count the caller gives back when the body has gone out."""
        dep = record.deployment
        settings = dep.settings
        timeout = min(settings.timeout_s + _GATEWAY_TIMEOUT_MARGIN_S, self.config.upstream_timeout_s)
        failed: list[Endpoint] = []
        while True:
            endpoint = await self._acquire(record, settings.concurrency, failed)
            if isinstance(endpoint, Unavailable):
                return (*_error(endpoint.status, str(endpoint), retry_after=endpoint.retry_after), None)
            streaming = False
            try:
                response = await self.upstream.request(
                    endpoint.host, endpoint.port, method, target, headers, body, timeout
                )
                streaming = response.stream is not None
            except UpstreamError as exc:
                # Never sent (the replica is gone or not listening yet): safe to try another one, a few times.
                if exc.sent or len(failed) + 1 >= _SEND_ATTEMPTS:
                    return (*_error(502, f"function {dep.service!r}: {exc}"), None)
                failed.append(endpoint)
                continue
            except TimeoutError:
                return (*_error(504, f"function {dep.service!r} did not answer in time"), None)
            except StokerError as exc:  # the request cannot be written safely (see gateway.wire); nothing was sent
                return (*_error(exc.status, f"cannot forward this request: {exc}"), None)
            finally:
                if not streaming:
                    endpoint.inflight -= 1
            out = [(k, v) for k, v in response.headers if k not in _DROP_RESPONSE]
            if streaming:
                return response.status, out, b"", (response, endpoint)
            return response.status, out, response.body, None

    async def _acquire(self, record: FunctionRecord, limit: int, failed: list[Endpoint]) -> Endpoint | Unavailable:
        """A replica for one call, its in-flight count taken; ``failed`` ones are avoided while others exist."""
        dep = record.deployment
        self._turn += 1
        # Requests already waiting go first: a newcomer only skips the line when there is none.
        if not self.activator.waiting(dep.service, dep.namespace):
            candidates = [e for e in record.endpoints if e not in failed] if failed else record.endpoints
            endpoint = choose(candidates, self._turn, limit)
            if endpoint is not None:
                endpoint.inflight += 1
                return endpoint
        if failed:
            await asyncio.sleep(_RETRY_PAUSE_S)  # let the backend notice the dead replica before waiting in line
        try:
            return await self.activator.acquire(record)  # comes with its inflight already counted
        except Unavailable as exc:
            return exc


_SEND_ATTEMPTS = 3
_RETRY_PAUSE_S = 0.05
_RETRY_AFTER = ((b"retry-after", b"1"),)
# The gateway sets X-Call-Id, X-Start-Time and X-Duration-Seconds itself: a replica's own (of-watchdog sends
# X-Duration-Seconds) would make two of each.
_DROP_RESPONSE = frozenset(
    (b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"server",
     b"x-call-id", b"x-start-time", b"x-duration-seconds")
)  # fmt: skip


def _error(status: int, message: str, retry_after: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    return status, headers, error_body(message)
