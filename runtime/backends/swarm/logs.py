"""Function logs on Swarm: the service's logs as the managers collect them from every task (``docker service logs``).

Lines come with the engine's timestamp and the task they came from (the instance); ``follow`` polls for lines newer
than the last one seen, as the Kubernetes backend does, so no thread stays blocked on a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from runtime.backends.base import LogLine

FOLLOW_POLL_S = 1.0


def parse(raw: bytes, name: str, namespace: str) -> list[LogLine]:
    """Lines of ``service_logs(details=True, timestamps=True)``: ``<RFC 3339 time> <k=v,...> <text>``."""
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        stamp, _, rest = line.partition(" ")
        details, _, text = rest.partition(" ")
        try:
            when = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00" if "." in stamp else stamp).timestamp()
        except ValueError:
            continue
        fields = dict(part.partition("=")[::2] for part in details.split(","))
        instance = fields.get("com.docker.swarm.task.id", "")[:12] or "swarm"
        out.append(LogLine(name, namespace, instance, when, text))
    return out


def _read(api: Any, service_id: str, tail: int | None, since: float | None) -> bytes:
    chunks = api.service_logs(
        service_id, details=True, stdout=True, stderr=True, timestamps=True,
        tail="all" if tail is None else tail, since=int(since or 0),
    )  # fmt: skip
    return b"".join(chunks) if not isinstance(chunks, bytes) else chunks


def tail_lines(api: Any, service_id: str, count: int) -> list[str]:
    """The last ``count`` lines a service's tasks printed (for deploy failures); [] when unavailable."""
    try:
        return [line.text for line in parse(_read(api, service_id, count, None), "", "")]
    except Exception:  # the failure is reported either way
        return []


async def service_logs(
    api: Any, services: Callable[[], list[str]], name: str, namespace: str,
    tail: int | None, since: float | None, follow: bool,
) -> AsyncIterator[LogLine]:  # fmt: skip
    """Lines of a function's tasks, oldest first, merged across ``services()`` (its own service and the warm pool
    replicas that served it); with ``follow``, new ones until ``services()`` is empty (the function is gone)."""
    lines = await _read_all(api, services(), name, namespace, tail, since)
    lines = [line for line in lines if since is None or line.timestamp >= since]
    lines.sort(key=lambda line: line.timestamp)
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    seen = {(line.instance, line.timestamp, line.text) for line in lines}
    newest = max((line.timestamp for line in lines), default=since or 0.0)
    for line in lines:
        yield line
    while follow:
        await asyncio.sleep(FOLLOW_POLL_S)
        ids = services()
        if not ids:
            return
        for line in sorted(await _read_all(api, ids, name, namespace, None, newest), key=lambda line: line.timestamp):
            key = (line.instance, line.timestamp, line.text)
            if key not in seen and line.timestamp >= newest:
                seen.add(key)
                newest = max(newest, line.timestamp)
                yield line


async def _read_all(
    api: Any, ids: list[str], name: str, namespace: str, tail: int | None, since: float | None
) -> list[LogLine]:
    out: list[LogLine] = []
    for service_id in ids:
        try:
            out += parse(await asyncio.to_thread(_read, api, service_id, tail, since), name, namespace)
        except Exception:  # removed meanwhile (a pool replica whose time was up, the function itself)
            continue
    return out
