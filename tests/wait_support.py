"""Waiting in tests: poll a condition until it holds, with a generous deadline and a message naming what was awaited
(never a fixed sleep), and a free local port. One copy for the whole suite (tests/chaos and tests/install keep their
own for now)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from stoker.processes import alive

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str = "the condition", poll_s: float = 0.05) -> T:
    """Call ``check`` until it returns something truthy, and return that; AssertionError after ``timeout`` seconds.
    ``check`` is always called at least once, and once more at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll_s)


def wait_until(check: Callable[[], object], timeout: float, what: str = "the condition", poll_s: float = 0.05) -> None:
    """:func:`wait_for` when the value does not matter."""
    wait_for(check, timeout, what, poll_s)


async def wait_until_async(
    check: Callable[[], object], timeout: float, what: str | Callable[[], str] = "the condition", poll_s: float = 0.02
) -> None:
    """:func:`wait_until` inside an event loop: the loop runs (the awaited work goes on) between the checks. ``what``
    may be a callable, asked only on time out (to say what the state was then)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g}s waiting for {said}")
        await asyncio.sleep(poll_s)


def still_running(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for the processes ``pids`` to end; those still running then ([] when none; a
    zombie has ended, see :func:`stoker.processes.alive`)."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice; free until someone binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
