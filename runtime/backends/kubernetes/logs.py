"""Function logs on Kubernetes: the container logs of every pod of a function, merged by time.

The API server stamps each line (``timestamps=true``), which orders lines across pods. ``follow`` polls every
second for lines newer than the last one seen per pod, rather than holding one streaming connection per pod: pods
come and go with scaling, and a poll picks the new ones up without bookkeeping.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Protocol

from runtime.backends.base import FunctionRecord, LogLine
from runtime.backends.kubernetes.clients import KubeClients
from runtime.backends.kubernetes.objects import FUNCTION_LABEL
from runtime.backends.kubernetes.pool import CONTAINER, POOL_LABEL
from runtime.backends.kubernetes.status import parse_time

FOLLOW_POLL_S = 1.0


class LogSource(Protocol):
    """What reading logs needs of the backend: its API clients and whether the function still exists."""

    @property
    def clients(self) -> KubeClients: ...

    def get(self, name: str, namespace: str) -> FunctionRecord | None: ...


def parse_lines(text: str, name: str, namespace: str, pod: str) -> list[LogLine]:
    """``<RFC 3339 time> <text>`` lines as :class:`LogLine`; a line without a readable time keeps the previous one."""
    out: list[LogLine] = []
    last = 0.0
    for raw in text.splitlines():
        stamp, _, rest = raw.partition(" ")
        ts = parse_time(stamp)
        if ts:
            last = ts
        else:
            rest = raw
        out.append(LogLine(name, namespace, pod, last, rest))
    return out


async def _read_all(
    backend: LogSource, name: str, namespace: str, tail: int | None, since: float | None
) -> list[LogLine]:
    core = backend.clients.core
    pods = (await backend.clients.call(core.list_namespaced_pod, namespace, label_selector=f"{FUNCTION_LABEL}={name}"))[
        "items"
    ]
    lines: list[LogLine] = []
    for pod in pods:
        pod_name = pod["metadata"]["name"]
        bridge = POOL_LABEL in (pod["metadata"].get("labels") or {})  # a pool pod's container has another name
        kwargs: dict[str, object] = {"container": CONTAINER if bridge else name, "timestamps": True}
        if tail is not None:
            kwargs["tail_lines"] = tail
        if since is not None:
            kwargs["since_seconds"] = max(1, math.ceil(time.time() - since))
        try:
            text = await asyncio.to_thread(core.read_namespaced_pod_log, pod_name, namespace, **kwargs)
        except Exception as exc:
            if getattr(exc, "status", None) in (400, 404):
                continue  # the container has not started yet, or the pod just went away
            raise
        lines += [
            line
            for line in parse_lines(text or "", name, namespace, pod_name)
            if since is None or line.timestamp >= since
        ]
    lines.sort(key=lambda line: line.timestamp)
    return lines[-tail:] if tail is not None and tail > 0 else ([] if tail == 0 else lines)


async def read_logs(
    backend: LogSource, name: str, namespace: str, tail: int | None, since: float | None, follow: bool
) -> AsyncIterator[LogLine]:
    """Lines of a function's pods, oldest first; with ``follow``, new lines until the function is removed."""
    lines = await _read_all(backend, name, namespace, tail, since)
    seen = {(line.instance, line.timestamp, line.text) for line in lines}
    newest = max((line.timestamp for line in lines), default=since or time.time())
    for line in lines:
        yield line
    while follow and backend.get(name, namespace) is not None:
        await asyncio.sleep(FOLLOW_POLL_S)
        for line in await _read_all(backend, name, namespace, None, newest):
            key = (line.instance, line.timestamp, line.text)
            if key not in seen:
                seen.add(key)
                newest = max(newest, line.timestamp)
                yield line
        seen = {key for key in seen if key[1] >= newest}  # older lines cannot come back: the next read starts here
