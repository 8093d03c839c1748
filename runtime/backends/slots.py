"""What the backends that supervise replica slots themselves (local processes, Docker containers) share.

A slot is one replica kept running (:class:`runtime.backends.local.replica.ReplicaSlot`,
:class:`runtime.backends.docker.replica.ContainerSlot`). :class:`SlotBackend` holds the function table and the reads
of the Backend interface, and the steps of a deploy both backends take the same way: refuse missing secrets, wait
for the first replica of a version, retire the least busy replicas on scale-down, stop an old version only once
the new one is ready, keep background work to cancel at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from runtime.backends.base import Endpoint, FunctionRecord, FunctionTable, LogLine, known
from runtime.backends.logstore import FunctionLog
from runtime.backends.secrets import SecretStore
from stoker.background import Background
from stoker.errors import InvalidRequest
from stoker.names import DEFAULT_NAMESPACE
from stoker.spec import FunctionDeployment


class Slot(Protocol):
    first_outcome: asyncio.Future[str | None]  # None once ready; why not, when the first start failed
    endpoint: Endpoint | None
    stopping: bool

    def _unpublish(self, gone: bool = False) -> None: ...

    async def stop(self) -> None: ...


class Published:
    """The routing side of a replica slot: its endpoint leaves the routing list, then its calls drain."""

    def __init__(
        self,
        instance: str,
        log: FunctionLog,
        endpoints: list[Endpoint],
        on_problem: Callable[[str], None],
        drain_timeout_s: float,
        on_gone: Callable[[Endpoint], None] | None = None,
    ) -> None:
        self.instance = instance
        self.on_gone = on_gone
        self.log = log
        self.endpoints = endpoints  # the function's routing list, shared with the gateway
        self.on_problem = on_problem
        self.drain_timeout_s = drain_timeout_s
        self.first_outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.endpoint: Endpoint | None = None
        self.stopping = False
        self.restarts = 0

    def _publish(self, endpoint: Endpoint) -> None:
        """Route to the replica now; it is ready, so a problem it reported before (a crash, a failed start) is over."""
        self.endpoint = endpoint
        self.endpoints.append(endpoint)
        if not self.first_outcome.done():
            self.first_outcome.set_result(None)
        self.on_problem("")

    def _unpublish(self, gone: bool = False) -> None:
        """Stop routing here; ``gone``: the replica exited, so the gateway fails what is in flight on it at once."""
        if self.endpoint is not None:
            with contextlib.suppress(ValueError):
                self.endpoints.remove(self.endpoint)
            if gone and self.on_gone is not None:
                self.on_gone(self.endpoint)
                self.endpoint = None  # its address may be reused by another replica soon

    async def _leave_and_drain(self) -> float:
        """Take the replica out of routing and wait (bounded) for its calls in flight; return the drain deadline."""
        self.stopping = True
        endpoint = self.endpoint
        self._unpublish()
        deadline = time.monotonic() + self.drain_timeout_s
        while endpoint is not None and endpoint.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return deadline


class Function(Protocol):
    record: FunctionRecord
    log: FunctionLog
    lock: asyncio.Lock
    slots: list[Any]  # the backend's own slot type


class FunctionEntry:
    """What a slot-supervising backend keeps of one function: its record (what the gateway reads), its log, its
    replica slots, the lock its changes take in turn, and the problems its replicas report.

    The status message (``record.message``) is the newest problem still standing: a replica's problem lasts until it
    is ready again or stopped (a failed update stops its new replicas, so their errors leave with them), a
    function-wide one (:meth:`note`) until the next successful deploy (:meth:`clear_problems`)."""

    def __init__(self, record: FunctionRecord, log: FunctionLog) -> None:
        self.record = record
        self.log = log
        self.lock = asyncio.Lock()
        self._problems: dict[str, str] = {}  # instance ("" for the function) -> its problem, oldest first

    def reporter(self, instance: str) -> Callable[[str], None]:
        """The ``on_problem`` of one replica slot: a message, or "" once that replica is fine again."""

        def report(message: str) -> None:
            self._problems.pop(instance, None)
            if message:
                self._problems[instance] = message
            self._show()

        return report

    def note(self, message: str) -> None:
        """A problem of the function as a whole (not of one replica)."""
        self.reporter("")(message)

    def clear_problems(self) -> None:
        self._problems.clear()
        self._show()

    def _show(self) -> None:
        self.record.message = next(reversed(self._problems.values()), "")

    @property
    def key(self) -> tuple[str, str]:
        return self.record.deployment.service, self.record.deployment.namespace


S = TypeVar("S", bound=Slot)
F = TypeVar("F", bound=Function)


def require_secrets(store: SecretStore, dep: FunctionDeployment) -> None:
    """InvalidRequest naming the secrets a deployment asks for that do not exist."""
    missing = store.missing(dep.secrets, dep.namespace)
    if missing:
        raise InvalidRequest(
            f"function {dep.service!r} needs secret(s) {', '.join(missing)} that do not exist in "
            f"{dep.namespace!r} (create them with 'stoker secret create')"
        )


async def first_outcome(slots: Sequence[Slot], timeout_s: float) -> str | None:
    """None once one replica is ready; the failure text when they all failed first (or the wait ran out)."""
    pending = {asyncio.ensure_future(slot.first_outcome) for slot in slots}
    deadline = time.monotonic() + timeout_s
    failure: str | None = "no replica became ready in time"
    while pending:
        done, pending = await asyncio.wait(
            pending, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            break
        for fut in done:
            if fut.result() is None:
                return None
            failure = fut.result()
    return failure


def retire_least_busy(slots: list[S], keep: int) -> tuple[list[S], list[S]]:
    """Split ``slots`` into those kept and those retired; the retired leave routing now and drain after."""
    ranked = sorted(slots, key=lambda s: s.endpoint.inflight if s.endpoint else -1)
    retired = ranked[: max(0, len(slots) - keep)]
    for slot in retired:
        slot.stopping = True
        slot._unpublish()
    return [s for s in slots if s not in retired], retired


async def stop_all(slots: Sequence[Slot]) -> None:
    await asyncio.gather(*(slot.stop() for slot in slots))


async def replace_when_ready(new: Sequence[Slot], old: Sequence[Slot], wait_s: float) -> None:
    """Stop the old version once the new one is ready (bounded), so capacity never drops."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.first_outcome for s in new)), wait_s)
    await stop_all(old)


