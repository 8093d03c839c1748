"""How ``.map()`` sizes and builds its chunks: the pure policy (fed with measurements, no clock) and the chunker."""

from __future__ import annotations

import itertools
import threading

import pytest

from stoker.sdk.batching import Chunk, chunks
from stoker.sdk.chunking import ChunkPolicy, ChunkSizer
from stoker.sdk.serialization import encode_call


def test_one_item_until_measured_then_many_for_a_trivial_function() -> None:
    sizer = ChunkSizer(workers=32, timeout_s=60)
    assert not sizer.measured and sizer.size() == 1
    sizer.record(1, work_s=0.00005, round_trip_s=0.001, reply_bytes=10)
    assert sizer.measured
    # 50 us per item (a probe of one pays the batch's own costs too), 0.95 ms overhead: 9.5 ms of work = 190 items.
    assert 190 <= sizer.size() <= 191
    for _ in range(20):
        sizer.record(2000, work_s=0.02, round_trip_s=0.021, reply_bytes=20_000)  # 10 us per item
    assert sizer.size() > 800


def test_a_slow_function_goes_one_item_per_request() -> None:
    sizer = ChunkSizer(workers=32, timeout_s=60)
    for _ in range(5):
        sizer.record(1, work_s=0.010, round_trip_s=0.011, reply_bytes=10)
    assert sizer.size() == 1


def test_work_replies_and_items_are_capped() -> None:
    policy = ChunkPolicy(max_items=100, max_bytes=1000, max_seconds=0.25)
    sizer = ChunkSizer(workers=1, timeout_s=60, policy=policy)
    sizer.record(10, work_s=0.0001, round_trip_s=0.1, reply_bytes=10)  # huge overhead: wants thousands
    assert sizer.size() == 100
    big = ChunkSizer(workers=1, timeout_s=60, policy=policy)
    big.record(10, work_s=0.0001, round_trip_s=0.1, reply_bytes=2000)  # 200 bytes per reply: 5 fit in 1000
    assert big.size() == 5
    slow = ChunkSizer(workers=1, timeout_s=60)
    slow.record(10, work_s=0.1, round_trip_s=10, reply_bytes=10)  # 10 ms per item, 0.25 s of work at most
    assert slow.size() == 25
    short = ChunkSizer(workers=1, timeout_s=0.5)
    short.record(10, work_s=0.1, round_trip_s=10, reply_bytes=10)  # a tenth of a 0.5 s timeout: 5 items
    assert short.size() == 5


def test_guided_by_what_is_left_but_not_below_the_overhead() -> None:
    sizer = ChunkSizer(workers=4, timeout_s=60)
    sizer.record(100, work_s=0.001, round_trip_s=0.002, reply_bytes=100)  # 10 us per item, 1 ms overhead
    assert sizer.size() == 1000
    assert sizer.size(left=4000) == 500  # 4000 / (2 x 4 workers)
    assert sizer.size(left=400) == 100  # not below 1 ms of work per 1 ms of overhead
    assert sizer.size(left=3) == 3


def test_refusals_shrink_the_next_chunks() -> None:
    sizer = ChunkSizer(workers=1, timeout_s=10)
    sizer.record(1000, work_s=0.001, round_trip_s=0.002, reply_bytes=100)
    before = sizer.size()
    sizer.timed_out(1000, 10.0)
    assert sizer.size() < before
    sizer.too_large(100_000)
    assert sizer.max_bytes == 50_000
    fixed = ChunkSizer(workers=1, timeout_s=10, fixed=7)
    assert fixed.measured and fixed.size() == 7 and fixed.size(left=2) == 7


def _encode(item: object) -> tuple[bytes, bool]:
    return encode_call((item,), {})


def test_chunks_keep_order_bytes_and_encoding_errors_in_place() -> None:
    sizer = ChunkSizer(workers=1, timeout_s=60, fixed=4)
    sizer.max_bytes = 40
    lock = threading.Lock()
    items: list[object] = [1, 2, "x" * 30, 3, _Unsendable(), 4, "y" * 100]
    out = list(chunks(items, _encode, sizer, lock, total=len(items)))
    shapes = [("error" if c.error else len(c.calls)) for c in out]
    assert shapes == [2, 1, 1, "error", 1, 1]  # 40 bytes: 1 and 2 fit together; a larger item goes alone
    assert isinstance(out[3].error, TypeError)
    assert [c for c in out if c.error is None][-1].calls == [_encode("y" * 100)[0]]


def test_chunks_read_the_input_only_as_they_are_taken() -> None:
    sizer = ChunkSizer(workers=1, timeout_s=60, fixed=10)
    counter = itertools.count()
    source = (next(counter) for _ in itertools.count())
    taken = chunks(source, _encode, sizer, threading.Lock())
    first: Chunk = next(taken)
    assert len(first.calls) == 10 and next(counter) == 10


class _Unsendable:
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("cannot pickle")


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        ChunkPolicy(max_items=0)
    with pytest.raises(ValueError):
        ChunkPolicy(decay=1.0)
