"""A redis-server of a test's own, durable on every write (append-only, fsync always), for tests that stop or
SIGKILL it mid-test and start it again on the same port and data: ``durable_redis()`` starts it (again), and
``durable_redis.port`` is where it listens."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.wait_support import free_port


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.BusyLoadingError):
        return False


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    port, folder = free_port(), tmp_path / "redis"
    folder.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 20
        while not _pings(client):
            assert time.monotonic() < deadline, "timed out waiting for redis-server"
            time.sleep(0.05)
        return proc

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
