from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.queue import Queue
from events.redis_queue import RedisQueue
from events.sqlite_queue import SQLiteQueue
from tests.redis_support import shared_redis_url


def redis_url() -> str:
    return shared_redis_url()


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
