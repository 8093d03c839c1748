"""Async invocations and the queue's management routes.

``/async-function/{name}[.{namespace}][/{path}]`` (open, like ``/function/``): 404 for an unknown function, else the
request (method, path, query, headers, body) is persisted on the queue and answered 202 with ``X-Call-Id``; when the
queue cannot store it, 503, never a 202 for something that was not stored.

Under ``/system/`` (authenticated): ``GET /system/async-result/{call_id}``, ``GET /system/queues``,
``GET /system/queue/{function}/dead``, ``POST /system/queue/{function}/replay``, ``GET/POST/DELETE /system/triggers``.

:class:`ProxyInvoker` runs a queued invocation through the gateway's own :class:`~gateway.proxy.FunctionProxy` as an
ASGI call, so queued work gets exactly what a direct call gets (replica choice, waiting for a ready replica or a
scale-up from zero, timeouts, metrics).
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from events.callbacks import CallbackRefused, callback_headers, check_url
from events.messages import CallStatus, Invocation, Result
from events.queue import QueueUnavailable
from events.service import QueueService
from gateway.proxy import PREFIX, FunctionProxy, admit, send_error
from runtime.backends.base import Backend
from stoker.callback_policy import CallbackPolicy
from stoker.config import Config
from stoker.errors import InvalidRequest, NotFound
from stoker.names import InvalidName, split_qualified, validate_name

ASYNC_PREFIX = "/async-function/"
# Headers of the caller that must not be replayed to the function later (hop-by-hop, or ours).
_DROP = frozenset((b"host", b"content-length", b"connection", b"transfer-encoding", b"x-call-id", b"x-callback-url"))


class ProxyInvoker:
    """Runs one invocation through the gateway's proxy and returns its answer as a :class:`Result`."""

    def __init__(self, proxy: FunctionProxy) -> None:
        self.proxy = proxy

    async def __call__(self, inv: Invocation) -> Result:
        name, _, namespace = inv.function.partition(".")
        path = PREFIX + inv.function + (inv.path if inv.path != "/" else "")
        call_id = inv.call_id or inv.origin or "queued"
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in inv.headers]
        headers.append((b"x-call-id", call_id.encode()))
        scope: dict[str, Any] = {
            "type": "http",
            "method": inv.method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": inv.query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 0),
        }
        sent = False
        status, out_headers, chunks = 0, [], []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": inv.body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        started = time.monotonic()
        await self.proxy(scope, receive, send)
        keep = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in out_headers if k.lower() not in _RESULT_DROP]
        return Result(status, keep, b"".join(chunks), time.monotonic() - started, name + "." + namespace)


_RESULT_DROP = frozenset((b"content-length", b"x-call-id", b"x-start-time", b"x-duration-seconds"))


class AsyncAPI:
    def __init__(self, config: Config, backend: Backend, service: QueueService) -> None:
        self.config = config
        self.backend = backend
        self.service = service
        self.callback_policy = CallbackPolicy.parse(config.callback_allow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/async-function/...``: persist, then 202."""
        admitted = await admit(scope, receive, send, self.backend, ASYNC_PREFIX, self.config.max_body_bytes)
        if admitted is None:
            return
        record, subpath, body = admitted
        name, namespace = record.deployment.service, record.deployment.namespace
        callback = ""
        headers: list[tuple[str, str]] = []
        for key, value in scope["headers"]:
            if key == b"x-callback-url":
                callback = value.decode("latin-1")
            elif key not in _DROP:
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
            path=subpath,
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            callback_url=callback,
        )
        try:
            call_id = await self.service.accept(inv)
        except QueueUnavailable as exc:
            await send_error(send, 503, f"the queue cannot accept the call: {exc}", ((b"retry-after", b"1"),))
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
            Route("/system/async-result/{call_id}", self.result, methods=["GET"]),
            Route("/system/queues", self.queues, methods=["GET"]),
            Route("/system/queue/{function}/dead", self.dead, methods=["GET"]),
            Route("/system/queue/{function}/replay", self.replay, methods=["POST"]),
            Route("/system/triggers", self.list_triggers, methods=["GET"]),
            Route("/system/triggers", self.create_trigger, methods=["POST"]),
            Route("/system/triggers", self.delete_trigger, methods=["DELETE"]),
        ]

    async def result(self, request: Request) -> Response:
        call_id = request.path_params["call_id"]
        try:
            record = await self.service.call(call_id)
        except QueueUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        if record is None:
            return JSONResponse({"error": f"no call {call_id!r} (unknown, or its result expired)"}, status_code=404)
        if record.status != CallStatus.DONE or record.result is None:
            return JSONResponse({"callId": call_id, "status": record.status}, status_code=202)
        result = Result.decode(record.result)
        headers = {k: v for k, v in result.headers if k.lower() not in ("content-type", "content-length")}
        headers.update(callback_headers(call_id, result))
        return Response(result.body, 200, headers, media_type=result.header("content-type") or None)

    async def queues(self, request: Request) -> Response:
        rows = await self._unavailable_is_503(self.service.streams())
        if isinstance(rows, Response):
            return rows
        return JSONResponse(
            [
                {"function": fn, "stream": info.stream, "length": info.length, "lag": info.lag,
                 "pending": info.pending, "dead": dead}
                for fn, info, dead in rows
            ]
        )  # fmt: skip

    async def dead(self, request: Request) -> Response:
        fn = self._function(request.path_params["function"])
        entries = await self._unavailable_is_503(self.service.dead_letters(fn))
        return entries if isinstance(entries, Response) else JSONResponse(entries)

    async def replay(self, request: Request) -> Response:
        fn = self._function(request.path_params["function"])
        body = await _json(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if ids is not None and not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
            raise InvalidRequest("ids must be a list of dead letter ids")
        moved = await self._unavailable_is_503(self.service.replay(fn, ids))
        return moved if isinstance(moved, Response) else JSONResponse({"function": fn, "replayed": moved})

    async def list_triggers(self, request: Request) -> Response:
        pairs = await self.service.queue.triggers()
        return JSONResponse([{"function": f, "stream": s} for f, s in pairs])

    async def create_trigger(self, request: Request) -> Response:
        fn, stream = await self._trigger_body(request)
        changed = await self.service.queue.set_trigger(fn, stream, True)
        return JSONResponse({"function": fn, "stream": stream, "created": changed}, status_code=201 if changed else 200)

    async def delete_trigger(self, request: Request) -> Response:
        fn, stream = await self._trigger_body(request)
        if not await self.service.queue.set_trigger(fn, stream, False):
            raise NotFound(f"no trigger of {fn} on stream {stream!r}")
        return JSONResponse({"function": fn, "stream": stream, "deleted": True})

    async def _trigger_body(self, request: Request) -> tuple[str, str]:
        body = await _json(request)
        if not isinstance(body, dict):
            raise InvalidRequest('expected {"function": NAME, "stream": STREAM}')
        stream = body.get("stream")
        if not isinstance(stream, str) or not stream.strip() or stream.startswith("stoker:"):
            raise InvalidRequest("stream must be a stream name (not one of stoker's own stoker:* streams)")
        return self._function(str(body.get("function") or "")), stream.strip()

    def _function(self, qualified: str) -> str:
        try:
            name, namespace = split_qualified(qualified)
            return f"{validate_name(name)}.{validate_name(namespace, 'namespace')}"
        except InvalidName as exc:
            raise InvalidRequest(str(exc)) from None

    async def _unavailable_is_503(self, work: Any) -> Any:
        try:
            return await work
        except QueueUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
