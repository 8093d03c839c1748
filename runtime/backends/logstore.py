"""Function logs: the recent lines in memory, all of them appended to a file, and live followers.

Replica output arrives in chunks (one pipe read may hold hundreds of per-call lines); a chunk is split, stamped
with one clock reading and stored in one go, so keeping logs costs the invoke path almost nothing.

The file is private (0600). When it cannot be written (a full disk), lines still reach memory and followers; the
file misses them, which is said once on stderr, and writing resumes when the disk has room again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from runtime.backends.base import LogLine
from stoker.atomicfile import private_dir, write_atomic
from stoker.errors import StateNotSaved

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 8 * 1024 * 1024  # per function; trimmed to the newer half when over


class FunctionLog:
    def __init__(self, name: str, namespace: str, path: Path, keep: int) -> None:
        self.name = name
        self.namespace = namespace
        self.path = path
        self.lines: deque[LogLine] = deque(maxlen=keep)
        self.followers: set[asyncio.Queue[LogLine | None]] = set()
        self._load()
        private_dir(path.parent)
        self._fd = _open(path)
        self._size = os.fstat(self._fd).st_size
        self._failing = False

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                for raw in fh:
                    ts, _, rest = raw.rstrip("\n").partition("\t")
                    instance, _, text = rest.partition("\t")
                    try:
                        self.lines.append(LogLine(self.name, self.namespace, instance, float(ts), text))
                    except ValueError:
                        continue
        except OSError:
            pass

    def write(self, instance: str, texts: list[str], now: float | None = None) -> None:
        """Store lines printed by ``instance`` (a replica) and hand them to followers.

        File format, one line each: ``<unix time>\\t<instance>\\t<text>`` (text never holds a newline: it was
        split on them; a tab in it survives, as only the first two are separators)."""
        ts = time.time() if now is None else now
        name, namespace, append = self.name, self.namespace, self.lines.append
        lines = [LogLine(name, namespace, instance, ts, text) for text in texts]
        for line in lines:
            append(line)
        for queue in self.followers:
            for line in lines:
                queue.put_nowait(line)
        prefix = f"{ts:.6f}\t{instance}\t"
        data = (prefix + ("\n" + prefix).join(texts) + "\n").encode("utf-8", "surrogateescape")
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write: only on a nearly full disk
                written += os.write(self._fd, data[written:])
            self._size += written
            if self._size > MAX_FILE_BYTES:
                self._trim()
        except (OSError, StateNotSaved) as exc:
            self._failed(exc)
        else:
            self._failing = False

    def _failed(self, exc: Exception) -> None:
        with contextlib.suppress(OSError):  # a line written in part is taken back: the file holds whole lines
            os.ftruncate(self._fd, self._size)
        if not self._failing:
            logger.warning("log file %s is not being written: %s", self.path, exc)
        self._failing = True

    def _trim(self) -> None:
        data = self.path.read_bytes()
        keep = data[len(data) // 2 :]
        keep = keep[keep.find(b"\n") + 1 :]
        write_atomic(self.path, keep)
        # The old descriptor stays open until the new one is: with no descriptor left, the log stays writable.
        fd = _open(self.path)
        os.close(self._fd)
        self._fd = fd
        self._size = len(keep)

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` texts (for error messages)."""
        return [line.text for line in list(self.lines)[-lines:]]

    async def read(self, tail: int | None, since: float | None, follow: bool) -> AsyncIterator[LogLine]:
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        if follow:
            self.followers.add(queue)  # before the snapshot, so no line falls between the two
        try:
            snapshot = [line for line in self.lines if since is None or line.timestamp >= since]
            if tail is not None:
                snapshot = snapshot[-tail:] if tail else []
            for line in snapshot:
                yield line
            seen = snapshot[-1] if snapshot else None
            while follow:
                item = await queue.get()
                if item is None:
                    return
                if seen is not None and item.timestamp <= seen.timestamp and item in snapshot:
                    continue
                yield item
        finally:
            self.followers.discard(queue)

    def close(self) -> None:
        """Stop followers (their streams end) and close the file."""
        for queue in self.followers:
            queue.put_nowait(None)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def _open(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
