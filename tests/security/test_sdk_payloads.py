"""Hostile bodies sent to an SDK function's public endpoint, on a real ``stoker up``.

The attack that found it: 3,000 nested msgpack tuple extensions (12 KB) made the replica's decoder recurse inside
msgpack's C unpacker until the C stack overflowed; the replica died with SIGSEGV and in-flight calls got 502. Every
malformed body must now be a 400 with a JSON reason, the replica must stay the same process, and a call in flight
alongside must succeed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx
import msgpack
import pytest

from stoker import App
from stoker.sdk import serialization
from tests.platform_fixture import PASSWORD, Platform, start_platform

pytestmark = pytest.mark.slow

MSGPACK = {"Content-Type": "application/msgpack"}


def _nested_tuples(levels: int) -> bytes:
    payload = msgpack.packb(None)
    for _ in range(levels):
        payload = msgpack.packb(msgpack.ExtType(serialization.EXT_TUPLE, b"\x91" + payload))
    return msgpack.packb({"args": [msgpack.ExtType(serialization.EXT_TUPLE, b"\x91" + payload)], "kwargs": {}})


def _call(args: object, kwargs: object = None) -> bytes:
    return msgpack.packb({"args": args, "kwargs": {} if kwargs is None else kwargs}, use_bin_type=True)


HOSTILE: dict[str, tuple[bytes, dict[str, str], str]] = {
    "3000 nested tuples (the SIGSEGV)": (_nested_tuples(3000), MSGPACK, "nest deeper"),
    "33 nested tuples": (_nested_tuples(33), MSGPACK, "nest deeper than 32"),
    "1100 nested arrays": (msgpack.packb({"args": [1], "kwargs": {}})[:-1] + b"\x91" * 1100 + b"\xc0", MSGPACK, "1024"),
    "2000 arrays inside a tuple": (
        _call([msgpack.ExtType(serialization.EXT_TUPLE, b"\x91" * 2000 + b"\xc0")]),
        MSGPACK,
        "deeper than 1024",
    ),
    "unknown extension type": (_call([msgpack.ExtType(42, b"x")]), MSGPACK, "extension type 42"),
    "tuple payload not an array": (_call([msgpack.ExtType(serialization.EXT_TUPLE, b"\x05")]), MSGPACK, "array"),
    "tuple payload not msgpack": (_call([msgpack.ExtType(serialization.EXT_TUPLE, b"\xc1")]), MSGPACK, "msgpack"),
    "unhashable map key": (
        _call([{msgpack.ExtType(serialization.EXT_TUPLE, b"\x91\x90"): 1}]),
        MSGPACK,
        "map key",
    ),
    "non-string kwargs keys": (_call([1], {1: 2}), MSGPACK, "strings"),
    "bytes kwargs keys": (_call([1], {b"x": 2}), MSGPACK, "strings"),
    "args not an array": (_call(5), MSGPACK, "args must be an array"),
    "kwargs not a map": (_call([1], [1]), MSGPACK, "kwargs a map"),
    "not a map": (msgpack.packb([1, 2]), MSGPACK, "a msgpack call body is a map"),
    "unknown keys": (msgpack.packb({"args": [1], "evil": 1}), MSGPACK, "a msgpack call body is a map"),
    "truncated msgpack": (_call([1, 2, 3])[:-2], MSGPACK, "msgpack"),
    "reserved byte": (b"\xc1", MSGPACK, "msgpack"),
    "trailing bytes": (_call([1]) + b"\x00", MSGPACK, "msgpack"),
    "pickle without the token": (
        _call([msgpack.ExtType(serialization.EXT_PICKLE, b"cos\nsystem\n")]),
        MSGPACK,
        "token",
    ),
    "wrong keyword": (_call([1], {"nope": 2}), MSGPACK, "do not fit"),
    "too many arguments": (_call([1, 2, 3, 4]), MSGPACK, "do not fit"),
    "no arguments": (b"", {}, "do not fit"),
    "batch of something else than call bodies": (msgpack.packb({"batch": [1, 2]}), MSGPACK, "bytes of one"),
    "batch of a non-array": (msgpack.packb({"batch": b"x"}), MSGPACK, "batch body is a map"),
    "batch of calls with another key": (msgpack.packb({"batch": [], "args": [1]}), MSGPACK, "only that key"),
    "batch of too many calls": (
        msgpack.packb({"batch": [_call([1])] * (serialization.MAX_BATCH_ITEMS + 1)}, use_bin_type=True),
        MSGPACK,
        "at most",
    ),
    "batch nested 1100 arrays deep": (b"\x81\xa5batch" + b"\x91" * 1100 + b"\xc0", MSGPACK, "1024"),
    "deep JSON": (b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"}, "nests too deeply"),
    "bad JSON": (b'{"args": [1,', {"Content-Type": "application/json"}, "neither msgpack"),
    "JSON args not an array": (b'{"args": 1}', {"Content-Type": "application/json"}, "args must be an array"),
}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str]]:
    p = start_platform(tmp_path_factory.mktemp("sdk-hostile"))
    app = App("hostile", gateway=p.url, password=PASSWORD)

    @app.function
    def add(x: int, y: int = 1) -> list[int]:
        import os

        return [x + y, os.getpid()]  # the pid: a replica that crashed and came back has another

    try:
        assert app.deploy() == ["hostile-add"]
        yield p, f"{p.url}/function/hostile-add"
    finally:
        p.stop()


def _add(url: str, x: int) -> tuple[int, int]:
    r = httpx.post(url, content=_call([x]), headers=MSGPACK, timeout=30)
    assert r.status_code == 200, r.text
    total, pid = serialization.loads(r.content)["value"]
    return total, pid


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_malformed_sdk_call_is_a_400_and_the_replica_survives(target: tuple[Platform, str], case: str) -> None:
    url = target[1]
    body, headers, needle = HOSTILE[case]
    _, pid = _add(url, 0)
    # A good call in flight while the hostile one is decoded must not be cut off.
    good: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: good.append(httpx.post(url, content=_call([40], {"y": 2}), headers=MSGPACK)))
    slow.start()
    r = httpx.post(url, content=body, headers=headers, timeout=30)
    slow.join(30)
    expected = 403 if case.startswith("pickle") else 400
    assert r.status_code == expected, (r.status_code, r.text[:500])
    assert needle in r.json()["error"], r.text[:500]
    assert good and good[0].status_code == 200 and serialization.loads(good[0].content)["value"][0] == 42
    assert _add(url, 1) == (2, pid), "the replica was restarted"


def test_the_nesting_attack_repeated_never_takes_the_function_down(target: tuple[Platform, str]) -> None:
    p, url = target
    body = _nested_tuples(3000)
    _, pid = _add(url, 0)
    with httpx.Client(timeout=30) as c:
        for _ in range(50):
            assert c.post(url, content=body, headers=MSGPACK).status_code == 400
    assert _add(url, 5) == (6, pid)
    with p.client() as c:
        status = c.get("/system/function/hostile-add").json()
    assert status["availableReplicas"] >= 1 and "exited" not in status.get("message", "")


def test_the_decoder_keeps_every_type_the_sdk_sends() -> None:
    """The non-recursive decoder gives back what the recursive one did: tuples (nested, as map keys, in maps),
    pickled values, maps in their order."""
    value = {
        "t": (1, (2, (3, ())), [4, (5,)]),
        (1, (2, 3)): "tuple key",
        "order": {"z": 1, (0,): 2, "a": 3},
        "set": {1, 2},
        "bytes": b"\x00\xff",
    }
    data, pickled = serialization.dumps(value)
    assert pickled
    out = serialization.loads(data)
    assert out == value and list(out["order"]) == ["z", (0,), "a"]
    assert type(out["t"][1][1]) is tuple and type(out["t"][2][1]) is tuple


def test_each_call_of_a_batch_is_held_to_the_limits_of_a_single_call(target: tuple[Platform, str]) -> None:
    """A hostile call inside a batch gets the 400 (or 403) it would get alone, in its place; the calls around it
    run; the replica stays the same process."""
    url = target[1]
    _, pid = _add(url, 0)
    hostile = [HOSTILE[case][0] for case in sorted(HOSTILE) if HOSTILE[case][1] is MSGPACK]
    calls = [_call([1]), *hostile, _call([2], {"y": 5})]
    r = httpx.post(url, content=msgpack.packb({"batch": calls}, use_bin_type=True), headers=MSGPACK, timeout=60)
    assert r.status_code == 200, r.text[:500]
    replies = serialization.loads(r.content)["batch"]
    assert len(replies) == len(calls)
    first, last = replies[0], replies[-1]
    assert first[0] == 200 and serialization.loads(first[1])["value"][0] == 2
    assert last[0] == 200 and serialization.loads(last[1])["value"][0] == 7
    for (status, body), data in zip(replies[1:-1], hostile, strict=True):
        case = next(c for c in HOSTILE if HOSTILE[c][0] == data)
        assert status == (403 if case.startswith("pickle") else 400), case
        # A batch inside a batch is not opened: as a call, it is not one.
        needle = "a msgpack call body is a map" if case.startswith("batch of") else HOSTILE[case][2]
        assert needle in json.loads(body)["error"], (case, body[:300])
    assert _add(url, 1) == (2, pid), "the replica was restarted"
