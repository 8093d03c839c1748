"""Group commit (events/batch.py): callers awaiting their own step, steps sent together."""

from __future__ import annotations

import asyncio

import pytest

from events.batch import Batcher


class Store:
    """A flush that records its batches and answers each item (an item "bad" gets its own error)."""

    def __init__(self, fail_batches: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.fail_batches = fail_batches

    async def flush(self, items: list[str]) -> list[str | BaseException]:
        self.batches.append(items)
        await asyncio.sleep(0.001)  # a round trip: callers arriving meanwhile form the next batch
        if len(self.batches) <= self.fail_batches:
            raise ConnectionError("store away")
        return [ValueError(item) if item == "bad" else item.upper() for item in items]


async def test_concurrent_steps_go_in_few_batches_and_each_caller_gets_its_own_answer() -> None:
    store = Store()
    batcher = Batcher(store.flush, max_batch=50)
    items = [f"m{i}" for i in range(200)]
    assert await asyncio.gather(*(batcher.submit(i) for i in items)) == [i.upper() for i in items]
    assert sorted(i for batch in store.batches for i in batch) == sorted(items)  # each once
    assert len(store.batches) <= 5 and max(len(b) for b in store.batches) == 50
    assert await batcher.submit("alone") == "ALONE"  # light load: a batch of one, sent at once
    assert store.batches[-1] == ["alone"]


async def test_an_item_error_goes_to_its_caller_only() -> None:
    batcher = Batcher(Store().flush)
    good, bad = await asyncio.gather(batcher.submit("good"), batcher.submit("bad"), return_exceptions=True)
    assert good == "GOOD" and isinstance(bad, ValueError)


async def test_a_failed_flush_fails_its_batch_and_the_next_batch_goes_on() -> None:
    store = Store(fail_batches=1)
    batcher = Batcher(store.flush)
    first = [asyncio.ensure_future(batcher.submit(f"a{i}")) for i in range(3)]
    await asyncio.sleep(0)  # the first batch (a0..a2) is being written
    second = [asyncio.ensure_future(batcher.submit(f"b{i}")) for i in range(3)]
    results = await asyncio.gather(*first, *second, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results[:3])
    assert results[3:] == ["B0", "B1", "B2"]


async def test_a_cancelled_caller_leaves_the_others_answered() -> None:
    batcher = Batcher(Store().flush)
    leaving = asyncio.ensure_future(batcher.submit("x"))
    staying = asyncio.ensure_future(batcher.submit("y"))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == "Y"
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert await batcher.submit("z") == "Z"  # and the batcher still works
