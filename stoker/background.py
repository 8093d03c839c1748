"""Work that runs beside a component's requests: the one way it is started, kept and stopped.

:class:`BackgroundLoop` is one named task (an autoscaler tick loop, a pool refill, a counter publisher) started once
and stopped by cancelling it and waiting until it has ended. :class:`Background` is a set of fire-and-forget tasks
(retiring an old version, rolling a secret): each is referenced until it finishes (the event loop keeps only weak
references), and all are cancelled together when the component closes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any


class BackgroundLoop:
    """One background task made by ``run``; :meth:`start` is idempotent, :meth:`stop` waits for the end."""

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._run = run
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Background:
    """Fire-and-forget tasks of one component."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> list[asyncio.Task[Any]]:
        """Cancel every task; return them (to wait for, when the caller must)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def cancel_and_wait(self) -> None:
        for task in self.cancel():
            with contextlib.suppress(BaseException):
                await task
