"""One replica slot of the local backend: a child process, kept running.

The slot starts ``python -m runtime`` (:mod:`runtime.backends.local.launch`: on a Unix socket of its own in the
platform's private folder, in a process group of its own, under the function's memory limit), waits for
``/_/ready``, publishes an :class:`Endpoint`, and restarts the process with exponential backoff when it exits;
whatever the process started is killed with it. Stopping drains: the endpoint leaves the routing list, the requests
in flight on it finish, then the process gets SIGTERM (SIGKILL after the drain timeout).

The supervisor never gives up: when no process can be started at all (the platform is out of file descriptors,
memory or processes), it says so in the function's status and log and tries again, backing off to
:data:`SPAWN_RETRY_MAX_S`, until it can.

A slot may start from a generic process of the warm pool (:class:`WarmStart`, :mod:`runtime.backends.pool`): its
first run specialises that process instead of starting one, which takes milliseconds rather than a process start; if
that fails, and for every restart after, the slot starts processes the regular way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runtime.backends.base import Endpoint
from runtime.backends.local.launch import Launcher, Spawned
from runtime.backends.logstore import FunctionLog
from runtime.backends.readiness import wait_ready
from runtime.backends.restarts import exit_reason, failure_text, failures_after, next_backoff, restart_delay
from runtime.backends.slots import Published

logger = logging.getLogger(__name__)

SPAWN_RETRY_MAX_S = 5.0  # no process could be started: the platform's trouble, not the function's; retry sooner


@dataclass(frozen=True)
class ProcessSpec:
    """How to start the replicas of one version of a function."""

    launcher: Launcher
    env: dict[str, str]
    cwd: Path  # the function's code folder
    memory: int | None = None  # limits.memory in bytes


class WarmProcess(Protocol):
    """A generic replica process from the warm pool (:class:`runtime.backends.local.pool.GenericProcess`)."""

    process: Spawned

    async def specialise(self, env: dict[str, str], code: bytes, memory: int | None) -> str: ...

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
        on_gone: Callable[[Endpoint], None] | None = None,
    ) -> None:
        super().__init__(instance, log, endpoints, on_problem, drain_timeout_s, on_gone)
        self.spec = spec
        self._transport: asyncio.SubprocessTransport | None = None
        self._warm = warm
        self._task = asyncio.create_task(self._run(), name=f"replica {instance}")

    async def _run(self) -> None:
        failures = 0
        warm, self._warm = self._warm, None
        while not self.stopping:
            started = time.monotonic()
            try:
                outcome = await self._run_warm(warm) if warm is not None else None
                warm = None
                if outcome is None and self.stopping:
                    break  # stopped while specialising: no cold start that nobody would stop
                code, was_ready = outcome if outcome is not None else await self._run_once()
            except Exception as exc:  # no process could be started (out of fds, memory, processes): retry
                warm = None
                if self.stopping:
                    break
                failures += 1
                delay = next_backoff(failures, SPAWN_RETRY_MAX_S)
                await self._retry(f"could not start a process ({_describe(exc)})", delay)
                continue
            if self.stopping:
                break
            ran = time.monotonic() - started
            failures = failures_after(failures, code, was_ready, ran)
            await self._retry(exit_reason(code, self.log.tail(50)), restart_delay(code, failures), code)

    async def _retry(self, reason: str, delay: float, code: int | None = None) -> None:
        """Report why the replica is not running (first outcome, status, log) and wait ``delay`` before the next try."""
        if not self.first_outcome.done():
            self.first_outcome.set_result(self._failure_text(code, reason))
        self.restarts += 1
        self.on_problem(f"replica {self.instance} {reason}; restart {self.restarts} in {delay:.1f}s")
        self.log.write("stoker", [f"replica {self.instance} {reason}; restarting in {delay:.1f}s"])
        if code is None:  # the platform's own trouble: its operator should see it, not only the function's owner
            logger.warning("replica %s %s; retrying in %.1fs", self.instance, reason, delay)
        await asyncio.sleep(delay)

    def _failure_text(self, code: int | None, reason: str) -> str:
        if code is None:
            return f"the replica {reason}"
        return failure_text(code, reason, self.log.tail(20))

    async def _run_warm(self, warm: WarmStart) -> tuple[int, bool] | None:
        """Serve from a generic replica of the warm pool: specialise it, publish it, supervise it. None when it
        could not be specialised (it is stopped; the caller starts a regular replica at once)."""
        proc = warm.process
        spawned = proc.process
        spawned.output.on_lines = lambda lines: self.log.write(self.instance, lines)
        self._transport = spawned.transport
        was_ready = False
        try:
            problem = await proc.specialise(warm.env, warm.code, self.spec.memory)
            if problem or self.stopping:
                if problem:
                    self.log.write("stoker", [f"replica {self.instance}: warm start failed ({problem}); cold start"])
                await proc.discard()
                return None
            was_ready = True
            self._publish(Endpoint(self.instance, spawned.address, 0))
            await spawned.output.exited
        finally:
            self._unpublish(gone=True)
            self._transport = None
            proc.cleanup()
        code = spawned.returncode()
        spawned.transport.close()
        return code, was_ready

    async def _run_once(self) -> tuple[int, bool]:
        env = {**self.spec.env, "STOKER_INSTANCE": self.instance}
        spec = self.spec
        spawned = await spec.launcher.spawn(
            env, lambda lines: self.log.write(self.instance, lines), spec.cwd, spec.memory
        )
        self._transport = spawned.transport
        was_ready = False
        try:
            ready = asyncio.create_task(wait_ready(spawned.address, 0, lambda: self.stopping))
            waiters: set[asyncio.Future[Any]] = {ready, spawned.output.exited}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and ready.result() and not self.stopping:
                was_ready = True
                self._publish(Endpoint(self.instance, spawned.address, 0))
            ready.cancel()
            await spawned.output.exited
        finally:
            self._unpublish(gone=True)
            self._transport = None
            code = spawned.returncode()
            spawned.transport.close()
            spawned.ended()
        return code, was_ready

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
        self.on_problem("")  # a stopped replica's problems are not the function's any more


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def default_python() -> str:
    return sys.executable
