"""The SDK's pure parts: the msgpack wire format and the retry schedule of ``.map()``."""

from __future__ import annotations

import collections
import enum

import pytest

from stoker.sdk import CallFailed
from stoker.sdk.mapping import Failed, backoff, ordered_map, with_retries
from stoker.sdk.serialization import PickleRefused, decode_call, dumps, encode_call, loads


class Color(enum.IntEnum):
    RED = 1


def test_msgpack_types_travel_without_pickle() -> None:
    value = {"a": [1, 2.5, None, True, "x", b"\x00\xff"], 3: {"nested": []}}
    data, pickled = dumps(value)
    assert not pickled and loads(data, allow_pickle=False) == value


def test_tuples_sets_and_subclasses_keep_their_type() -> None:
    value = [(1, (2, 3)), {4, 5}, Color.RED, collections.OrderedDict(a=1)]
    data, pickled = dumps(value)
    assert pickled
    out = loads(data)
    assert out == value and type(out[0]) is tuple and type(out[0][1]) is tuple and type(out[2]) is Color
    with pytest.raises(PickleRefused):
        loads(data, allow_pickle=False)


def test_a_plain_tuple_needs_no_pickle() -> None:
    data, pickled = encode_call((1, (2, "x")), {"k": (3,)})
    assert not pickled
    assert decode_call(data, allow_pickle=False) == ([1, (2, "x")], {"k": (3,)})


def test_bad_call_bodies_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="not msgpack"):
        decode_call(b"\xc1", allow_pickle=False)
    with pytest.raises(ValueError, match="args"):
        decode_call(dumps({"other": 1})[0], allow_pickle=False)


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert [backoff(n, rand=lambda: 1.0) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert backoff(10, rand=lambda: 1.0) == 2.0 and backoff(1, rand=lambda: 0.0) == 0.05


def test_retries_only_what_a_retry_can_fix() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise CallFailed("replica died", 502, retryable=True)
        return "ok"

    assert with_retries(flaky, retries=3, sleep=lambda s: None) == "ok" and len(attempts) == 3
    attempts.clear()
    with pytest.raises(CallFailed):
        with_retries(flaky, retries=1, sleep=lambda s: None)
    assert len(attempts) == 2

    def broken() -> None:
        attempts.append(1)
        raise CallFailed("bad request", 400)

    attempts.clear()
    with pytest.raises(CallFailed):
        with_retries(broken, retries=5, sleep=lambda s: None)
    assert len(attempts) == 1


def test_ordered_map_keeps_input_order_whatever_the_finishing_order() -> None:
    import time

    def run(chunk: list[int]) -> list[object]:
        time.sleep(0.001 * (chunk[0] % 5))  # later chunks often finish first
        return [Failed(ValueError(i)) if i == 57 else i * 10 for i in chunk]

    chunks = ([i, i + 1, i + 2] for i in range(0, 99, 3))
    got = list(ordered_map(run, chunks, concurrency=8, return_exceptions=True))
    assert [g for i, g in enumerate(got) if i != 57] == [i * 10 for i in range(99) if i != 57]
    assert isinstance(got[57], ValueError)
    seen = []
    with pytest.raises(ValueError):
        for value in ordered_map(run, ([i] for i in range(99)), concurrency=8, probe=True):
            seen.append(value)
    assert seen == [i * 10 for i in range(57)]
