"""The replica process: read the config, load the handler, serve until told to stop, exit with a code that
says why.

Lifecycle: ``main()`` validates the environment (exit 2 on a bad value) and imports the handler (exit 3 when
it cannot be loaded, with ``stoker: cannot load handler: ...`` as the last line of stderr), then serves with
uvicorn (httptools, uvloop, no lifespan, no access log; the app writes its own line per call).

Stopping: SIGTERM or SIGINT only set flags (uvicorn's handler): the replica turns not-ready, closes its
listening socket and idle connections, lets in-flight calls finish for up to ``STOKER_DRAIN_TIMEOUT`` and
exits 0. A hung handler (see :mod:`runtime.replica.invoke`) drains the same way but exits 4, so the backend restarts
the replica at once.

Exit codes: 0 stopped, 1 could not serve (address in use), 2 bad configuration (or listening fd), 3 cannot
load the handler, 4 a handler hung and the replica must be replaced.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import uvicorn

from runtime import codesign, edgelimits
from runtime.codesign import UNPACK_VAR
from runtime.contract import (
    DIR_VAR,
    EXIT_BAD_CONFIG,
    EXIT_CANNOT_LOAD,
    EXIT_HUNG,
    EXIT_OK,
    EXIT_SERVE_FAILED,
    KEY_FD_VAR,
    KEY_FILE_VAR,
    POOL_VAR,
    load_error_line,
)
from runtime.httpserver import CoalescingHttpToolsProtocol
from runtime.replica.app import ReplicaApp
from runtime.replica.config import ReplicaConfig
from runtime.replica.invoke import STOP_GRACE_S, Invoker
from runtime.replica.loader import Handler, LoadError, load_handler
from runtime.replica.logs import function_logger
from runtime.replica.specialize import GenericApp, read_key
from runtime.replica.threads import fit_stacks_to_limit
from stoker import bundle, logconfig
from stoker.errors import ConfigError, StokerError

logger = logging.getLogger(__name__)

# Longer than the gateway's idle pool timeout, so the gateway, not us, closes idle connections.
KEEP_ALIVE_S = 65


def main(environ: Mapping[str, str] = os.environ) -> int:
    """Run a replica from the environment; return the process exit code."""
    no_new_privileges()
    fit_stacks_to_limit()
    for stream in (sys.stdout, sys.stderr):
        # Line-buffered so the supervising backend sees each line as it is written, even through a pipe.
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    # Diagnostics on stderr; STOKER_LOG_FORMAT=json as on the platform (a deployment may set it in envVars). The
    # load-error line stays a plain print: it is part of the contract (runtime.contract.LOAD_ERROR_PREFIX).
    logconfig.configure("json" if environ.get("STOKER_LOG_FORMAT") == "json" else "text")
    if environ.get(UNPACK_VAR) == "1":
        try:
            environ = {**environ, "STOKER_FUNCTION_DIR": str(_unpack_signed_bundle(environ))}
        except StokerError as exc:
            print(load_error_line(exc), file=sys.stderr)
            return EXIT_CANNOT_LOAD
    try:
        config = ReplicaConfig.from_env(environ)
        if environ.get(POOL_VAR) == "1":
            return _generic(config, environ)
    except ConfigError as exc:
        logger.error("bad configuration: %s", exc)
        return EXIT_BAD_CONFIG
    try:
        handler = load_handler(config)
    except LoadError as exc:
        if exc.details:
            sys.stderr.write(exc.details)
        print(load_error_line(exc), file=sys.stderr)
        return EXIT_CANNOT_LOAD
    return Replica(config, handler).run()


def no_new_privileges() -> bool:
    """Set the kernel's no_new_privs bit for the replica and everything it starts: no setuid or file-capability
    binary can raise their privileges any more. Docker and Kubernetes also set it from outside (no-new-privileges,
    allowPrivilegeEscalation false); Swarm services cannot before Engine API 1.46, so the replica does it itself,
    before any function code loads. True once set (Linux); False where the kernel has no such call."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


_PR_SET_NO_NEW_PRIVS = 38


def _unpack_signed_bundle(environ: Mapping[str, str]) -> Path:
    """A replica of the plain base image: its code is the signed bundle the backend mounted, checked before it is
    unpacked (into a fresh folder under /tmp, the one writable place of a read-only container)."""
    data = codesign.read_verified_bundle(environ)
    return bundle.unpack(data, tempfile.mkdtemp(prefix="stoker-function-"))


def _generic(config: ReplicaConfig, environ: Mapping[str, str]) -> int:
    """A generic replica for the warm pool (see :mod:`runtime.replica.specialize`)."""
    fd, path = environ.get(KEY_FD_VAR, ""), environ.get(KEY_FILE_VAR, "")
    if path:
        try:
            key = bytearray(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"{KEY_FILE_VAR}: cannot read the key: {exc}") from None
    elif fd.isdigit():
        try:
            key = read_key(int(fd))
        except OSError as exc:
            raise ConfigError(f"{KEY_FD_VAR}: cannot read the key from fd {fd}: {exc}") from None
    else:
        raise ConfigError(f"a generic replica needs its key: {KEY_FD_VAR} (a file descriptor) or {KEY_FILE_VAR}")
    if len(key) < 16:
        raise ConfigError("the generic replica's key is missing or too short")
    workdir = Path(environ.get(DIR_VAR) or tempfile.mkdtemp(prefix="stoker-fn-"))
    return Replica(config, None, GenericReplicaSetup(key, workdir)).run()


