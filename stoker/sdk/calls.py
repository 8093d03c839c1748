"""Replies to calls: decoding one (value, generator, or the remote exception), and waiting for a spawned call.

``spawn()`` uses the async invocation API: ``POST /async-function/{name}`` answers 202 with ``X-Call-Id``; then
``GET /system/async-result/{call_id}`` (authenticated) answers 404 (unknown or expired), 202 while pending, or 200
with the function's body and its status in ``X-Function-Status``.
"""

from __future__ import annotations

import time
from typing import Any

from stoker.client import Client, GatewayError, Reply, error_text
from stoker.sdk import errors, serialization
from stoker.sdk.errors import CallFailed

POLL_FIRST_S = 0.02
POLL_MAX_S = 1.0


def decode_reply(name: str, status: int, body: bytes, msgpack: bool) -> Any:
    """The call's result; raises the remote exception, or :class:`CallFailed` when the call did not complete."""
    if msgpack:
        try:
            reply = serialization.loads(body)
        except Exception as exc:
            if 200 <= status < 300:
                raise CallFailed(f"{name}: the reply is not valid msgpack ({exc})", status) from None
            reply = None  # an error from the gateway or the replica itself, not from the SDK: plain text or JSON
        if isinstance(reply, dict) and len(reply) == 1:
            if "value" in reply:
                return reply["value"]
            if "generator" in reply:
                return (item for item in reply["generator"])
            if "error" in reply:
                raise errors.rebuild(reply["error"])
    if status == 404:
        raise CallFailed(f"function {name} is not deployed (deploy it first: app.deploy())", 404)
    retryable = status in errors.RETRYABLE_STATUSES
    raise CallFailed(f"{name} answered {status}: {error_text(body, status)}", status, retryable)


class FunctionCall:
    """A spawned call. ``get()`` waits for its result; ``call_id`` names it in the gateway's logs."""

    def __init__(self, client: Client, name: str, call_id: str) -> None:
        self.client = client
        self.name = name
        self.call_id = call_id

    def __repr__(self) -> str:
        return f"FunctionCall({self.name!r}, call_id={self.call_id!r})"

    def get(self, timeout: float | None = None) -> Any:
        """The result (or the remote exception); TimeoutError when it is not done within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST_S
        while True:
            reply = self._poll()
            if reply is not None:
                try:
                    status = int(reply.headers.get("x-function-status", "200"))
                except ValueError:
                    status = 500
                # The result store keeps the body, not necessarily its Content-Type; an SDK reply is a one-key
                # msgpack map, so it is read as msgpack whatever the headers say.
                return decode_reply(self.name, status, reply.body, msgpack=True)
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"{self.name}: call {self.call_id} not done after {timeout}s")
            time.sleep(delay)  # polling: the API has no way to wait on the server
            delay = min(delay * 2, POLL_MAX_S)

    def done(self) -> bool:
        """True when the call has ended (with a result or an exception)."""
        return self._poll() is not None

    def _poll(self) -> Reply | None:
        try:
            reply = self.client.async_result(self.call_id)
        except GatewayError as exc:
            raise CallFailed(f"{self.name}: {exc.message}", exc.status, retryable=exc.status == 0) from None
        if reply.status == 202:
            return None
        if reply.status == 200:
            return reply
        if reply.status == 404:
            raise CallFailed(
                f"{self.name}: call {self.call_id} is unknown or its result expired (or the gateway has no "
                f"async result API: {error_text(reply.body, 404)})",
                404,
            )
        if reply.status == 401:
            raise CallFailed(f"{self.name}: the gateway refused the credentials: {error_text(reply.body, 401)}", 401)
        raise CallFailed(f"{self.name}: async result answered {reply.status}: {error_text(reply.body, reply.status)}",
                         reply.status)  # fmt: skip
