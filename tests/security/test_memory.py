"""Memory amplification: request bodies held at once are bounded by a budget (503 beyond it), and answers are relayed
as they come, no faster than the client reads them, so neither many bodies nor one huge answer grows the gateway."""

from __future__ import annotations

import concurrent.futures
import contextlib
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.security.rawhttp import Connection, request, reset_peak, rss_bytes

MiB = 1024 * 1024
SIZE = "def handle(event, context):\n    return str(len(event.body))\n"
BIG = "def handle(event, context):\n    return b'x' * int(event.query['bytes'])\n"
DIES = """
import os, threading


def handle(event, context):
    threading.Timer(float(event.query["after"]), os._exit, args=(1,)).start()  # the replica dies mid-answer
    return b"x" * (64 * 1024 * 1024)
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_MAX_BODY_BYTES": str(4 * MiB),
           "STOKER_MAX_INFLIGHT_BODY_BYTES": str(8 * MiB)}  # fmt: skip
    p = start_platform(tmp_path_factory.mktemp("home"), env=env)
    fns = tmp_path_factory.mktemp("fn")
    assert p.deploy("size", write_handler(fns / "size", SIZE)).status_code == 202
    assert p.deploy("big", write_handler(fns / "big", BIG)).status_code == 202
    assert p.deploy("dies", write_handler(fns / "dies", DIES)).status_code == 202
    yield p
    p.stop()


def _post_head(length: int) -> bytes:
    return b"POST /function/size HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length


def test_bodies_beyond_the_budget_are_refused_503_and_the_budget_comes_back(gw: Platform) -> None:
    for _ in range(2):  # a second round sees the whole budget again: nothing taken is kept
        senders = [Connection(gw.url) for _ in range(3)]
        try:
            for conn in senders:  # 3 x 3.5 MiB held at once do not fit in 8 MiB
                conn.send(_post_head(4 * MiB) + b"b" * (7 * MiB // 2))
            readable, _, _ = select.select([c.sock for c in senders], [], [], 20)
            assert readable, "no sender was refused"
            refused = [c for c in senders if c.sock in readable]
            for conn in refused:
                answer = conn.read_answer()
                assert answer.status == 503
                assert answer.headers["retry-after"] == "1"
                assert "retry shortly" in answer.json()["error"]
            kept = [c for c in senders if c not in refused]
            assert kept, "every sender was refused"
            for conn in kept:
                conn.send(b"b" * (MiB // 2))
                answer = conn.read_answer()
                assert answer.status == 200 and answer.body == str(4 * MiB).encode()
        finally:
            for conn in senders:
                conn.close()
        r = httpx.post(f"{gw.url}/function/size", content=b"c" * (4 * MiB), timeout=30)
        assert r.status_code == 200 and r.text == str(4 * MiB)


def test_many_large_bodies_at_once_stay_within_the_budget(gw: Platform) -> None:
    reset_peak(gw.proc.pid)
    before = rss_bytes(gw.proc.pid)
    body = b"d" * (3 * MiB)

    def post(_: int) -> int:
        return httpx.post(f"{gw.url}/function/size", content=body, timeout=60).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, range(16)))  # 48 MiB at once
    assert set(statuses) <= {200, 503} and 200 in statuses
    grown = rss_bytes(gw.proc.pid, "VmHWM") - before
    assert grown < 24 * MiB, f"the gateway grew by {grown / MiB:.0f} MiB for an 8 MiB budget"


def test_a_large_answer_is_relayed_at_the_pace_of_a_slow_client(gw: Platform) -> None:
    size = 64 * MiB
    reset_peak(gw.proc.pid)
    before = rss_bytes(gw.proc.pid)
    with Connection(gw.url, timeout=60) as conn:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        conn.send(request("GET", b"/function/big?bytes=%d" % size))
        head = conn.read_head()
        assert head.status == 200
        assert head.headers["content-length"] == str(size)
        # The client reads nothing for a while: the replica has the whole answer ready, the gateway must not take it.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert rss_bytes(gw.proc.pid) - before < 16 * MiB, "the gateway buffers the answer"
            time.sleep(0.05)
        received = len(conn.buffer)
        while received < size:
            chunk = conn.sock.recv(1 << 20)
            assert chunk, "the answer was cut short"
            assert set(chunk) == {ord("x")}
            received += len(chunk)
        assert received == size
    assert rss_bytes(gw.proc.pid, "VmHWM") - before < 16 * MiB


def test_streamed_answers_keep_the_connection_usable(gw: Platform) -> None:
    with Connection(gw.url) as conn:
        for size in (3 * MiB, 10, 300 * 1024, 0):
            answer = conn.call(request("GET", b"/function/big?bytes=%d" % size))
            assert answer.status == 200 and answer.body == b"x" * size
        head = conn.call(request("HEAD", b"/function/big?bytes=%d" % (3 * MiB)))
        assert head.status == 200 and head.body == b""


def test_a_client_that_leaves_mid_answer_does_not_disturb_the_next_calls(gw: Platform) -> None:
    for _ in range(3):
        with Connection(gw.url) as conn:
            conn.send(request("GET", b"/function/big?bytes=%d" % (32 * MiB)))
            assert conn.read_head().status == 200
    for size in (10, 2 * MiB):
        r = httpx.get(f"{gw.url}/function/big", params={"bytes": size}, timeout=30)
        assert r.status_code == 200 and len(r.content) == size


def test_an_async_result_is_kept_up_to_the_body_limit(gw: Platform) -> None:
    def result(size: int) -> httpx.Response:
        r = httpx.post(f"{gw.url}/async-function/big", params={"bytes": size}, timeout=10)
        assert r.status_code == 202
        deadline = time.monotonic() + 60
        with gw.client() as c:
            while (got := c.get(f"/system/async-result/{r.headers['x-call-id']}")).status_code == 202:
                assert time.monotonic() < deadline, "the async call did not finish"
                time.sleep(0.05)
        return got

    small = result(MiB)
    assert small.status_code == 200 and small.content == b"x" * MiB
    large = result(6 * MiB)  # over STOKER_MAX_BODY_BYTES (4 MiB)
    assert large.status_code == 200
    assert large.headers["x-function-status"] == "200"
    assert "not kept" in large.json()["error"]


def test_an_answer_the_replica_breaks_off_is_broken_off_to_the_client(gw: Platform) -> None:
    with Connection(gw.url, timeout=30) as conn:
        conn.send(request("GET", b"/function/dies?after=0.5"))
        head = conn.read_head()
        assert head.status == 200 and head.headers["content-length"] == str(64 * MiB)
        received = len(conn.buffer)
        with contextlib.suppress(ConnectionError):
            while chunk := conn.sock.recv(64 * 1024):  # the client reads slowly; the replica dies meanwhile
                received += len(chunk)
                time.sleep(0.01)
    assert received < 64 * MiB, "a broken answer was passed on as a complete one"
