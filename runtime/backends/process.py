"""One replica slot of the local backend: a child process, kept running.

The slot starts ``python -m runtime`` on a loopback socket it binds itself (passed as an inherited file descriptor,
so there is no window in which another process can take the port), waits for ``/_/ready``, publishes an
:class:`Endpoint`, and restarts the process with exponential backoff when it exits. Stopping drains: the endpoint
leaves the routing list, the requests in flight on it finish, then the process gets SIGTERM (SIGKILL after the
drain timeout). Children die with the platform even when it is killed (``PR_SET_PDEATHSIG``).

A slot may start from a generic process of the warm pool (:class:`WarmStart`, :mod:`runtime.pool`): its first run
specialises that process instead of starting one, which takes milliseconds rather than a process start; if that
fails, and for every restart after, the slot starts processes the regular way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runtime.backends.base import Endpoint
from runtime.backends.logstore import FunctionLog
from runtime.backends.readiness import wait_ready
from runtime.backends.slots import Published

EXIT_LOAD_ERROR = 3  # the handler could not be imported
EXIT_STUCK = 4  # a timed-out handler could not be stopped; restart at once
LOAD_ERROR_PREFIX = "stoker: cannot load handler:"
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 10.0  # a replica that stayed up this long resets the backoff
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def next_backoff(failures: int) -> float:
    """Delay before restart number ``failures`` (1-based): 0.2 s, 0.4 s, ... capped at 30 s."""
    return float(min(BACKOFF_FIRST_S * 2.0 ** (failures - 1), BACKOFF_MAX_S))


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class ProcessSpec:
    """How to start the replicas of one version of a function."""

    python: str
    env: dict[str, str]


class _Output(asyncio.SubprocessProtocol):
    def __init__(self, on_lines: Callable[[list[str]], None]) -> None:
        self.on_lines = on_lines
        self.partial: dict[int, bytes] = {}
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        data = self.partial.pop(fd, b"") + data
        *complete, rest = data.split(b"\n")
        if rest:
            self.partial[fd] = rest
        if complete:
            self.on_lines([c.decode("utf-8", "replace").rstrip("\r") for c in complete])

    def process_exited(self) -> None:
        for _fd, rest in sorted(self.partial.items()):
            self.on_lines([rest.decode("utf-8", "replace")])
        self.partial.clear()
        if not self.exited.done():
            self.exited.set_result(None)


async def spawn_runtime(
    python: str, env: dict[str, str], on_lines: Callable[[list[str]], None], extra_fds: tuple[int, ...] = ()
) -> tuple[asyncio.SubprocessTransport, _Output, int]:
    """Start ``python -m runtime`` on a fresh loopback socket (inherited, so no port race); return the process,
    its output protocol and the port."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    env = {**env, "STOKER_LISTEN_FD": str(sock.fileno())}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p)
    protocol = _Output(on_lines)
    try:
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            python,
            "-m",
            "runtime",
            stdin=asyncio.subprocess.DEVNULL,
            env=env,
            pass_fds=(sock.fileno(), *extra_fds),
            preexec_fn=_die_with_parent,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the platform, which drains replicas
        )
    finally:
        sock.close()
    return transport, protocol, port


class WarmProcess(Protocol):
    """A generic replica process from the warm pool (:class:`runtime.backends.local_pool.GenericProcess`)."""

    transport: asyncio.SubprocessTransport
    output: _Output
    port: int

    async def specialise(self, env: dict[str, str], code: bytes) -> str: ...

    async def discard(self) -> None: ...

    def cleanup(self) -> None: ...


@dataclass(frozen=True)
class WarmStart:
    """A generic process to adopt and what to specialise it with."""

    process: WarmProcess
    env: dict[str, str]
    code: bytes


