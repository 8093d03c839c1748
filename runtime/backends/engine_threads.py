"""Bounded thread pools for blocking orchestrator calls, one per kind of work.

``asyncio.to_thread`` shares the loop's default executor: ``min(32, cores + 4)`` threads, 6 on 2 cores. A
``docker stop`` of a function that ignores SIGTERM blocks its thread for the whole drain timeout, so 6 removals
used to hold every thread and an unrelated deploy waited behind them (issue 15: 27.8 s instead of 0.5 s). Calls
that wait for something to stop run in :data:`STOPPING`; the default executor stays free for the short calls that
requests make (inspect, create, start, list). Each pool is bounded: past its size, calls of that kind queue behind
one another, never in front of other kinds.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThreads:
    """A bounded pool for one kind of blocking call, started lazily (threads are made on demand)."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in one of this pool's threads."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=self.name)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))


#: Calls that wait for replicas to stop and for their resources to go (``docker stop`` waits up to the drain
#: timeout; removing a container or volume follows it).
STOPPING = EngineThreads("stoker-stopping", 32)
