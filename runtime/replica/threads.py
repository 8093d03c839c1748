"""The threads that run sync handlers: one queue, up to ``size`` threads started on demand, results delivered
straight to asyncio futures.

Why not ``loop.run_in_executor``: ``ThreadPoolExecutor`` makes a ``concurrent.futures.Future`` (with its
condition variable and lock) and a work item per call, and ``wrap_future`` chains a second future to it; this
pool hands the result to the loop's own future in one ``call_soon_threadsafe``. The thread hop is most of a
trivial sync call's cost: on 2 cores this took a ``return "hello"`` replica from about 10-12k to 15-18k req/s.

The threads are daemons: a handler stuck in C (see :mod:`runtime.replica.invoke`) cannot keep the process from
exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import resource
import threading
from collections.abc import Callable
from typing import Any

LIMITED_STACK_BYTES = 1024 * 1024  # deep enough for the default recursion limit (1000 frames), with C calls between

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]


def fit_stacks_to_limit() -> bool:
    """Under a data limit (a local replica with ``limits.memory``, :mod:`runtime.backends.local.limits`) give new
    threads 1 MiB stacks: a thread's whole stack counts against the limit, and 64 threads of the default 8 MiB would
    take 512 MiB of it. True when it did."""
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if soft == resource.RLIM_INFINITY:
        return False
    threading.stack_size(LIMITED_STACK_BYTES)
    return True


class HandlerThreads:
    """Run callables in at most ``size`` threads; each call's context variables go with it."""

    def __init__(self, size: int, name: str = "stoker-handler") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        # Calls submitted and not yet seen finished; only touched on the loop thread.
        self._outstanding = 0

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """A future for ``fn()`` run in a pool thread. Call from the event loop's thread."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        fut.add_done_callback(self._finished)
        self._outstanding += 1
        if self._outstanding > len(self._threads) and len(self._threads) < self._size:
            name = f"{self._name}-{len(self._threads)}"
            thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        self._queue.put((loop, fut, contextvars.copy_context(), fn))
        return fut

    def close(self) -> None:
        """Let idle threads end; a thread still running a call ends when that call returns."""
        for _ in self._threads:
            self._queue.put(None)

    def _finished(self, fut: asyncio.Future[Any]) -> None:
        self._outstanding -= 1

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            _run(*job)
            del job  # do not keep the last call's event and result alive while idle


def _run(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], ctx: contextvars.Context, fn: Callable[[], Any]
) -> None:
    try:
        result = ctx.run(fn)
    except BaseException as exc:  # the caller decides what a handler's SystemExit means
        deliver: Callable[..., None] = _set_exception
        value: Any = exc
    else:
        deliver, value = _set_result, result
    # RuntimeError: the loop is closed, a call stuck past shutdown has no one left to answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(deliver, fut, value)


def _set_result(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
