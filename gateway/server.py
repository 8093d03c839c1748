"""``stoker up``: the whole platform in one process (gateway + backend), with an explicit lifecycle.

Startup: make ``STOKER_HOME`` private (:mod:`stoker.statehome`), take the state lock, load the platform key and the
credentials, bind the port (a clear error when it is taken),
restore the backend's functions (and fill its warm pool), start the autoscaler loop, serve, then deploy ``--stack``
if given. Shutdown (SIGINT/SIGTERM, which uvicorn turns into a flag): stop accepting, finish the requests in flight,
stop the autoscaler, answer requests still waiting for a replica, drain and stop the replicas, release everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import uvicorn

from autoscaler.shared import CounterPublisher
from gateway.api import Subscribe, check_schedule
from gateway.app import GatewayApp
from runtime import edgelimits
from runtime.backends import create_backend
from runtime.backends.base import Backend
from runtime.httpserver import CoalescingHttpToolsProtocol
from stoker import bundle, gatewayrecord, logconfig
from stoker.atomicfile import private_dir
from stoker.config import Config
from stoker.credentials import load_or_create_password, platform_key
from stoker.errors import ConfigError, StokerError
from stoker.spec import FunctionDeployment, check_values
from stoker.statehome import UMASK
from stoker.statehome import prepare as prepare_home

logger = logging.getLogger(__name__)


class PlatformError(ConfigError):
    """The platform cannot start; the message says why in one line."""


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal capture, which re-raises the signal after shutdown and would kill
    the process before the replicas are drained; :func:`serve` installs flag-only handlers instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second Ctrl-C stops waiting for in-flight requests
        self.should_exit = True


def _stop(app: GatewayApp, server: _Server) -> None:
    app.api.closing.set()  # followed logs end now: they are not work in flight, the drain would wait for them
    server.request_exit()


def _on_signal(app: GatewayApp, server: _Server, delay_s: float) -> None:
    """The first signal makes the gateway unready (``/readyz`` 503) and stops it ``delay_s`` later, serving every
    call meanwhile (a load balancer takes it out first); a second one stops it at once."""
    if app.draining or delay_s <= 0:
        _stop(app, server)
        return
    app.draining = True
    app.stops_at = time.monotonic() + delay_s
    logger.info("stopping in %gs: /readyz answers 503 meanwhile (STOKER_SHUTDOWN_DELAY_S)", delay_s)
    asyncio.get_running_loop().call_later(delay_s, _stop, app, server)


def _lock_home(home: Path) -> IO[str]:
    try:
        os.umask(UMASK)
        private_dir(home)
        handle = open(home / "platform.lock", "w")  # noqa: SIM115 -- held for the process's lifetime
    except OSError as exc:
        raise PlatformError(f"STOKER_HOME: cannot use {home}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise PlatformError(
            f"another 'stoker up' is already using {home} (set STOKER_HOME to run a second one)"
        ) from None
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        prepare_home(home)  # ours alone now: tighten what is there
    except OSError as exc:
        handle.close()
        raise PlatformError(f"STOKER_HOME: cannot make {home} private: {exc.strerror or exc}") from None
    return handle


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PlatformError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


async def deploy_stack(
    backend: Backend,
    stack_path: Path,
    max_bundle_bytes: int,
    subscribe: Subscribe,
    max_bundle_files: int = bundle.DEFAULT_MAX_FILES,
) -> list[str]:
    """Deploy every function of a stack file straight through the backend, each subscribed to its streams first (as
    a deploy through the API is); return their names."""
    from stoker.stack import load_stack

    def packed(folder: Path) -> bytes:
        data = bundle.pack(folder, max_bundle_bytes)
        bundle.check(data, max_bundle_bytes, max_files=max_bundle_files)
        return data

    deployed = []
    for fn in load_stack(stack_path).functions:
        # In a thread: the gateway is serving already, and packing a large folder takes a while.
        data = await asyncio.to_thread(packed, fn.handler_dir) if fn.handler_dir is not None else None
        dep = FunctionDeployment.from_json(fn.to_deployment(), require_code=False)
        check_values(dep)
        check_schedule(dep)
        await subscribe(dep)
        await backend.deploy(dep, data)
        deployed.append(dep.service)
    return deployed


async def serve(config: Config, stack: Path | None = None, ready: asyncio.Event | None = None) -> None:
    lock = _lock_home(config.home)
    try:
        try:
            key = platform_key(config.home, config.platform_key_file)  # before anything else is written there
            password = load_or_create_password(config.home, config.admin_password)
        except (ValueError, StokerError) as exc:
            raise PlatformError(str(exc)) from None
        sock = _bind(config.host, config.port)
        port = sock.getsockname()[1]
        limits = edgelimits.resolve(config.header_timeout_s, config.max_header_bytes, config.max_connections)
        backend = create_backend(config, key)
        app = GatewayApp(config, backend, password)
        server = _Server(
            uvicorn.Config(
                app,
                lifespan="off",
                http=CoalescingHttpToolsProtocol.with_limits(limits),
                loop="none",
                access_log=False,
                proxy_headers=False,  # the gateway is the edge; X-Forwarded-For is set by the proxy itself
                server_header=False,
                log_level="warning",
                timeout_graceful_shutdown=int(config.drain_timeout_s),
                # uvicorn annotates int, but any number of seconds works (it goes to loop.call_later)
                timeout_keep_alive=config.keepalive_timeout_s,  # type: ignore[arg-type]
                limit_concurrency=None,
                backlog=2048,
            )
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, app, server, config.shutdown_delay_s)
        await backend.start()
        await app.queue.start()  # workers, triggers and cron; a Redis that is down is waited for, not fatal
        app.autoscaler.start()
        app.console.start()
        # With Redis, this gateway's load counters go there once a tick for a `stoker controller` to add up.
        publisher = None
        if config.redis_url:
            publisher = CounterPublisher(config.redis_url, app.metrics, config.autoscale_tick_s)
            publisher.start()
        try:
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.01)
            url = f"http://{config.host}:{port}"
            where = f"backend: {backend.name}, queue: {app.queue.queue.kind}, state: {config.home}"
            # The CLI and SDK of this STOKER_HOME find the gateway here, whatever its port.
            gatewayrecord.write(config.home, gatewayrecord.client_url(config.host, port), os.getpid())
            gatewayrecord.write_backend(config.home, backend.name)
            print(f"stoker: gateway on {url} ({where})", flush=True)
            if stack is not None and not serving.done():
                await _deploy_and_explain(backend, stack, config, url, app.queue.subscribe)
            if ready is not None:
                ready.set()
            await serving
        finally:
            gatewayrecord.remove(config.home, os.getpid())
            # Queued work still running gets a grace period; what is cut off stays pending and runs after restart.
            await app.queue.stop(grace_s=min(config.drain_timeout_s, 10.0))
            await app.autoscaler.stop()
            await app.console.stop()
            if publisher is not None:
                await publisher.stop()
            await app.activator.close()
            await app.api.removals.close(config.drain_timeout_s + 15)
            await backend.close()
            app.upstream.close()
            sock.close()
    finally:
        lock.close()


async def _deploy_and_explain(backend: Backend, stack: Path, config: Config, url: str, subscribe: Subscribe) -> None:
    try:
        names = await deploy_stack(backend, stack, config.max_bundle_bytes, subscribe, config.max_bundle_files)
    except (StokerError, ValueError, OSError) as exc:
        logger.error("deploying %s failed: %s", stack, exc)
        return
    print(f"stoker: deployed {', '.join(names)} from {stack}. Try:", flush=True)
    for name in names:
        print(f"  curl -s {url}/function/{name} -d 'stoker'", flush=True)
    print(f"  stoker list    (admin password in {config.home / 'credentials'})", flush=True)


def run_platform(config: Config, stack: Path | None = None) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code."""
    logconfig.configure(config.log_format)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but the platform must not need it
        pass
    try:
        asyncio.run(serve(config, stack))
    except (PlatformError, ConfigError) as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(Exception):
        print(f"stoker: stopped (state kept in {config.home})", flush=True)
    return 0
