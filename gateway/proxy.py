"""``/function/{name}[.{namespace}][/{path}]``: the invoke path, a raw ASGI app.

It is the hot path, so it skips Starlette's request objects: find the function, read the body (413 over the limit),
pick the replica with the fewest requests in flight, send the request over a pooled connection, and answer with
``X-Call-Id``, ``X-Start-Time`` and ``X-Duration-Seconds``. With no replica that can take the request (at zero,
starting, all at their in-flight limit) it waits in the function's line in :mod:`gateway.activator`, which also
starts capacity.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from starlette.types import Receive, Scope, Send

from gateway.activator import Activator, Unavailable
from gateway.metrics import Metrics
from gateway.routing import choose
from gateway.upstream import Upstream, UpstreamError
from runtime.backends.base import Backend, Endpoint, FunctionRecord
from stoker.config import Config
from stoker.names import DEFAULT_NAMESPACE

PREFIX = "/function/"
# Call ids only need to be unique, not secret: a per-process generator seeded from os.urandom costs a fraction of
# uuid4(), which makes a system call per id.
_random = random.Random()
_GATEWAY_TIMEOUT_MARGIN_S = 5.0  # the replica answers 504 itself at its timeout; this catches a replica that hangs


def split_path(path: str, prefix: str) -> tuple[str, str, str]:
    """``{prefix}hello.ns/a/b`` -> ``("hello", "ns", "/a/b")``; the namespace defaults to ``openfaas-fn``."""
    qualified, slash, sub = path[len(prefix) :].partition("/")
    name, dot, namespace = qualified.partition(".")
    return name, (namespace if dot else DEFAULT_NAMESPACE), "/" + sub if slash else "/"


async def admit(
    scope: Scope, receive: Receive, send: Send, backend: Backend, prefix: str, limit: int
) -> tuple[FunctionRecord, str, bytes] | None:
    """The front of ``/function/`` and ``/async-function/``: the function must exist (else 404) and the body fit
    (else 413); returns the function, the path below it and the body, or None once the error is sent."""
    name, namespace, subpath = split_path(scope["path"], prefix)
    record = backend.get(name, namespace)
    if record is None:
        await send_error(send, 404, f"function {name!r} not found in namespace {namespace!r}")
        return None
    body = await read_body(scope, receive, limit)
    if body is None:
        await send_error(send, 413, f"request body is over the limit of {limit} bytes")
        return None
    return record, subpath, body


async def send_error(send: Send, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"error": message}).encode()
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


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None when it is over ``limit`` bytes (checked on the header first)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return None
            except ValueError:
                pass
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FunctionProxy:
    def __init__(
        self, config: Config, backend: Backend, upstream: Upstream, metrics: Metrics, activator: Activator
    ) -> None:
        self.config = config
        self.backend = backend
        self.upstream = upstream
        self.metrics = metrics
        self.activator = activator
        self._turn = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
        admitted = await admit(scope, receive, send, self.backend, PREFIX, self.config.max_body_bytes)
        if admitted is None:
            return
        record, subpath, body = admitted
        name, namespace = record.deployment.service, record.deployment.namespace
        call_id = ""
        headers: list[tuple[bytes, bytes]] = []
        for key, value in scope["headers"]:
            if key == b"x-call-id":
                call_id = value.decode("latin-1")
            else:
                headers.append((key, value))
        call_id = call_id or f"{_random.getrandbits(128):032x}"
        client = scope.get("client")
        headers += (
            (b"x-call-id", call_id.encode()),
            (b"x-start-time", str(int(started * 1e9)).encode()),
            (b"x-forwarded-for", (client[0] if client else "").encode()),
        )
        target = subpath.encode() if not scope["query_string"] else subpath.encode() + b"?" + scope["query_string"]
        fn = f"{name}.{namespace}"
        self.metrics.call_started(fn)
        status, out_headers, out_body = await self._forward(record, scope["method"], target, headers, body)
        duration = time.time() - started
        self.metrics.call_finished(fn, status, duration)
        out_headers += (
            (b"x-call-id", call_id.encode()),
            (b"x-start-time", str(int(started * 1e9)).encode()),
            (b"x-duration-seconds", f"{duration:.6f}".encode()),
            (b"content-length", str(len(out_body)).encode()),
        )
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": out_body})

    async def _forward(
        self,
        record: FunctionRecord,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        dep = record.deployment
        settings = dep.settings
        timeout = min(settings.timeout_s + _GATEWAY_TIMEOUT_MARGIN_S, self.config.upstream_timeout_s)
        failed: list[Endpoint] = []
        while True:
            endpoint = await self._acquire(record, settings.concurrency, failed)
            if isinstance(endpoint, Unavailable):
                return _error(endpoint.status, str(endpoint), retry_after=endpoint.retry_after)
            try:
                response = await self.upstream.request(
                    endpoint.host, endpoint.port, method, target, headers, body, timeout
                )
            except UpstreamError as exc:
                # Never sent (the replica is gone or not listening yet): safe to try another one, a few times.
                if exc.sent or len(failed) + 1 >= _SEND_ATTEMPTS:
                    return _error(502, f"function {dep.service!r}: {exc}")
                failed.append(endpoint)
                continue
            except TimeoutError:
                return _error(504, f"function {dep.service!r} did not answer in time")
            finally:
                endpoint.inflight -= 1
            out = [(k, v) for k, v in response.headers if k not in _DROP_RESPONSE]
            return response.status, out, response.body

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
_DROP_RESPONSE = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"server"))


def _error(status: int, message: str, retry_after: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    return status, headers, json.dumps({"error": message}).encode()
