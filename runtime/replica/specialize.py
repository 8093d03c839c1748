"""Generic replicas for the warm pool: the runtime loaded and serving, no function yet, specialised by one request.

A generic replica (``STOKER_POOL=1``) starts like any other (same server, same hardening) but with no function:
``/_/health`` answers 200, ``/_/ready`` 503, anything else 503. ``POST /_/specialize`` turns it into a replica of
one function, once:

1. the body is an envelope (msgpack ``{"env": {...}, "bundle": <tar.gz>}``) with its HMAC-SHA256 in the
   ``X-Stoker-Signature`` header. The key is a one-time key the pool created for this replica alone and passed
   through an inherited pipe (``STOKER_POOL_KEY_FD``), so it is in no environment (not in ``/proc/<pid>/environ``)
   and never the platform key. The signature is checked before anything is decoded, extracted or imported, and
   the key is wiped right after: the function, once loaded, cannot find it to specialise anything else. On
   Swarm and Kubernetes the key comes from an orchestrator secret file instead (``STOKER_POOL_KEY_FILE``): derived
   for this replica alone (:func:`runtime.backends.pool.replica_key`), it is useless once the replica is specialised;
2. the bundle is checked and extracted (:func:`stoker.bundle.unpack`) into the replica's own folder;
3. the function's variables are set, the handler imported, and the replica serves it from then on. A handler that
   cannot load answers 422 with the one-line reason and the replica exits (code 3), as a regular start would.

Code that checks its own bundle (SDK functions, :mod:`runtime.codesign`): when the variables carry
``STOKER_BUNDLE_KEY`` (the per-function key, never the platform key) and ``STOKER_BUNDLE_SIGNATURE``, the bundle's
bytes from the request are also written to ``bundle.tar.gz`` in the replica's folder and ``STOKER_BUNDLE`` points
there, so the replica reads exactly what it was sent, wherever it runs (a process, a container).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from runtime import codesign
from runtime.contract import (
    DIR_VAR,
    HEALTH_PATH,
    KEY_FD_VAR,
    KEY_FILE_VAR,
    POOL_VAR,
    SIGNATURE_HEADER,
    SPECIALIZE_PATH,
    load_error_line,
)
from runtime.replica.app import Receive, ReplicaApp, Scope, Send, _read_body, _respond
from runtime.replica.config import ReplicaConfig
from runtime.replica.loader import Handler, LoadError, load_handler
from runtime.replica.logs import CallLog
from runtime.replica.responses import text
from stoker import bundle
from stoker.atomicfile import write_atomic
from stoker.errors import ConfigError, StokerError

MAX_ENVELOPE_BYTES = 64 * 1024 * 1024


def read_key(fd: int) -> bytearray:
    """Read the one-time key from the inherited pipe and close it."""
    key = bytearray()
    try:
        while chunk := os.read(fd, 4096):
            key += chunk
    finally:
        os.close(fd)
    return key


Specialised = Callable[[ReplicaConfig, Handler], ReplicaApp]


class GenericApp:
    """The ASGI app of a generic replica; after specialisation it passes everything to the function's app."""

    def __init__(self, key: bytearray, workdir: Path, on_specialised: Specialised, on_failed: Callable[[], None]):
        self.inner: ReplicaApp | None = None
        self._key = key
        self._workdir = workdir
        self._on_specialised = on_specialised
        self._on_failed = on_failed
        self._draining = False
        self._broken = False
        self._busy = False
        self._log = CallLog(sys.stdout)

    # The replica server sets and reads these on whichever app it runs.
    @property
    def draining(self) -> bool:
        return self.inner.draining if self.inner is not None else self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        if self.inner is not None:
            self.inner.draining = value

    @property
    def broken(self) -> bool:
        return self.inner.broken if self.inner is not None else self._broken

    @broken.setter
    def broken(self, value: bool) -> None:
        self._broken = value
        if self.inner is not None:
            self.inner.broken = value

    @property
    def call_log(self) -> CallLog:
        return self.inner.call_log if self.inner is not None else self._log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.inner
        if scope["type"] != "http":
            return
        if scope["path"] == SPECIALIZE_PATH and scope["method"] == "POST":
            return await _respond(send, *await self._specialise(scope, receive))
        if inner is not None:
            return await inner(scope, receive, send)
        if scope["path"] == HEALTH_PATH:
            return await _respond(send, *text(200, "OK"))
        await _read_body(receive)
        await _respond(send, *text(503, "generic replica (warm pool): no function yet"))

    async def _specialise(self, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = await _read_body(receive)
        if self.inner is not None or self._busy or not self._key:
            return text(409, "this replica is already specialised")
        if self._draining:
            return text(503, "this replica is stopping")
        signature = dict(scope["headers"]).get(SIGNATURE_HEADER, b"").decode("latin-1")
        if len(body) > MAX_ENVELOPE_BYTES or not bundle.verify(bytes(self._key), body, signature):
            return text(403, "the specialisation request is not signed with this replica's key")
        self._busy = True
        for i in range(len(self._key)):  # one use only: a loaded function must not find a usable key
            self._key[i] = 0
        self._key.clear()
        try:
            config, handler = self._load(body)
        except _Refused as exc:
            print(load_error_line(exc), file=sys.stderr)
            self._on_failed()
            return text(422, str(exc))
        self.inner = self._on_specialised(config, handler)
        self.inner.draining = self._draining
        return text(200, "OK")

    def _load(self, body: bytes) -> tuple[ReplicaConfig, Handler]:
        try:
            message: Any = msgpack.unpackb(body, raw=False)
            env, code = message["env"], message["bundle"]
            if not isinstance(env, dict) or not isinstance(code, bytes):
                raise TypeError("env must be a map and bundle bytes")
            env = {str(k): str(v) for k, v in env.items()}
        except (ValueError, TypeError, KeyError, msgpack.ExtraData) as exc:
            raise _Refused(f"bad specialisation request: {exc}") from None
        folder = self._workdir / "code"
        try:
            bundle.unpack(code, folder)
        except (StokerError, OSError) as exc:
            raise _Refused(f"bad bundle: {exc}") from None
        if env.get(codesign.KEY_VAR):
            try:
                copy = self._workdir / "bundle.tar.gz"
                write_atomic(copy, code)
            except StokerError as exc:
                raise _Refused(f"cannot keep the bundle for its signature check: {exc}") from None
            env[codesign.BUNDLE_VAR] = str(copy)
        for var in (POOL_VAR, KEY_FD_VAR, KEY_FILE_VAR, DIR_VAR):
            os.environ.pop(var, None)  # the function is an ordinary replica now
        os.environ.update(env)  # the handler reads its variables from os.environ, as in a regular start
        try:
            config = ReplicaConfig.from_env({**os.environ, "STOKER_FUNCTION_DIR": str(folder)})
        except ConfigError as exc:
            raise _Refused(f"bad configuration: {exc}") from None
        os.chdir(folder)  # like a regular local replica: the function runs in its code's folder
        try:
            return config, load_handler(config)
        except LoadError as exc:
            if exc.details:
                sys.stderr.write(exc.details)
            raise _Refused(str(exc)) from None


class _Refused(Exception):
    """The request was signed, but the function cannot be loaded from it."""
