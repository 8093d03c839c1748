"""``.map()`` sends its items in chunks, on a real platform: fewer requests, the same answers per item, and the
gateway's body limit and the exec timeout respected."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoker.sdk import App, CallFailed
from stoker.sdk.chunking import ChunkPolicy
from tests.platform_fixture import PASSWORD, Platform, start_platform


def requests_served(platform: Platform, name: str) -> int:
    with platform.client() as c:
        return int(c.get(f"/system/function/{name}").json()["invocationCount"])


def wait_for_count(platform: Platform, name: str, at_least: int) -> int:
    deadline = time.monotonic() + 30
    while (count := requests_served(platform, name)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


class Odd(Exception):
    """Raised by the function for some items: it must come back at that item's place, as its own type."""


def test_a_trivial_map_takes_far_fewer_requests_than_items(sdk_platform: Platform) -> None:
    app = App("chunky")

    @app.function
    def triple(x: int) -> int:
        return 3 * x

    app.deploy()
    before = requests_served(sdk_platform, triple.name)
    n = 20_000
    assert list(triple.map(range(n))) == [3 * i for i in range(n)]
    assert list(triple.map(iter(range(n)), concurrency=4)) == [3 * i for i in range(n)]  # unknown length
    sent = wait_for_count(sdk_platform, triple.name, before + 2) - before
    assert 2 <= sent <= 2 * n // 20, f"{sent} requests for {2 * n} items"  # one item per request before chunks
    app.remove()


