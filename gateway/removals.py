"""Function removals that answer once the function gets no more traffic and drain in the background.

``DELETE /system/functions`` used to wait for the replicas to stop: up to the drain timeout, 29 s for a classic
watchdog that ignores SIGTERM. OpenFaaS answers 202 at once. Here the answer comes when the backend has taken the
function out of its routing table (calls get 404, listings leave it out) and the rest (in-flight calls finishing,
containers stopping, volumes and logs going) continues in a task.

A removal holds the function's deploy lock until it is complete, so a deploy of the same name waits for the old
replicas, log and volumes to be gone and then starts whole: never a new function whose log or secrets a draining
old one deletes under it. A deploy that waits is answered when it is done (docs/openfaas.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping

from runtime.backends.base import Backend
from stoker.errors import NotFound

logger = logging.getLogger(__name__)

POLL_S = 0.02  # how often a DELETE looks whether the backend has taken the function out of its table

Key = tuple[str, str]


class Removals:
    def __init__(
        self,
        backend: Backend,
        locks: MutableMapping[Key, asyncio.Lock],
        removed: Callable[[str, str], None],
    ) -> None:
        self.backend = backend
        self.locks = locks
        self.removed = removed  # called once a removal is complete
        self._tasks: set[asyncio.Task[None]] = set()
        self._answered: set[asyncio.Task[None]] = set()
        self._removing: set[Key] = set()

    async def remove(self, name: str, namespace: str) -> None:
        """Start removing the function; return once it receives no more traffic. Raises what the backend raises
        before that point (NotFound). A function this process does not route to (another gateway's, on Swarm or
        Kubernetes) is waited for until the backend's removal returns."""
        routed = self.backend.get(name, namespace) is not None
        if not routed and (name, namespace) in self._removing:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r} (it is being removed)")
        task = asyncio.create_task(self._remove(name, namespace), name=f"remove {name}.{namespace}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        while not task.done():
            if routed and self.backend.get(name, namespace) is None:
                self._answered.add(task)
                return
            await asyncio.wait({task}, timeout=POLL_S)
        task.result()

    async def close(self, timeout_s: float) -> None:
        """Let removals under way finish (a platform stopping mid-drain would leave containers to adopt again)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)

    async def _remove(self, name: str, namespace: str) -> None:
        key = (name, namespace)
        async with self.locks.setdefault(key, asyncio.Lock()):
            self._removing.add(key)
            try:
                await self.backend.remove(name, namespace)
            finally:
                self._removing.discard(key)
            self.removed(name, namespace)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        answered = task in self._answered
        self._answered.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here too: the DELETE that waited may have gone (client disconnected)
        if exc is not None and answered:  # else that DELETE answered with it
            logger.error("removing %s did not complete: %s", task.get_name().removeprefix("remove "), exc)
