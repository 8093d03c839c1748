"""One base-image build at a time, across threads and processes, its progress shown to whoever waits for it.

A build holds an exclusive ``flock`` on ``<dir>/base-image.lock``. Each build opens the file anew, and the kernel
ties a flock to that open file, so two threads of one process exclude each other exactly as two processes do; the
lock goes when its builder dies, however it dies. While a build holds it, the lock file names the build's progress
log (``base-image-<pid>-<random>.log`` beside it), to which every progress line goes as well as to the builder's own
output. A caller that finds the lock taken says so, then relays that log line by line to its own output until the
lock is its own. The lock file is emptied before the lock is released and the log removed (a waiter still reads the
file it has open), so a waiter never relays a finished build's lines.

The caller re-checks whether what it wanted to build exists once it holds the lock: the build it waited for has
usually made it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from builder.stream import Output

LOCK_NAME = "base-image.lock"
WAITING = "another base-image build is running on this machine; waiting for it (its progress follows)"


@contextlib.contextmanager
def one_build(directory: Path, out: Output, waiting: str = WAITING, poll_s: float = 0.2) -> Iterator[Output]:
    """Wait until no other build runs (saying ``waiting``, then relaying its progress to ``out``), then hold the lock
    for the ``with`` body, which gets an output that writes to ``out`` and to the progress log the waiters read."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        _acquire(fd, directory, out, waiting, poll_s)
        log_path = directory / f"base-image-{os.getpid()}-{secrets.token_hex(4)}.log"
        with log_path.open("w", encoding="utf-8") as log:
            os.ftruncate(fd, 0)
            os.pwrite(fd, log_path.name.encode(), 0)

            def say(line: str) -> None:
                out(line)
                log.write(line + "\n")
                log.flush()

            try:
                yield say
            finally:
                os.ftruncate(fd, 0)  # before the lock goes: the next waiter finds no stale log named
                log_path.unlink(missing_ok=True)
    finally:
        os.close(fd)  # releases the lock


def _acquire(fd: int, directory: Path, out: Output, waiting: str, poll_s: float) -> None:
    if _try_lock(fd):
        return
    out(waiting)
    tail = _Tail(directory)
    try:
        while not _try_lock(fd):
            tail.relay(fd, out)
            time.sleep(poll_s)  # a build takes minutes: a fifth of a second's delay in taking over costs nothing
        tail.drain(out)
    finally:
        tail.close()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class _Tail:
    """Follows the progress log the lock file names, from its first line, across builds that follow each other."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = ""
        self.file: IO[str] | None = None
        self.partial = ""

    def relay(self, fd: int, out: Output) -> None:
        name = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
        if name and name != self.name and "/" not in name:
            self.drain(out)  # the end of the build before, if it was followed
            self.close()
            with contextlib.suppress(OSError):  # gone already: that build ended between the two reads
                self.file = (self.directory / name).open(encoding="utf-8", errors="replace")
            self.name = name
        self.drain(out)

    def drain(self, out: Output) -> None:
        if self.file is None:
            return
        text = self.partial + self.file.read()
        *lines, self.partial = text.split("\n")
        for line in lines:
            out(line)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.partial = ""
