"""Async invocations and the queue's management routes.

``/async-function/{name}[.{namespace}][/{path}]`` (open, like ``/function/``): 404 for an unknown function, else the
request (method, path, query, headers, body) is persisted on the queue and answered 202 with ``X-Call-Id``: the
caller's own when it sent a safe one (as OpenFaaS keeps it), else a new one; 409 when the caller's names a call the
queue knows (never overwritten nor revealed). When the queue cannot store it, 503, never a 202 for something that was
not stored.

Under ``/system/`` (authenticated): ``GET /system/async-result/{call_id}``, ``GET /system/queues``,
``GET /system/queue/{function}/dead``, ``POST /system/queue/{function}/replay``, ``GET/POST/DELETE /system/triggers``,
``POST /system/streams/{stream}`` (publish a message to a user's stream, on either queue).

:class:`ProxyInvoker` runs a queued invocation through the gateway's own :class:`~gateway.proxy.FunctionProxy` as an
ASGI call, so queued work gets exactly what a direct call gets (replica choice, waiting for a ready replica or a
scale-up from zero, timeouts, metrics, the checks of :mod:`gateway.wire`). The path and query are stored as the
client sent them, still percent-encoded, and replayed so. The result it keeps is bounded by ``STOKER_MAX_BODY_BYTES``:
a longer answer is read to its end but not kept, and the result holds the function's status with a JSON error as body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from events.callbacks import CallbackRefused, callback_headers, check_url
from events.messages import CallStatus, Invocation, Result, caller_call_id, fields_from_json
from events.queue import Fields, QueueUnavailable, stream_problem
from events.service import CallIdInUse, QueueService
from gateway.budget import BodyBudget
from gateway.jsonbody import error, json_limits, parse, read_body, read_json
from gateway.proxy import PREFIX, REPLAYED, FunctionProxy, admit, send_error
from gateway.resources import resource
from gateway.upstream import UpstreamError
from gateway.wire import as_target
from runtime.backends.base import FunctionLookup, FunctionRecord
from stoker.callback_policy import CallbackPolicy
from stoker.config import Config
from stoker.errors import InvalidRequest, NotFound, error_body
from stoker.forwarded import NAMES as FORWARDED_NAMES
from stoker.forwarded import TrustedProxies, forwarded
from stoker.names import split_qualified, validate_name

ASYNC_PREFIX = "/async-function/"
# A user's stream a trigger reads: printable, and never one of stoker's own (stoker:*), whose entries are not calls.
# Headers of the caller that must not be replayed to the function later (hop-by-hop, or ours).
_DROP = frozenset((b"host", b"content-length", b"connection", b"transfer-encoding", b"x-call-id", b"x-callback-url"))


class ProxyInvoker:
    """Runs one invocation through the gateway's proxy and returns its answer as a :class:`Result`, whose body is
    kept up to ``max_result_bytes``."""

    def __init__(self, proxy: FunctionProxy, max_result_bytes: int) -> None:
        self.proxy = proxy
        self.max_result_bytes = max_result_bytes

    async def __call__(self, inv: Invocation) -> Result:
        name, _, namespace = inv.function.partition(".")
        path = as_target(inv.path)
        raw_path = as_target(PREFIX + inv.function) + (path if path != b"/" else b"")
        call_id = inv.call_id or inv.origin or "queued"
        headers = [(k.lower().encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in inv.headers]
        headers.append((b"x-call-id", call_id.encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "method": inv.method,
            "path": unquote(raw_path.decode()),
            "raw_path": raw_path,
            "query_string": as_target(inv.query, "latin-1"),
            "headers": headers,
            "client": ("127.0.0.1", 0),
            REPLAYED: True,  # its X-Forwarded-* are the ones the gateway set when it accepted the call
        }
        sent = False
        status, out_headers, size = 0, [], 0
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.Future()  # like a client that stays: only cancelled when the answer is complete
            sent = True
            return {"type": "http.request", "body": inv.body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, out_headers, size
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_result_bytes:
                    raise _ResultTooLarge()
                chunks.append(chunk)

        started = time.monotonic()
        try:
            await self.proxy(scope, receive, send)
            body = b"".join(chunks)
        except _ResultTooLarge:
            message = f"the function's answer is over {self.max_result_bytes} bytes (STOKER_MAX_BODY_BYTES); not kept"
            body = error_body(message)
            out_headers = [(k, v) for k, v in out_headers if k.lower() != b"content-type"]
            out_headers.append((b"content-type", b"application/json"))
        except (UpstreamError, TimeoutError) as exc:  # the replica broke off a streamed answer: a failed attempt
            status = 502
            body = error_body(f"function {name!r}: its answer was cut off: {exc}")
            out_headers = [(b"content-type", b"application/json")]
        chunks.clear()
        keep = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in out_headers if k.lower() not in _RESULT_DROP]
        return Result(status, keep, body, time.monotonic() - started, name + "." + namespace)


class _ResultTooLarge(Exception):
    """Raised from the invoker's ``send`` to stop reading an answer it will not keep."""


