"""Group commit: many concurrent callers' small writes to the queue sent as one batch.

A queue worker settles each message with one small atomic step (ack it and store its result). Run one at a time, each
step costs a round trip to Redis (or a commit of SQLite) that is far dearer than the step. A :class:`Batcher` lets
every caller await its own step as before, while the steps submitted while a batch is being written go together in
the next one: one round trip for all of them, each step still atomic on its own. Under light load a batch is one step
and is sent at once (no timer, no added latency); under heavy load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Calls ``flush(items)`` with up to ``max_batch`` items at a time, one flush at a time; ``flush`` returns one
    result per item, in order, or one exception per item (an exception raised by ``flush`` goes to every item)."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R | BaseException]]], max_batch: int = 512) -> None:
        self._flush = flush
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and return its result (or raise its exception). A caller cancelled
        while waiting does not take its item back: it may be written anyway (callers already allow that: a reply
        lost on the way back looks the same)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
                try:
                    results = await self._flush([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} got {len(results)} results")
                except Exception as exc:
                    results = [exc] * len(batch)
                except BaseException:  # cancelled (shutdown): no caller may wait forever
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._task = None
            waiting, self._waiting = self._waiting, []  # left only when cancelled
            for _, future in waiting:
                future.cancel()
