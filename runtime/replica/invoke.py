"""Run one call of the handler under the exec timeout, and stop the handler when the timeout passes.

Async handlers run as tasks on the event loop; sync handlers run in a thread pool (one thread per allowed
call). When a call passes its exec timeout, :meth:`Invoker.call` raises :class:`ExecTimeout` at once (the
replica answers 504 without waiting) and the handler is stopped:

- an async handler's task is cancelled;
- a sync handler gets a :class:`HandlerTimeout` (a ``TimeoutError``) injected into its thread with
  ``PyThreadState_SetAsyncExc``. Python raises it between two bytecodes, so pure-Python code (a busy loop, a
  parser) stops within milliseconds. Code blocked inside C (``time.sleep(3600)``, a socket read without a
  timeout, a C extension) does not see it until the C call returns.

A handler still running :data:`STOP_GRACE_S` after it was told to stop is *hung*: it holds a thread and an
in-flight slot the replica cannot take back. Python cannot kill a thread, so rather than keep serving with
less capacity and no one knowing, the invoker reports it to ``on_hung`` with the hung code's stack; the server
then marks the replica broken (``/_/ready`` answers 503), stops accepting connections, lets its other
in-flight calls finish and exits with code 4, and the supervising backend starts a fresh replica at once.

A timed-out call keeps counting in :attr:`Invoker.busy` until its handler has really stopped, so the in-flight
limit never admits more calls than there are threads to run them.
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from runtime.replica.loader import Handler
from runtime.replica.threads import HandlerThreads
from stoker.handler import Context, Event

STOP_GRACE_S = 1.0  # how long a stopped handler may take to unwind before it counts as hung


class HandlerTimeout(TimeoutError):
    """Raised inside a sync handler's thread when its call passed the exec timeout."""


class ExecTimeout(Exception):
    """Raised to the caller of :meth:`Invoker.call` when the handler passed the exec timeout."""


HungCallback = Callable[[str, str], None]  # (call_id, stack of the hung code)


class Invoker:
    """Runs calls of one handler, enforces the exec timeout and counts the handler runs not yet ended."""

    def __init__(
        self,
        handler: Handler,
        timeout_s: float,
        threads: int,
        on_hung: HungCallback,
        grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.busy = 0  # handler runs not yet ended, timed-out ones still unwinding included
        self.timeout_s = timeout_s
        self._fn = handler.fn
        self._is_async = handler.is_async
        self._on_hung = on_hung
        self._grace_s = grace_s
        self._threads = HandlerThreads(threads)
        self._reapers: set[asyncio.Task[None]] = set()

    async def call(self, event: Event, context: Context) -> Any:
        """The handler's return value; its exception; or :class:`ExecTimeout`."""
        job: _ThreadCall | None = None
        fut: asyncio.Future[Any]
        if self._is_async:
            fut = asyncio.ensure_future(self._fn(event, context))
        else:
            job = _ThreadCall(self._fn, event, context)
            fut = self._threads.submit(job.run)
        self.busy += 1
        # A bare waiter woken by the handler's end or by a timer: asyncio.wait() does this with more objects.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        fut.add_done_callback(lambda f: self._ended(f, waiter))
        timer = loop.call_later(self.timeout_s, _wake, waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # The server gave up on this call (drain timeout): stop the handler too.
            self._stop(fut, job, context.call_id)
            raise
        finally:
            timer.cancel()
        if fut.done():
            return fut.result()
        self._stop(fut, job, context.call_id)
        raise ExecTimeout(self.timeout_s)

    def close(self) -> bool:
        """Release the handler threads; True when no handler is still running."""
        self._threads.close()
        return self.busy == 0

    def _ended(self, fut: asyncio.Future[Any], waiter: asyncio.Future[None]) -> None:
        self.busy -= 1
        if not fut.cancelled():
            fut.exception()  # a timed-out call's error has no reader; mark it read so asyncio does not warn
        _wake(waiter)

    def _stop(self, fut: asyncio.Future[Any], job: _ThreadCall | None, call_id: str) -> None:
        if job is None:
            fut.cancel()
        else:
            job.interrupt()
        reaper = asyncio.get_running_loop().create_task(self._reap(fut, job, call_id))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    async def _reap(self, fut: asyncio.Future[Any], job: _ThreadCall | None, call_id: str) -> None:
        await asyncio.wait((fut,), timeout=self._grace_s)
        if not fut.done():
            self._on_hung(call_id, job.stack() if job else _task_stack(fut))


class _ThreadCall:
    """One sync call in a pool thread, and the means to interrupt exactly that call and nothing after it."""

    __slots__ = ("context", "event", "finished", "fn", "interrupted", "lock", "thread_id")

    def __init__(self, fn: Callable[..., Any], event: Event, context: Context) -> None:
        self.fn = fn
        self.event = event
        self.context = context
        self.lock = threading.Lock()
        self.thread_id: int | None = None
        self.interrupted = False
        self.finished = False

    def run(self) -> Any:
        with self.lock:
            if self.interrupted:
                raise HandlerTimeout("the call passed its exec timeout before it started")
            self.thread_id = threading.get_ident()
        try:
            return self.fn(self.event, self.context)
        finally:
            with self.lock:
                self.finished = True
                if self.interrupted:
                    # An injection not yet raised would hit the pool's own loop and kill the worker: drop it.
                    _set_async_exc(self.thread_id, None)

    def interrupt(self) -> None:
        # Under the lock so the exception lands in this call, never in a later call run by the same thread.
        with self.lock:
            if self.interrupted or self.finished:
                return
            self.interrupted = True
            if self.thread_id is not None:
                _set_async_exc(self.thread_id, HandlerTimeout)

    def stack(self) -> str:
        """Where the handler is now, from its own first frame down (the pool's own frames are noise)."""
        frame = sys._current_frames().get(self.thread_id or -1)
        if frame is None:
            return "(the thread has no Python frame)\n"
        frames = traceback.extract_stack(frame)
        ours = [i for i, f in enumerate(frames) if f.filename == __file__ and f.name == "run"]
        return "".join(traceback.format_list(frames[ours[-1] + 1 if ours else 0 :]))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _set_async_exc(thread_id: int | None, exc: type[BaseException] | None) -> None:
    if thread_id is None:
        return
    # A NULL exception (None) clears a pending one; py_object(None) would raise None instead.
    arg = ctypes.py_object(exc) if exc is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), arg)


def _task_stack(fut: asyncio.Future[Any]) -> str:
    out = io.StringIO()
    if isinstance(fut, asyncio.Task):
        fut.print_stack(file=out)
    return out.getvalue()