_RESULT_DROP = frozenset((b"content-length", b"x-call-id", b"x-start-time", b"x-duration-seconds"))


class AsyncAPI:
    def __init__(self, config: Config, backend: FunctionLookup, service: QueueService, budget: BodyBudget) -> None:
        self.config = config
        self.backend = backend
        self.service = service
        self.limits = json_limits(config)
        self.budget = budget
        self.callback_policy = CallbackPolicy.parse(config.callback_allow)
        self.trusted = TrustedProxies.parse(config.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/async-function/...``: persist, then 202."""
        admitted = await admit(
            scope, receive, send, self.backend, ASYNC_PREFIX, self.config.max_body_bytes, self.budget
        )
        if admitted is None:
            return
        try:
            await self._accept(scope, send, *admitted)
        finally:
            self.budget.give(len(admitted[3]))

    async def _accept(
        self, scope: Scope, send: Send, record: FunctionRecord, path: bytes, query: bytes, body: bytes
    ) -> None:
        name, namespace = record.deployment.service, record.deployment.namespace
        callback = ""
        headers: list[tuple[str, str]] = []
        host = b""  # replayed as X-Forwarded-Host (as OpenFaaS sets it)
        sent: list[tuple[bytes, bytes]] = []  # the client's X-Forwarded-*: kept only from a trusted proxy
        call_id = ""  # the caller's, kept when safe (events.messages.caller_call_id), as OpenFaaS does
        for key, value in scope["headers"]:
            if key == b"x-callback-url":
                callback = value.decode("latin-1")
            elif key == b"x-call-id":
                call_id = caller_call_id(value.decode("latin-1"))
            elif key == b"host":
                host = value
            elif key in FORWARDED_NAMES:
                sent.append((key, value))
            elif key not in _DROP:
                headers.append((key.decode("latin-1"), value.decode("latin-1")))
        client = scope.get("client")
        peer = client[0] if client else ""
        for key, value in forwarded(sent, host, peer, scope.get("scheme", "http"), self.trusted):
            headers.append((key.decode("latin-1"), value.decode("latin-1")))
        if callback:
            try:
                await check_url(callback, self.callback_policy)  # and again at delivery: names can change
            except CallbackRefused as exc:
                await send_error(send, 400, str(exc))
                return
        inv = Invocation(
            function=f"{name}.{namespace}",
            method=scope["method"],
            path=path.decode("latin-1"),  # as sent, still percent-encoded: replayed so (see gateway.wire)
            query=query.decode("latin-1"),
            headers=headers,
            body=body,
            callback_url=callback,
        )
        try:
            call_id = await self.service.accept(inv, call_id)
        except QueueUnavailable as exc:
            await send_error(send, 503, f"the queue cannot accept the call: {exc}", ((b"retry-after", b"1"),))
            return
        except CallIdInUse as exc:
            await send_error(send, 409, str(exc))
            return
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"x-call-id", call_id.encode()), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def routes(self) -> list[Route]:
        return [
            resource("/system/async-result/{call_id}", GET=self.result),
            resource("/system/queues", GET=self.queues),
            resource("/system/queue/{function}/dead", GET=self.dead),
            resource("/system/queue/{function}/replay", POST=self.replay),
            resource("/system/triggers", GET=self.list_triggers, POST=self.create_trigger, DELETE=self.delete_trigger),
            resource("/system/streams/{stream:anything}", POST=self.publish),
        ]

    async def result(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        record = await self.service.call(call_id)
        if record is None:
            return error(404, f"no call {call_id!r} (unknown, or its result expired)")
        if record.status != CallStatus.DONE or record.result is None:
            return JSONResponse({"callId": call_id, "status": record.status}, status_code=202)
        result = Result.decode(record.result)
        headers = {k: v for k, v in result.headers if k.lower() not in ("content-type", "content-length")}
        headers.update(callback_headers(call_id, result))
        if record.callback_error:
            text = " ".join(record.callback_error.split())  # one line: no CR/LF can reach the header
            headers["X-Callback-Error"] = text.encode("ascii", "replace").decode()[:1000]
        return Response(result.body, 200, headers, media_type=result.header("content-type") or None)

    async def queues(self, request: Request) -> Response:
        rows = await self.service.streams()  # QueueUnavailable, a StokerError, is a 503 like every other one here
        return JSONResponse(
            [
                {"function": fn, "stream": info.stream, "length": info.length, "lag": info.lag,
                 "pending": info.pending, "dead": dead}
                for fn, info, dead in rows
            ]
        )  # fmt: skip

    async def dead(self, request: Request) -> Response:
        fn = self._function(request.path_params["function"])
        return JSONResponse(await self.service.dead_letters(fn))

    async def replay(self, request: Request) -> Response:
        fn = self._function(request.path_params["function"])
        body = await read_json(request, self.limits, {})
        if not isinstance(body, dict):
            raise InvalidRequest('expected {"ids": [DEAD_ID, ...]}, or no body to replay them all')
        ids = body.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise InvalidRequest("ids must be a list of dead letter ids")
        moved = await self.service.replay(fn, ids)
        return JSONResponse({"function": fn, "replayed": moved})

    async def list_triggers(self, request: Request) -> Response:
        pairs = await self.service.queue.triggers()
        return JSONResponse([{"function": f, "stream": s} for f, s in pairs])

    async def create_trigger(self, request: Request) -> Response:
        fn, stream = await self._trigger_body(request)
        name, _, namespace = fn.partition(".")
        if self.backend.get(name, namespace) is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        changed = await self.service.add_trigger(fn, stream)  # live from this answer on
        return JSONResponse({"function": fn, "stream": stream, "created": changed}, status_code=201 if changed else 200)

    async def delete_trigger(self, request: Request) -> Response:
        fn, stream = await self._trigger_body(request)
        if not await self.service.queue.set_trigger(fn, stream, False):
            raise NotFound(f"no trigger of {fn} on stream {stream!r}")
        return JSONResponse({"function": fn, "stream": stream, "deleted": True})

    async def _trigger_body(self, request: Request) -> tuple[str, str]:
        body = await read_json(request, self.limits)
        if not isinstance(body, dict):
            raise InvalidRequest('expected {"function": NAME, "stream": STREAM}')
        stream = body.get("stream")
        if not isinstance(stream, str):
            raise InvalidRequest('expected {"function": NAME, "stream": STREAM}')
        problem = stream_problem(stream)
        if problem:
            raise InvalidRequest(problem)
        function = body.get("function")
        if not isinstance(function, str):
            raise InvalidRequest("function must be a function name (NAME or NAME.NAMESPACE)")
        return self._function(function), stream

    async def publish(self, request: Request) -> Response:
        """One message on a user's stream: a JSON object's fields (``Content-Type: application/json``), else the
        raw body as the ``body`` field. 201 ``{"stream", "id"}`` once stored."""
        stream = request.path_params["stream"]
        problem = stream_problem(stream)
        if problem:
            raise InvalidRequest(problem)
        raw = await read_body(request, self.config.max_body_bytes)
        fields: Fields
        if request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json":
            try:
                fields = dict(fields_from_json(parse(raw, replace(self.limits, body_bytes=len(raw)))))
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
        else:
            fields = {"body": raw}
        msg_id = await self.service.publish(stream, fields)
        return JSONResponse({"stream": stream, "id": msg_id}, status_code=201)

    def _function(self, qualified: str) -> str:
        name, namespace = split_qualified(qualified)
        return f"{validate_name(name)}.{validate_name(namespace, 'namespace')}"
