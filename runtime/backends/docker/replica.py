"""One replica slot of the docker backend: a container, kept running.

The slot creates and starts a container (or adopts one a previous platform left), waits until ``/_/ready`` answers
(``/_/health`` for a classic-watchdog image, :func:`~runtime.backends.readiness.ready_path`)
at the container's address on the functions network, publishes an :class:`Endpoint`, and when the container exits,
removes it and starts a new one after an exponential backoff (the status message shows it). Stopping drains: the
endpoint leaves the routing list, requests in flight finish, then the container gets SIGTERM (SIGKILL after the
drain timeout) and is removed. A slot may start from a generic container of the warm pool (:class:`WarmContainer`):
its first run specialises that container instead of creating one; if that fails, and for every restart after, it
creates containers of the function's own image. Blocking Engine calls (wait, log streams) run in their own daemon
threads so a slow engine never blocks the gateway's event loop nor starves the default executor; so do stops
(:mod:`.engine_threads`), which wait up to the drain timeout for a container that ignores SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from runtime.backends.base import Endpoint
from runtime.backends.docker.pool import GenericContainer
from runtime.backends.engine_threads import STOPPING
from runtime.backends.logstore import FunctionLog
from runtime.backends.readiness import READY, wait_ready
from runtime.backends.restarts import exit_reason, failure_text, failures_after, restart_delay
from runtime.backends.slots import Published
from runtime.contract import PORT

READY_POLL_S = 0.05
T = TypeVar("T")

ADDRESS_WAIT_S = 10.0  # how long a started container may show no network address before it counts as failed


def in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run a blocking call in a new daemon thread; its result as a future of the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(settle, False, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, True, result)

    threading.Thread(target=run, daemon=True, name="stoker-docker").start()
    return future


@dataclass(frozen=True)
class WarmContainer:
    """A generic container to adopt and what to specialise it with."""

    container: GenericContainer
    env: dict[str, str]
    code: bytes
    limits: dict[str, int]


class ContainerSlot(Published):
    def __init__(
        self,
        instance: str,
        client: Any,
        spec: dict[str, Any],
        log: FunctionLog,
        endpoints: list[Endpoint],
        on_problem: Callable[[str], None],
        drain_timeout_s: float,
        adopt: str = "",
        warm: WarmContainer | None = None,
        on_gone: Callable[[Endpoint], None] | None = None,
        ready_path: str = READY,
    ) -> None:
        super().__init__(instance, log, endpoints, on_problem, drain_timeout_s, on_gone)
        self.client = client
        self.spec = spec
        self.ready_path = ready_path
        self.container_id = ""
        self._adopt = adopt
        self._warm = warm
        self._loop = asyncio.get_running_loop()
        self._serial = 0
        self._task = asyncio.create_task(self._run(), name=f"container {instance}")

    async def _run(self) -> None:
        failures = 0
        while not self.stopping:
            started = time.monotonic()
            warm, self._warm = self._warm, None
            try:
                outcome = await self._run_warm(warm) if warm is not None else None
                code, was_ready, tail = outcome if outcome is not None else await self._run_once()
            except Exception as exc:  # the engine refused (bad spec, missing image): report and retry later
                code, was_ready, tail = -1, False, [f"the Docker Engine refused: {str(exc).splitlines()[0][:300]}"]
            if self.stopping:
                break
            ran = time.monotonic() - started
            failures = failures_after(failures, code, was_ready, ran)
            reason = exit_reason(code, tail)
            if code == 137:
                reason += " (killed: out of memory or stopped from outside)"
            if not self.first_outcome.done():
                self.first_outcome.set_result(failure_text(code, reason, tail))
            delay = restart_delay(code, failures)
            self.restarts += 1
            self.on_problem(f"replica {self.instance} {reason}; restart {self.restarts} in {delay:.1f}s")
            self.log.write("stoker", [f"replica {self.instance} {reason}; restarting in {delay:.1f}s"])
            await asyncio.sleep(delay)

    async def _run_warm(self, warm: WarmContainer) -> tuple[int, bool, list[str]] | None:
        """Serve from a generic container: specialise it, publish it, supervise it. None when it could not be
        specialised (it is removed; the caller creates a regular container at once)."""
        api, cid = self.client.api, warm.container.cid
        self.container_id = cid
        since = int(time.time())  # its lines as a generic replica are not the function's
        problem = await warm.container.specialise(warm.env, warm.code, warm.limits)
        if problem or self.stopping:
            if problem:
                self.log.write("stoker", [f"replica {self.instance}: warm start failed ({problem}); cold start"])
            await warm.container.discard()
            self.container_id = ""
            return None
        exited = in_thread(lambda: api.wait(cid, condition="not-running"))
        in_thread(lambda: self._pump_logs(cid, since))
        self._publish(Endpoint(self.instance, warm.container.host, PORT))
        return await self._supervise(cid, exited, True)

    async def _run_once(self) -> tuple[int, bool, list[str]]:
        api = self.client.api
        since: int | None = None
        if self._adopt:
            cid, self._adopt = self._adopt, ""
            since = int(time.time())  # what it printed before is in the function log already (or gone)
            state = (await asyncio.to_thread(api.inspect_container, cid)).get("State") or {}
            if not state.get("Running"):
                await asyncio.to_thread(api.start, cid)
        else:
            self._serial += 1
            name = f"{self.instance}-{self._serial}"
            await asyncio.to_thread(_remove_quietly, self.client, name)  # a leftover of a crashed platform
            container = await asyncio.to_thread(self.client.containers.create, name=name, **self.spec)
            cid = container.id
            self.container_id = cid
            await asyncio.to_thread(api.start, cid)
        self.container_id = cid
        # Started first, then waited on: "not-running" answers at once for a container that exited already.
        exited = in_thread(lambda: api.wait(cid, condition="not-running"))
        host = await self._address(cid, exited)
        in_thread(lambda: self._pump_logs(cid, since))
        was_ready = False
        try:
            if host:
                ready = asyncio.ensure_future(self._wait_ready(host))
                await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
                if ready.done() and ready.result() and not self.stopping and not exited.done():
                    was_ready = True
                    self._publish(Endpoint(self.instance, host, PORT))
                ready.cancel()
            if not was_ready and not exited.done():
                # Stopped while it started, or no address to route to: a container left running here would never
                # be published, never fail and never be removed (the slot would wait on it for good).
                why = "stopped while starting" if self.stopping else "no network address"
                self.log.write("stoker", [f"replica {self.instance}: {why}; stopping its container"])
                with contextlib.suppress(Exception):
                    await STOPPING.run(api.stop, cid, timeout=1)
        except BaseException:
            self._unpublish()
            raise
        return await self._supervise(cid, exited, was_ready)

    async def _address(self, cid: str, exited: asyncio.Future[Any]) -> str:
        """The started container's address on its network; an engine just back from a stall may show it late."""
        deadline = time.monotonic() + ADDRESS_WAIT_S
        while True:
            info = await asyncio.to_thread(self.client.api.inspect_container, cid)
            networks = info.get("NetworkSettings", {}).get("Networks") or {}
            host = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
            if host or exited.done() or self.stopping or time.monotonic() >= deadline:
                return str(host or "")
            await asyncio.sleep(0.1)

    async def _supervise(self, cid: str, exited: asyncio.Future[Any], was_ready: bool) -> tuple[int, bool, list[str]]:
        """Wait for the container to exit, then collect its code and last lines and remove it."""
        try:
            with contextlib.suppress(Exception):
                await exited
        finally:
            self._unpublish(gone=True)
        code = -1
        with contextlib.suppress(Exception):
            code = int(exited.result()["StatusCode"])
        tail: list[str] = []
        with contextlib.suppress(Exception):
            raw = await asyncio.to_thread(self.client.api.logs, cid, stdout=True, stderr=True, tail=50)
            tail = raw.decode("utf-8", "replace").splitlines()
        await asyncio.to_thread(_remove_quietly, self.client, cid)
        self.container_id = ""
        return code, was_ready, tail

    def _pump_logs(self, cid: str, since: int | None) -> None:
        """Copy the container's output into the function log (in a thread: the stream blocks)."""
        loop = self._loop

        def loop_write(lines: list[str]) -> None:
            with contextlib.suppress(RuntimeError):  # the platform is gone
                loop.call_soon_threadsafe(self.log.write, self.instance, lines)

        partial = b""
        extra = {"since": since} if since is not None else {}
        with contextlib.suppress(Exception):
            for chunk in self.client.api.logs(cid, stream=True, follow=True, stdout=True, stderr=True, **extra):
                *lines, partial = (partial + chunk).split(b"\n")
                if lines:
                    loop_write([line.decode("utf-8", "replace").rstrip("\r") for line in lines])
        if partial:
            loop_write([partial.decode("utf-8", "replace")])

    async def _wait_ready(self, host: str) -> bool:
        return await wait_ready(host, PORT, lambda: self.stopping, READY_POLL_S, self.ready_path)

    async def stop(self) -> None:
        """Drain, stop and remove the container; returns when it is gone."""
        deadline = await self._leave_and_drain()
        cid = self.container_id
        if cid:
            grace = max(1, int(deadline - time.monotonic()))
            with contextlib.suppress(Exception):
                await STOPPING.run(self.client.api.stop, cid, timeout=grace)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for left in {cid, self.container_id} - {""}:  # also one created while this slot was stopping
            await STOPPING.run(_remove_quietly, self.client, left)
        if not self.first_outcome.done():
            self.first_outcome.set_result("stopped before it was ready")
        self.on_problem("")  # a stopped replica's problems are not the function's any more

    def detach(self) -> None:
        """Stop watching without touching the container (platform shutdown with ``on_shutdown=leave``)."""
        self.stopping = True
        self._unpublish()
        self._task.cancel()


def _remove_quietly(client: Any, name_or_id: str) -> None:
    with contextlib.suppress(Exception):
        client.api.remove_container(name_or_id, force=True)
