from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.queue import Queue
from events.redis_queue import RedisQueue
from events.sqlite_queue import SQLiteQueue


def redis_url() -> str:
    url = os.environ.get("STOKER_TEST_REDIS_URL", "")
    if not url:
        pytest.skip("STOKER_TEST_REDIS_URL is not set (scripts/test starts a redis-server and sets it)")
    return url


@pytest.fixture(params=["embedded", "redis"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    """Each queue backend, real: SQLite in a temporary folder, the redis-server scripts/test started."""
    q: Queue = SQLiteQueue(tmp_path / "queue.db") if request.param == "embedded" else RedisQueue(redis_url())
    yield q
    await q.close()


@pytest.fixture
def name() -> str:
    """A unique function name, so tests sharing one redis-server never see each other's streams."""
    return f"t{uuid.uuid4().hex[:10]}.openfaas-fn"
