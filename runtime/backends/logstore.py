"""Function logs: the recent lines in memory, all of them appended to a file, and live followers.

Replica output arrives in chunks (one pipe read may hold hundreds of per-call lines); a chunk is split, stamped
with one clock reading and stored in one go, so keeping logs costs the invoke path almost nothing.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path

from runtime.backends.base import LogLine

MAX_FILE_BYTES = 8 * 1024 * 1024  # per function; trimmed to the newer half when over


class FunctionLog:
    def __init__(self, name: str, namespace: str, path: Path, keep: int) -> None:
        self.name = name
        self.namespace = namespace
        self.path = path
        self.lines: deque[LogLine] = deque(maxlen=keep)
        self.followers: set[asyncio.Queue[LogLine | None]] = set()
        self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 -- open for the function's lifetime

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
        try:
            self._file.write(prefix + ("\n" + prefix).join(texts) + "\n")
            self._file.flush()
            if self._file.tell() > MAX_FILE_BYTES:
                self._trim()
        except OSError:
            pass  # disk full, or no file descriptor left for a trim: the lines are still in memory and followed

    def _trim(self) -> None:
        """Keep the newer half of the file. The old file stays open until the new one is, so a failure (no fd left)
        leaves the log writable as it was."""
        data = self.path.read_bytes()
        keep = data[len(data) // 2 :]
        keep = keep[keep.find(b"\n") + 1 :]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(keep)
        os.replace(tmp, self.path)
        old, self._file = self._file, open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        old.close()

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
        self._file.close()

    def delete(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