def test_chunksize_fixes_the_items_per_request_and_starmap(
    sdk_platform: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    app = App("fixed")

    @app.function
    def add(x: int, y: int) -> int:
        return x + y

    app.deploy()
    before = requests_served(sdk_platform, add.name)
    got = list(add.map(range(50), range(100, 150), chunksize=7, progress=True))
    assert got == [2 * i + 100 for i in range(50)]
    assert wait_for_count(sdk_platform, add.name, before + 8) == before + 8  # ceil(50 / 7)
    assert "50/50 100%" in capsys.readouterr().err  # the bar counts items, not requests
    assert list(add.starmap([(1, 2), [3, 4]], chunksize=2)) == [3, 7]
    assert list(add.starmap(((i, i) for i in range(10)), kwargs=None)) == [2 * i for i in range(10)]
    with pytest.raises(ValueError, match="chunksize"):
        add.map([1], [2], chunksize=0)
    app.remove()


def test_each_item_of_a_chunk_gets_its_own_value_exception_or_refusal(sdk_platform: Platform) -> None:
    app = App("mixed")

    @app.function
    def check(x: int) -> int:
        if x % 3 == 1:
            raise Odd(f"item {x}")
        return x

    app.deploy()
    got = list(check.map(range(30), chunksize=30, return_exceptions=True))
    for i, value in enumerate(got):
        if i % 3 == 1:
            assert isinstance(value, Odd) and str(value) == f"item {i}"
            assert "in check" in value.remote_traceback and f"Odd: item {i}" in value.remote_traceback  # type: ignore[attr-defined]
        else:
            assert value == i
    # A keyword the function does not take: each item is refused (400) before it runs, as it would be alone.
    refused = list(check.map([0, 3], chunksize=2, kwargs={"nope": 1}, return_exceptions=True))
    assert all(isinstance(r, CallFailed) and r.status == 400 and "do not fit" in str(r) for r in refused)
    seen = []
    with pytest.raises(Odd, match="item 4"):
        for value in check.map([0, 2, 3, 4, 5, 6], chunksize=6):
            seen.append(value)
    assert seen == [0, 2, 3]
    # An argument that cannot be sent fails at its place; the items around it still run.
    unsendable = list(check.map([0, _Unpicklable(), 3], chunksize=3, return_exceptions=True))
    assert unsendable[0] == 0 and isinstance(unsendable[1], Exception) and unsendable[2] == 3
    app.remove()


class _Unpicklable:
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("this argument cannot be pickled")


def test_the_input_is_streamed_not_read_ahead(sdk_platform: Platform) -> None:
    app = App("stream")

    @app.function
    def ident(x: int) -> int:
        return x

    app.deploy()
    pulled = itertools.count()

    def endless() -> Iterator[int]:
        for i in itertools.count():
            next(pulled)
            yield i

    results = ident.map(endless(), concurrency=2)
    assert list(itertools.islice(results, 100)) == list(range(100))
    results.close()  # type: ignore[attr-defined]
    # Read and not yet consumed: at most 2 x concurrency chunks in flight, plus the answered chunk the 100th item came
    # from (its later answers wait to be consumed), each of at most max_items items.
    assert next(pulled) <= 100 + (2 * 2 + 1) * ChunkPolicy().max_items
    app.remove()


@pytest.mark.slow
def test_a_chunk_past_the_exec_timeout_is_resent_one_item_per_request(sdk_platform: Platform) -> None:
    app = App("slowpoke")

    @app.function(timeout=1)
    def nap(x: int) -> tuple[int, int]:
        time.sleep(0.3)
        return x, os.getpid()

    app.deploy()
    _, pid = nap.remote(-1)
    # Ten items of 0.3 s in one request pass the 1 s timeout (504): each is sent again alone and succeeds.
    got = list(nap.map(range(10), chunksize=10))
    assert [x for x, _ in got] == list(range(10))
    # The replica stopped the timed-out batch instead of running on until it counted as hung and restarted.
    assert {p for _, p in got} == {pid} and nap.remote(0)[1] == pid
    app.remove()


@pytest.fixture(scope="module")
def small_bodies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(Path(tmp_path_factory.mktemp("small-bodies")), env={"STOKER_MAX_BODY_BYTES": "65536"})
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.slow
def test_chunks_stay_under_the_gateways_body_limit(small_bodies: Platform) -> None:
    app = App("bodies", gateway=small_bodies.url, password=PASSWORD)

    @app.function
    def size(data: bytes) -> int:
        return len(data)

    app.deploy()
    before = requests_served(small_bodies, size.name)
    # 40 items of 10 KB: a 256 KiB chunk is over this gateway's 64 KiB limit (413); chunks are split until they fit.
    items = [b"x" * 10_000] * 40
    assert list(size.map(items, chunksize=40)) == [10_000] * 40
    assert wait_for_count(small_bodies, size.name, before + 7) - before >= 7  # at most 6 items fit in 64 KiB
    # An item over the limit by itself fails as a single call does (413), at its place.
    got = list(size.map([b"a", b"x" * 70_000, b"bc"], return_exceptions=True))
    assert got[0] == 1 and got[2] == 2
    assert isinstance(got[1], CallFailed) and got[1].status == 413
    app.remove()


def test_an_async_function_runs_its_chunks_item_by_item(sdk_platform: Platform) -> None:
    app = App("asyncmap")

    @app.function
    async def halve(x: int) -> float:
        if x == 3:
            raise Odd("three")
        return x / 2

    app.deploy()
    got = list(halve.map(range(6), chunksize=6, return_exceptions=True))
    assert got[:3] == [0, 0.5, 1] and isinstance(got[3], Odd) and got[4:] == [2, 2.5]
    refused = list(halve.map([0, 2], chunksize=2, kwargs={"nope": 1}, return_exceptions=True))
    assert all(isinstance(r, CallFailed) and r.status == 400 and "do not fit" in str(r) for r in refused)
    app.remove()


def test_generators_in_a_chunk_come_back_as_generators(sdk_platform: Platform) -> None:
    app = App("gens")

    @app.function
    def upto(n: int):  # type: ignore[no-untyped-def]
        yield from range(n)

    app.deploy()
    assert [list(g) for g in upto.map([0, 2, 3], chunksize=3)] == [[], [0, 1], [0, 1, 2]]
    app.remove()


# What the SDK's replica answered before it knew batches: a call body, or 400 for anything else.
LEGACY_HANDLER = """
from stoker.handler import Response
from stoker.sdk import serialization


def handle(event, context):
    try:
        args, kwargs = serialization.decode_call(event.body, allow_pickle=False)
    except ValueError as exc:
        return Response({"error": str(exc)}, 400)
    body, _ = serialization.dumps({"value": args[0] * 2})
    return Response(body, 200, {"Content-Type": "application/msgpack"})
"""


def test_a_runtime_without_batches_gets_one_item_per_request(sdk_platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text(LEGACY_HANDLER)
    assert sdk_platform.deploy("legacy-double", tmp_path).status_code in (200, 202)
    app = App("legacy")

    @app.function(name="legacy-double")
    def double(x: int) -> int:
        return 2 * x

    double.remote(1)  # waits for the replica
    assert list(double.map(range(100))) == [2 * i for i in range(100)]
    assert list(double.map(range(10), chunksize=5)) == [2 * i for i in range(10)]
