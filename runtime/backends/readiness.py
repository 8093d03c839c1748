"""The probes backends run against replicas: ``GET /_/ready`` before routing to one (``/_/health`` for OpenFaaS
classic-watchdog images, :func:`ready_path`), ``/_/health`` for the pool.

For readiness 200 means ready and 429 ready but at its in-flight limit (it still counts: the gateway skips full
replicas itself); for health only 200 counts. A replica address is a host and port, or the path of a Unix socket
(local replicas, :mod:`runtime.backends.local.sockets`) with port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from runtime.contract import HEALTH_PATH, READY_PATH

READY, HEALTH = READY_PATH, HEALTH_PATH  # what ready_path answers

READY_POLL_S = 0.02
_PROBE_TIMEOUT_S = 2.0  # a replica on loopback or a bridge answers in milliseconds; a vanished address never does


def ready_path(image_env: Iterable[str]) -> str:
    """The path to probe before routing to a replica of an image with environment ``image_env`` (``NAME=value``
    entries, as the image's config lists them): ``/_/ready``, except for an OpenFaaS classic-watchdog image
    (``fprocess`` set and no of-watchdog ``mode``), whose watchdog runs the function for every path but
    ``/_/health``: probing ``/_/ready`` there would fork the function once per replica start."""
    names = {entry.partition("=")[0] for entry in image_env}
    return HEALTH if "fprocess" in names and "mode" not in names else READY


async def open_replica(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to a replica at ``host:port``, or at the Unix socket ``host`` when it is a path."""
    if host.startswith("/"):
        return await asyncio.open_unix_connection(host)
    return await asyncio.open_connection(host, port)


async def probe(host: str, port: int, path: str = READY_PATH) -> bool:
    """One ``GET path``: True when the replica answers 200 (or 429, for readiness)."""
    ok = ([b"200"], [b"429"]) if path == READY_PATH else ([b"200"],)
    request = f"GET {path} HTTP/1.1\r\nhost: replica\r\nconnection: close\r\n\r\n".encode()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            reader, writer = await open_replica(host, port)
            try:
                writer.write(request)
                status = await reader.readline()
            finally:
                writer.close()
        return status.split(b" ")[1:2] in ok
    return False


async def wait_ready(
    host: str, port: int, stopping: Callable[[], bool], poll_s: float = READY_POLL_S, path: str = READY
) -> bool:
    """Probe ``path`` until the replica is ready (True) or ``stopping()`` says to give up (False)."""
    while not stopping():
        if await probe(host, port, path):
            return True
        await asyncio.sleep(poll_s)
    return False