class SlotBackend(FunctionTable[F]):
    """The function table, the Backend reads, and background work of a slot-supervising backend."""

    def __init__(self) -> None:
        self._functions: dict[tuple[str, str], F] = {}
        self._background = Background()
        self.on_replica_gone: Callable[[Endpoint], None] | None = None  # set by the gateway (ReportsGoneReplicas)

    def _replica_gone(self, endpoint: Endpoint) -> None:
        """A slot's replica exited: tell the gateway, which fails the calls in flight on it."""
        if self.on_replica_gone is not None:
            self.on_replica_gone(endpoint)

    def namespaces(self) -> list[str]:
        return sorted({DEFAULT_NAMESPACE, *(ns for _, ns in self._functions)})

    async def logs(
        self, name: str, namespace: str, tail: int | None, since: float | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        async for line in known(self._functions, name, namespace).log.read(tail, since, follow):
            yield line

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        fn = self._known(name, namespace)
        async with fn.lock:
            self._save(fn, replicas)  # saved first: a change that cannot be kept is not made either
            fn.record.replicas = replicas
            while len(fn.slots) < replicas:
                self._add_slot(fn, warm=True)
            if len(fn.slots) > replicas:  # the least busy go; the rest keep serving while these drain
                fn.slots, retired = retire_least_busy(fn.slots, replicas)
                self._in_background(stop_all(retired))

    def _save(self, fn: F, replicas: int | None = None) -> None:
        """Keep the function's state (its desired replicas) where a restarted platform finds it."""
        raise NotImplementedError

    def _add_slot(self, fn: F, *, warm: bool = False) -> None:
        """Start one more replica slot (from the warm pool when ``warm`` and one fits)."""
        raise NotImplementedError

    def _in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._background.spawn(coro)

    def _cancel_background(self) -> None:
        self._background.cancel()