class ReplicaSlot(Published):
    def __init__(
        self,
        instance: str,
        spec: ProcessSpec,
        log: FunctionLog,
        endpoints: list[Endpoint],
        on_problem: Callable[[str], None],
        drain_timeout_s: float,
        warm: WarmStart | None = None,
    ) -> None:
        super().__init__(instance, log, endpoints, on_problem, drain_timeout_s)
        self.spec = spec
        self._transport: asyncio.SubprocessTransport | None = None
        self._warm = warm
        self._task = asyncio.create_task(self._run(), name=f"replica {instance}")

    async def _run(self) -> None:
        failures = 0
        warm, self._warm = self._warm, None
        while not self.stopping:
            started = time.monotonic()
            outcome = await self._run_warm(warm) if warm is not None else None
            warm = None
            code, was_ready = outcome if outcome is not None else await self._run_once()
            if self.stopping:
                break
            ran = time.monotonic() - started
            failures = 1 if (was_ready and ran >= HEALTHY_AFTER_S) or code == EXIT_STUCK else failures + 1
            load_error = next((t for t in reversed(self.log.tail(50)) if t.startswith(LOAD_ERROR_PREFIX)), "")
            reason = load_error if code == EXIT_LOAD_ERROR and load_error else f"exited with code {code}"
            if not self.first_outcome.done():
                self.first_outcome.set_result(self._failure_text(code, reason))
            delay = 0.0 if code == EXIT_STUCK else next_backoff(failures)
            self.restarts += 1
            self.on_problem(f"replica {self.instance} {reason}; restart {self.restarts} in {delay:.1f}s")
            self.log.write("stoker", [f"replica {self.instance} {reason}; restarting in {delay:.1f}s"])
            await asyncio.sleep(delay)

    def _failure_text(self, code: int, reason: str) -> str:
        if code == EXIT_LOAD_ERROR:
            return reason.removeprefix(LOAD_ERROR_PREFIX).strip() or "the handler could not be loaded"
        tail = [t for t in self.log.tail(20) if t.strip()][-8:]
        return f"the replica {reason} before it was ready" + (": " + " | ".join(tail) if tail else "")

    async def _run_warm(self, warm: WarmStart) -> tuple[int, bool] | None:
        """Serve from a generic replica of the warm pool: specialise it, publish it, supervise it. None when it
        could not be specialised (it is stopped; the caller starts a regular replica at once)."""
        proc = warm.process
        proc.output.on_lines = lambda lines: self.log.write(self.instance, lines)
        self._transport = proc.transport
        was_ready = False
        try:
            problem = await proc.specialise(warm.env, warm.code)
            if problem or self.stopping:
                if problem:
                    self.log.write("stoker", [f"replica {self.instance}: warm start failed ({problem}); cold start"])
                await proc.discard()
                return None
            was_ready = True
            self.endpoint = Endpoint(self.instance, "127.0.0.1", proc.port)
            self.endpoints.append(self.endpoint)
            if not self.first_outcome.done():
                self.first_outcome.set_result(None)
            await proc.output.exited
        finally:
            self._unpublish(gone=True)
            self._transport = None
            proc.cleanup()
        code = proc.transport.get_returncode()
        proc.transport.close()
        return (code if code is not None else -1), was_ready

    async def _run_once(self) -> tuple[int, bool]:
        env = {**self.spec.env, "STOKER_INSTANCE": self.instance}
        transport, protocol, port = await spawn_runtime(
            self.spec.python, env, lambda lines: self.log.write(self.instance, lines)
        )
        self._transport = transport
        was_ready = False
        try:
            ready = asyncio.create_task(self._wait_ready(port))
            waiters: set[asyncio.Future[Any]] = {ready, protocol.exited}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and ready.result() and not self.stopping:
                was_ready = True
                self.endpoint = Endpoint(self.instance, "127.0.0.1", port)
                self.endpoints.append(self.endpoint)
                if not self.first_outcome.done():
                    self.first_outcome.set_result(None)
            ready.cancel()
            await protocol.exited
        finally:
            self._unpublish(gone=True)
            self._transport = None
            code = transport.get_returncode()
            transport.close()
        return (code if code is not None else -1), was_ready

    async def _wait_ready(self, port: int) -> bool:
        return await wait_ready("127.0.0.1", port, lambda: self.stopping)

    async def stop(self) -> None:
        """Drain and stop; returns when the process is gone."""
        deadline = await self._leave_and_drain()
        transport = self._transport
        if transport is None or transport.get_returncode() is not None:
            self._task.cancel()  # between two runs (backoff sleep): nothing to drain
        else:
            with contextlib.suppress(ProcessLookupError):
                transport.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    transport.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if not self.first_outcome.done():
            self.first_outcome.set_result("stopped before it was ready")


def default_python() -> str:
    return sys.executable
