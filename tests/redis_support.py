"""Redis for the tests.

``shared_redis_url()``: the suite's redis-server (scripts/setup.d/30-redis.sh) on a database of the caller's own.
Platforms on one Redis database are one platform: they share the callback outbox, the autoscaler's leader lease, the
triggers and the deploy history. A test on the same database as another run's platform (or a platform an earlier test
SIGKILLed, whose lease is still held) would see its callbacks delivered under another policy or its autoscaler never
lead, so every caller gets a database nobody else is using: a counter in database 0 hands them out in turn, across
concurrent runs too, and each is flushed when handed out.

``durable_redis``: a redis-server of a test's own, durable on every write (append-only, fsync always), for tests that
stop or SIGKILL it mid-test and start it again on the same port and data: ``durable_redis()`` starts it (again), and
``durable_redis.port`` is where it listens."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.wait_support import free_port

_NEXT_DB = "stoker-test:next-db"


def shared_redis_url() -> str:
    """``STOKER_TEST_REDIS_URL`` on a fresh database of its own (see the module's docstring); skips where unset."""
    url = os.environ.get("STOKER_TEST_REDIS_URL", "")
    if not url:
        pytest.skip("STOKER_TEST_REDIS_URL is not set (scripts/test starts a redis-server and sets it)")
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    with redis.Redis.from_url(f"{base}/0") as admin:
        databases = int(admin.config_get("databases")["databases"])  # type: ignore[index]
        db = 1 + (int(admin.incr(_NEXT_DB)) - 1) % (databases - 1)  # type: ignore[arg-type]
    with redis.Redis.from_url(f"{base}/{db}") as fresh:
        fresh.flushdb()
    return f"{base}/{db}"


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
