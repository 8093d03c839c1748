"""The warm pool: generic replicas started ahead of need, so scaling a function up from zero takes milliseconds.

A generic replica has the runtime loaded and serving but no function (:mod:`runtime.replica.specialize`). Scaling up
takes one (:meth:`WarmPool.take`), sends it the function's code bundle and variables, and it serves the function
after an import instead of a process start; the pool refills in the background, one replica at a time so that
refilling never competes much with the replicas that serve.

The pool is backend-neutral: a backend gives it a ``start`` coroutine that returns a started, healthy
:class:`WarmReplica` (a local process, a container) and does the adoption itself. Every generic replica gets its own
one-time key (:func:`new_key`); the specialisation request is signed with it (:func:`signed_request`).

Orchestrators that own their replicas (Swarm, Kubernetes) start generic replicas themselves, so no pipe or stdin
reaches them: there each generic replica's key is :func:`replica_key`, derived from the platform key and the
replica's unique name, and given to it as an orchestrator secret file (``STOKER_POOL_KEY_FILE``). Any gateway or
controller holding the platform key can sign for it, nothing is kept between processes, and the key is good for that
one replica only, which accepts one specialisation: a function that reads its own key file can specialise nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from runtime.backends.readiness import open_replica
from runtime.contract import SIGNATURE_HEADER, SPECIALIZE_PATH, envelope
from stoker import bundle
from stoker.background import BackgroundLoop

logger = logging.getLogger(__name__)

KEY_BYTES = 32
_REPLICA_CONTEXT = b"stoker-pool-replica\0"
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0


class WarmReplica(Protocol):
    """A started generic replica, as a backend holds it."""

    instance: str

    async def discard(self) -> None:
        """Stop it; it was never given a function."""


def new_key() -> bytes:
    """A one-time key for one generic replica."""
    return secrets.token_bytes(KEY_BYTES)


def replica_key(platform_key: bytes, replica: str) -> bytes:
    """The key of the generic replica named ``replica`` on an orchestrator (never the platform key itself)."""
    return hmac.new(platform_key, _REPLICA_CONTEXT + replica.encode(), hashlib.sha256).digest()


def signed_request(key: bytes, env: dict[str, str], code: bytes) -> tuple[bytes, str]:
    """The body and signature of a specialisation request (see :mod:`runtime.replica.specialize`)."""
    body = envelope(env, code)
    return body, bundle.sign(key, body)


async def specialise(host: str, port: int, key: bytes, env: dict[str, str], code: bytes, timeout_s: float) -> str:
    """POST the signed request to a generic replica (at ``host:port``, or the Unix socket ``host``); return "" once
    it serves, else why it does not."""
    body, signature = signed_request(key, env, code)
    head = (
        f"POST {SPECIALIZE_PATH} HTTP/1.1\r\nhost: replica\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n{SIGNATURE_HEADER.decode()}: {signature}\r\n\r\n"
    ).encode()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await open_replica(host, port)
            try:
                writer.write(head + body)
                answer = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        return f"specialisation request failed: {exc or type(exc).__name__}"
    status, _, rest = answer.partition(b"\r\n")
    if status.split(b" ")[1:2] == [b"200"]:
        return ""
    detail = rest.partition(b"\r\n\r\n")[2].decode("utf-8", "replace")
    return f"specialisation refused: {status.decode('latin-1')} {detail}"


class WarmPool:
    """Keeps ``size`` generic replicas started; hands them out and refills."""

    def __init__(self, size: int, start: Callable[[], Coroutine[Any, Any, WarmReplica]], what: str = "replica") -> None:
        self.size = size
        self._start = start
        self._what = what
        self._ready: deque[WarmReplica] = deque()
        self._refill = BackgroundLoop(self._fill, "warm pool")
        self._wake = asyncio.Event()
        self._closed = False
        self.taken = 0  # replicas handed out so far (for metrics and tests)

    @property
    def ready(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        if self.size > 0:
            self._refill.start()

    def take(self) -> WarmReplica | None:
        """A ready generic replica, or None when the pool is empty (the caller starts a regular replica)."""
        if not self._ready:
            return None
        self.taken += 1
        replica = self._ready.popleft()
        self._wake.set()
        return replica

    async def close(self) -> None:
        self._closed = True
        await self._refill.stop()
        replicas, self._ready = list(self._ready), deque()
        await asyncio.gather(*(r.discard() for r in replicas), return_exceptions=True)

    async def _fill(self) -> None:
        failures = 0
        while not self._closed:
            if len(self._ready) >= self.size:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                replica = await self._start()
            except Exception as exc:  # a pool that cannot start must not take the platform down; retry slowly
                failures += 1
                delay = min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S)
                logger.warning("warm pool: cannot start a generic %s: %s; retry in %gs", self._what, exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if self._closed:
                await replica.discard()
                return
            self._ready.append(replica)
