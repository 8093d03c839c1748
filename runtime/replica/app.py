"""The replica's HTTP surface, a raw ASGI app (no framework objects on the call path: it runs thousands of
times a second).

- ``GET /_/health``: 200 while the process is alive.
- ``GET /_/ready``: 200 when it takes calls; 429 at its in-flight limit; 503 while draining (SIGTERM) or
  broken (a hung handler; see :mod:`runtime.replica.invoke`).
- Anything else calls the function: the request becomes an :class:`~stoker.handler.Event`, the call gets a
  :class:`~stoker.handler.Context`, and the return value becomes the response (:mod:`runtime.replica.responses`). A
  call over the in-flight limit gets 429 at once, a handler error 500, an exec timeout 504. Every call writes
  one line to stdout (:mod:`runtime.replica.logs`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TextIO
from urllib.parse import parse_qsl

from runtime.contract import HEALTH_PATH, READY_PATH
from runtime.replica.config import ReplicaConfig
from runtime.replica.invoke import ExecTimeout, Invoker
from runtime.replica.logs import CallLog, call_id_var, format_call, format_failure
from runtime.replica.responses import Rendered, render, text
from stoker.handler import Context, Event, Headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ReplicaApp:
    """The ASGI app of one replica. ``draining`` and ``broken`` are set by :mod:`runtime.replica.server`."""

    def __init__(
        self, config: ReplicaConfig, invoker: Invoker, logger: logging.Logger, out: TextIO, err: TextIO
    ) -> None:
        self.draining = False
        self.broken = False
        self._config = config
        self._invoker = invoker
        self._logger = logger
        self.call_log = CallLog(out)
        self._err = err
        self._name = config.function_name
        self._function_dir = str(config.function_dir)
        self._limit = config.max_inflight
        self._timeout_s = config.exec_timeout_s
        self._timed_out = f"function {self._name} timed out after {config.exec_timeout_s:g}s"
        self._busy = f"function {self._name} is at its in-flight limit ({self._limit} calls); retry later"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off and websockets are not served
            return
        path: str = scope["path"]
        if path[:3] == "/_/" and scope["method"] == "GET":
            if path == HEALTH_PATH:
                return await _respond(send, *text(200, "OK"))
            if path == READY_PATH:
                return await _respond(send, *self.readiness())
        await self._call(scope, receive, send)

    def readiness(self) -> Rendered:
        """What ``/_/ready`` answers now."""
        if self.broken:
            return text(503, f"function {self._name} is broken: a handler is hung; the replica is restarting")
        if self.draining:
            return text(503, f"function {self._name} is draining")
        if self._limit and self._invoker.busy >= self._limit:
            return text(429, self._busy)
        return text(200, "OK")

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = Headers()
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")  # ASGI servers give names in lower case
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        call_id = headers.get("x-call-id") or new_call_id()
        body = await _read_body(receive)
        if self._limit and self._invoker.busy >= self._limit:
            response = text(429, self._busy)
        else:
            call_id_var.set(call_id)  # this task's own context: context.logger lines carry the call id
            response = await self._invoke(scope, headers, body, call_id)
        await _respond(send, *response)
        # raw_path, not path: a decoded %0A must not split the line
        path = scope.get("raw_path") or scope["path"].encode()
        duration = time.perf_counter() - started
        self.call_log.write(format_call(call_id, scope["method"], path.decode("latin-1"), response[0], duration))

    async def _invoke(self, scope: Scope, headers: Headers, body: bytes, call_id: str) -> Rendered:
        query_string: bytes = scope["query_string"]
        query_list = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if query_string else []
        query: dict[str, str] = {}
        for key, value in query_list:
            query.setdefault(key, value)  # the first value, as python3-http's request.args.get() gives
        event = Event(scope["method"], scope["path"], query, headers, body, query_list)
        context = Context(
            function_name=self._name,
            call_id=call_id,
            deadline=time.time() + self._timeout_s,
            secrets_dir=self._config.secrets_dir,
            logger=self._logger,
            namespace=self._config.namespace,
        )
        try:
            return render(await self._invoker.call(event, context))
        except asyncio.CancelledError:
            # uvicorn cancels the calls still running at the drain timeout, then exits. Say so rather than let
            # it answer a bare 500; nothing above this task waits on the cancellation, so it ends here.
            return text(503, f"function {self._name}: the replica shut down before the call finished")
        except ExecTimeout:
            self._err.write(f"call_id={call_id} {self._timed_out}; stopping the handler\n")
            return text(504, self._timed_out)
        except (Exception, SystemExit) as exc:
            # SystemExit too: sys.exit() in a handler fails the call, not the replica.
            message = f"function {self._name} failed: {type(exc).__name__}"
            if str(exc):
                message = f"{message}: {exc}"
            self._err.write(format_failure(call_id, message, exc, self._function_dir))
            return text(500, message)


def new_call_id() -> str:
    """A random version-4 UUID as 32 hex digits, like ``uuid.uuid4().hex``.

    From a seeded Mersenne Twister rather than uuid4's os.urandom() system call, which costs more than the
    rest of a call's bookkeeping: call ids must be unique, not secret.
    """
    return f"{_getrandbits(128) & _UUID_CLEAR | _UUID_V4:032x}"


# Our own instance: a handler calling random.seed() cannot make ids repeat.
_getrandbits = random.Random().getrandbits
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
