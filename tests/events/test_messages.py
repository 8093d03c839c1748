from __future__ import annotations

import json

import pytest

from events.messages import Invocation, Result, from_stream_entry, new_call_id


def test_invocation_round_trips_through_msgpack() -> None:
    inv = Invocation("f.ns", "PUT", "/a/b", "x=1", [("content-type", "text/plain")], b"\x00body", "id", "http://cb/")
    assert Invocation.decode(inv.encode()) == inv


def test_garbage_is_a_value_error_not_a_crash() -> None:
    with pytest.raises(ValueError, match="not an encoded invocation"):
        Invocation.decode(b"\xc1garbage")


def test_result_round_trips() -> None:
    result = Result(500, [("Content-Type", "application/json")], b"{}", 0.25, "f.ns", 3)
    back = Result.decode(result.encode())
    assert back == result and back.header("content-type") == "application/json"


def test_stream_entry_becomes_an_invocation_with_stream_and_id_headers() -> None:
    inv = from_stream_entry("f.ns", "orders", "1-0", {b"order": b"42"})
    assert json.loads(inv.body) == {"order": "42"}
    assert ("x-stoker-stream", "orders") in inv.headers and ("x-stoker-message-id", "1-0") in inv.headers
    assert from_stream_entry("f.ns", "s", "2-0", {b"body": b"raw"}).body == b"raw"


def test_call_ids_are_random_128_bit() -> None:
    ids = {new_call_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)
