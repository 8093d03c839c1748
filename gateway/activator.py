"""The wait line for requests that find no ready replica: at zero, starting, or all at their in-flight limit.

Each function gets a bounded FIFO of waiting requests and, while it is not empty, one dispatcher task that hands
each waiter a replica as soon as one can take it (it reserves the replica by counting the request in flight before
the waiter wakes, so two waiters never race for the last slot). When the function has too little capacity the
dispatcher asks for more through ``scale_up``, at most one request per function at a time: fifty requests at zero
replicas cause one scale-up, and all fifty share it (Fission's one-cold-start-per-function rule).

Answers instead of hangs: a full line gives 503 with ``Retry-After``; a wait longer than the function's timeout 504;
a function removed while its requests wait 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from gateway.routing import choose
from runtime.backends.base import Endpoint, FunctionLookup, FunctionRecord

POLL_S = 0.002  # how often a dispatcher looks for capacity while requests wait (only then)

ScaleUp = Callable[[FunctionRecord, int, str], Coroutine[Any, Any, None]]


class Unavailable(Exception):
    """No replica for this request: ``status`` (503, 504 or 404) and a message for the caller."""

    def __init__(self, status: int, message: str, retry_after: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass
class _Line:
    waiters: deque[asyncio.Future[Endpoint]] = field(default_factory=deque)
    dispatcher: asyncio.Task[None] | None = None
    scaling: asyncio.Task[None] | None = None


class Activator:
    """Per-function wait lines in front of the backend's replicas."""

    def __init__(self, backend: FunctionLookup, queue_size: int, scale_up: ScaleUp) -> None:
        self.backend = backend
        self.queue_size = queue_size
        self.scale_up = scale_up
        self._lines: dict[tuple[str, str], _Line] = {}
        self._turn = 0

    def waiting(self, name: str, namespace: str) -> int:
        """Requests waiting for a replica of this function now."""
        line = self._lines.get((name, namespace))
        return len(line.waiters) if line is not None else 0

    def lines(self) -> dict[tuple[str, str], int]:
        """Waiting requests per function, for the metrics."""
        return {key: len(line.waiters) for key, line in self._lines.items()}

    async def acquire(self, record: FunctionRecord) -> Endpoint:
        """Wait for a replica of ``record``'s function; it comes reserved (its ``inflight`` already counts this
        request, so the caller must decrement it when done). Raises :class:`Unavailable`."""
        dep = record.deployment
        key = (dep.service, dep.namespace)
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line()
        if len(line.waiters) >= self.queue_size:
            raise Unavailable(
                503,
                f"function {dep.service!r} has {len(line.waiters)} requests waiting for a replica, the most allowed "
                "(STOKER_WAIT_QUEUE_SIZE); retry later",
                retry_after=True,
            )
        waiter: asyncio.Future[Endpoint] = asyncio.get_running_loop().create_future()
        line.waiters.append(waiter)
        if line.dispatcher is None or line.dispatcher.done():
            line.dispatcher = asyncio.create_task(self._dispatch(key, line), name=f"activator {dep.service}")
        timeout = dep.settings.timeout_s
        try:
            await asyncio.wait((waiter,), timeout=timeout)
        except asyncio.CancelledError:
            _abandon(line, waiter)
            raise
        if waiter.done():
            return waiter.result()
        _abandon(line, waiter)
        raise Unavailable(504, f"function {dep.service!r}: no replica became ready within its timeout ({timeout:g}s)")

    async def close(self) -> None:
        """Stop the dispatchers; requests still waiting get 503."""
        for line in self._lines.values():
            for task in (line.dispatcher, line.scaling):
                if task is not None:
                    task.cancel()
            _fail_all(line, Unavailable(503, "the platform is shutting down", retry_after=True))
        self._lines.clear()

    async def _dispatch(self, key: tuple[str, str], line: _Line) -> None:
        try:
            while line.waiters:
                record = self.backend.get(*key)
                if record is None:
                    _fail_all(line, Unavailable(404, f"function {key[0]!r} was removed while the request waited"))
                    break
                limit = record.deployment.settings.concurrency
                while line.waiters:
                    head = line.waiters[0]
                    if head.done():  # timed out or abandoned
                        line.waiters.popleft()
                        continue
                    self._turn += 1
                    endpoint = choose(record.endpoints, self._turn, limit)
                    if endpoint is None:
                        break
                    endpoint.inflight += 1  # reserved before the waiter runs
                    line.waiters.popleft()
                    head.set_result(endpoint)
                if not line.waiters:
                    break
                self._maybe_scale(record, line, limit)
                await asyncio.sleep(POLL_S)
        finally:
            if not line.waiters and self._lines.get(key) is line:
                del self._lines[key]

    def _maybe_scale(self, record: FunctionRecord, line: _Line, limit: int) -> None:
        """Ask for capacity when the replicas asked for so far cannot take the waiting requests."""
        if line.scaling is not None and not line.scaling.done():
            return  # one scale-up per function at a time; the waiters share it
        settings = record.deployment.settings
        waiting = len(line.waiters)
        if record.replicas == 0:
            want = max(1, math.ceil(waiting / limit)) if limit else 1
            reason = f"{waiting} request(s) waiting at zero replicas"
        elif limit:
            busy = sum(e.inflight for e in record.endpoints)
            want = math.ceil((busy + waiting) / limit)
            reason = f"{waiting} request(s) waiting, {busy} in flight at the limit of {limit} per replica"
        else:
            return  # replicas are starting (or restarting); nothing more to ask for
        want = min(want, settings.max_replicas)
        if want <= record.replicas:
            return
        line.scaling = asyncio.create_task(self.scale_up(record, want, reason))


def _abandon(line: _Line, waiter: asyncio.Future[Endpoint]) -> None:
    """Take a waiter out of the line; if a replica was handed to it meanwhile, give the reservation back."""
    if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
        waiter.result().inflight -= 1
    waiter.cancel()
    with contextlib.suppress(ValueError):
        line.waiters.remove(waiter)


def _fail_all(line: _Line, error: Unavailable) -> None:
    while line.waiters:
        waiter = line.waiters.popleft()
        if not waiter.done():
            waiter.set_exception(error)