class GenericReplicaSetup:
    """What a generic replica starts with: its one-time key and the folder its function's code goes to."""

    def __init__(self, key: bytearray, workdir: Path) -> None:
        self.key = key
        self.workdir = workdir


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: ReplicaApp | GenericApp) -> None:
        super().__init__(config)
        self.replica_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.replica_app.draining = True
        super().handle_exit(sig, frame)


class Replica:
    """One replica: the invoker, the ASGI app and the uvicorn server, wired together."""

    def __init__(self, config: ReplicaConfig, handler: Handler | None, generic: GenericReplicaSetup | None = None):
        """A replica of ``handler``; or, with ``handler`` None, a generic one that ``generic`` specialises."""
        self.config = config
        self.handler = handler
        self.invoker: Invoker | None = None
        self.exit_code: int | None = None
        self.app: ReplicaApp | GenericApp
        if handler is not None:
            self.app = self._function_app(config, handler)
        else:
            assert generic is not None
            self.app = GenericApp(generic.key, generic.workdir, self._specialised, self._specialise_failed)
        limits = edgelimits.resolve(config.header_timeout_s, config.max_header_bytes, config.max_connections)
        self.server = _Server(
            uvicorn.Config(
                self.app,
                loop="uvloop",
                http=CoalescingHttpToolsProtocol.with_limits(limits),
                ws="none",
                lifespan="off",
                access_log=False,
                log_level="warning",
                server_header=False,
                proxy_headers=False,  # the handler sees X-Forwarded-* as they are; no rewriting per call
                timeout_keep_alive=KEEP_ALIVE_S,
                # uvicorn annotates int, but any number of seconds works (it goes to asyncio.wait_for)
                timeout_graceful_shutdown=config.drain_timeout_s,  # type: ignore[arg-type]
                host=config.host,
                port=config.port,
            ),
            self.app,
        )

    def _function_app(self, config: ReplicaConfig, handler: Handler) -> ReplicaApp:
        self.config = config
        self.handler = handler
        self.invoker = Invoker(handler, config.exec_timeout_s, config.threads, self._on_hung)
        logger = function_logger(config.function_name, sys.stdout)
        return ReplicaApp(config, self.invoker, logger, sys.stdout, sys.stderr)

    def _specialised(self, config: ReplicaConfig, handler: Handler) -> ReplicaApp:
        """A generic replica got its function: from now on it is that function's replica."""
        fit_stacks_to_limit()  # the backend may have set the function's memory limit just before
        app = self._function_app(config, handler)
        self.server.config.timeout_graceful_shutdown = config.drain_timeout_s  # type: ignore[assignment]
        self._serving_line()
        return app

    def _specialise_failed(self) -> None:
        self.exit_code = EXIT_CANNOT_LOAD
        self.server.should_exit = True

    def _serving_line(self) -> None:
        c = self.config
        where = f"fd {c.listen_fd}" if c.listen_fd is not None else f"{c.host}:{c.port}"
        if self.handler is None:
            logger.info("generic replica (warm pool) on %s; waiting for a function", where)
            return
        kind = "async" if self.handler.is_async else "sync"
        logger.info(
            f"serving {c.function_name} ({self.handler.source}, {kind}) on {where}; "
            f"exec_timeout={c.exec_timeout_s:g}s max_inflight={c.max_inflight} "
            f"drain_timeout={c.drain_timeout_s:g}s"
        )

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a hung handler; return the exit code (or exit at once, see below)."""
        c = self.config
        try:
            # Not uvicorn's fd=: it serves a dup() of the fd and leaves the original open, so after SIGTERM
            # the kernel would still queue connections no one accepts (clients hang instead of being refused).
            sockets = [socket.socket(fileno=c.listen_fd)] if c.listen_fd is not None else None
        except OSError as exc:
            logger.error("bad configuration: STOKER_LISTEN_FD: %s is not a socket (%s)", c.listen_fd, exc)
            return EXIT_BAD_CONFIG
        # Until uvicorn installs its own handlers a signal must still stop us; and uvicorn re-raises the
        # signal once its graceful shutdown is done, which with the default action would kill us with -15
        # after a clean drain. This handler covers both: it only sets the flags.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop_requested)
        self._serving_line()
        try:
            self.server.run(sockets=sockets)
        except SystemExit as exc:
            # uvicorn exits 3 when it cannot listen, and 3 means "cannot load the handler" to the backend.
            logger.error("cannot serve (uvicorn exit %s); see the error above", exc.code)
            return EXIT_SERVE_FAILED
        self.app.call_log.flush()
        code = EXIT_HUNG if self.app.broken else EXIT_OK
        if self.exit_code is not None:
            code = self.exit_code
        if self.invoker is not None and not self.invoker.close():
            # A handler is still running (stuck in C, or cut off by the drain timeout): skip interpreter
            # shutdown, which would tear down modules under that thread's feet.
            logger.error("exiting with code %s while a handler is still running", code)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code

    def _stop_requested(self, sig: int, frame: FrameType | None) -> None:
        self.app.draining = True
        self.server.should_exit = True

    def _on_hung(self, call_id: str, stack: str) -> None:
        source = self.handler.source if self.handler else "?"
        sys.stderr.write(
            f"call_id={call_id} stoker: handler {source} did not stop {STOP_GRACE_S:g}s after "
            f"its exec timeout (blocked outside Python?); it is stuck at:\n{stack}"
        )
        if not self.app.broken:
            logger.error(
                "replica broken: finishing the other calls, then exiting with code %s so that a fresh replica "
                "replaces it",
                EXIT_HUNG,
            )
        self.app.broken = True
        self.server.should_exit = True
