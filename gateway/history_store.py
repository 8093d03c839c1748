"""Where deploy history is kept (:mod:`gateway.history`): the last :data:`~gateway.history.KEEP` entries per function,
in Redis when the platform has one (every gateway sees the same history, and it survives restarts of them all), else
in ``STOKER_HOME/history/<namespace>.<name>.json`` (written atomically, private to the platform's user).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from events.queue import QueueUnavailable
from gateway.history import KEEP, Action, entry
from stoker.atomicfile import write_atomic
from stoker.credentials import USERNAME
from stoker.errors import StokerError
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)

Entry = dict[str, Any]
PREFIX = "stoker:history:"


class HistoryStore(Protocol):
    async def add(self, name: str, namespace: str, entry: Entry) -> None:
        """Keep ``entry`` as the newest of the function's; raises when the store cannot write."""

    async def entries(self, name: str, namespace: str) -> list[Entry]:
        """Newest first; [] for a function with no history. Raises :class:`QueueUnavailable` (503) when Redis does not
        answer."""


class RedisHistory:
    """One list per function (``LPUSH`` then ``LTRIM``, in one transaction)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    @staticmethod
    def key(name: str, namespace: str) -> str:
        return f"{PREFIX}{namespace}:{name}"  # both are DNS labels: no ':' in either

    async def add(self, name: str, namespace: str, entry: Entry) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key(name, namespace), json.dumps(entry, separators=(",", ":")))
            pipe.ltrim(self.key(name, namespace), 0, KEEP - 1)
            await pipe.execute()

    async def entries(self, name: str, namespace: str) -> list[Entry]:
        try:
            raws = await self.redis.lrange(self.key(name, namespace), 0, KEEP - 1)
        except Exception as exc:
            raise QueueUnavailable(f"deploy history not readable: {exc}") from None
        return [e for e in (_decode(r) for r in raws) if e is not None]


class FileHistory:
    """One JSON file per function under ``folder``; one writer at a time (the platform holds STOKER_HOME's lock)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = asyncio.Lock()

    def path(self, name: str, namespace: str) -> Path:
        return self.folder / f"{namespace}.{name}.json"  # DNS labels have no dot: unambiguous

    async def add(self, name: str, namespace: str, entry: Entry) -> None:
        async with self._lock:  # read, add, write: two changes at once must not lose one
            await asyncio.to_thread(self._add, self.path(name, namespace), entry)

    @staticmethod
    def _add(path: Path, entry: Entry) -> None:
        kept = [entry, *_read(path)][:KEEP]
        write_atomic(path, json.dumps(kept, separators=(",", ":")).encode())

    async def entries(self, name: str, namespace: str) -> list[Entry]:
        return await asyncio.to_thread(_read, self.path(name, namespace))


class Recorder:
    """What the management API calls: :meth:`note` a change (never failing it), :meth:`last_code` for a diff."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store

    async def note(
        self,
        action: Action,
        name: str,
        namespace: str,
        via: str,
        status: int,
        error: str = "",
        code: str = "",
        change: list[str] | None = None,
    ) -> None:
        """Add to the function's history; a store that cannot write loses the entry, never the change itself."""
        record = entry(action, time.time(), USERNAME, via, status, error, code, change)
        try:
            await self.store.add(name, namespace, record)
        except Exception as exc:
            logger.warning("deploy history of %s.%s not kept (%s): %s", name, namespace, action, exc)

    async def last_code(self, before: FunctionDeployment) -> str:
        """What the function ran before: its image, else the source digest its last good deploy recorded."""
        if before.image:
            return f"image:{before.image}"
        try:
            for e in await self.store.entries(before.service, before.namespace):
                code = str(e.get("code", ""))
                if e.get("result") == "ok" and code.startswith("source:"):
                    return code
        except StokerError:  # Redis down: QueueUnavailable
            pass
        return "source:unknown"


def _read(path: Path) -> list[Entry]:
    """The entries in ``path``; a missing or damaged file is no history (a damaged one is replaced on the next add)."""
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def _decode(raw: bytes | str) -> Entry | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
