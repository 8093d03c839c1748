"""Slow, oversized and too many connections, against the gateway and a replica (both serve with
``runtime.httpserver``): a request head has a deadline and a size cap, and open connections are bounded so the
process never runs out of file descriptors."""

from __future__ import annotations

import concurrent.futures
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import PASSWORD, ROOT, Platform, start_platform, write_handler
from tests.runtime.replica.replica_process import ReplicaProcess, write_function
from tests.security.rawhttp import Connection, address, request, reset_peak, rss_bytes

SLEEPY = """
import time, uuid
from pathlib import Path


def handle(event, context):
    if event.query.get("mark"):  # tells the test the call is running
        Path(event.query["mark"], uuid.uuid4().hex).touch()
    time.sleep(float(event.query.get("s", 0)))
    return "ok"
"""
HEAD = b"GET /function/sleepy HTTP/1.1\r\nHost: x\r\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_HEADER_TIMEOUT_S": "1", "STOKER_MAX_CONNECTIONS": "30"}
    p = start_platform(tmp_path_factory.mktemp("home"), env=env)
    assert p.deploy("sleepy", write_handler(tmp_path_factory.mktemp("fn") / "sleepy", SLEEPY)).status_code == 202
    yield p
    p.stop()


def _refused_within(conn: Connection, seconds: float) -> bytes:
    assert conn.closed_by_peer(seconds), "the server kept the connection open"
    return conn.buffer


def test_half_sent_heads_are_answered_408_and_closed_while_others_are_served(gw: Platform) -> None:
    slow = [Connection(gw.url) for _ in range(20)]
    started = time.monotonic()
    for conn in slow:
        conn.send(HEAD)  # never finished
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        while time.monotonic() - started < 0.8:  # meanwhile, other clients are served at once
            t = time.monotonic()
            assert client.get("/function/sleepy").status_code == 200
            assert time.monotonic() - t < 0.5
    for conn in slow:
        answer = _refused_within(conn, 5)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'{"error": ' in answer
        conn.close()
    assert 0.9 < time.monotonic() - started < 6


def test_a_head_sent_a_byte_at_a_time_gets_no_more_time(gw: Platform) -> None:
    with Connection(gw.url) as conn:
        started = time.monotonic()
        for byte in HEAD + b"X-Slow: " + b"a" * 1000:  # a byte every 20 ms: 20 s for the whole head
            if not conn.offer(bytes([byte])) or conn.closed_by_peer(0.02):
                break
        assert conn.buffer.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 5


def test_a_connection_that_sends_nothing_is_closed_silently(gw: Platform) -> None:
    with Connection(gw.url) as conn:
        assert _refused_within(conn, 5) == b""


def test_a_call_longer_than_the_header_deadline_is_not_cut(gw: Platform) -> None:
    with Connection(gw.url) as conn:
        # twice on one kept-alive connection: the deadline is for heads, not for answers or the idle time between
        for _ in range(2):
            answer = conn.call(request("GET", b"/function/sleepy?s=1.5"))
            assert answer.status == 200 and answer.body == b"ok"


@pytest.mark.parametrize("size", [70 * 1024, 10 * 1024 * 1024])
def test_an_oversized_header_is_answered_431(gw: Platform, size: int) -> None:
    reset_peak(gw.proc.pid)
    before = rss_bytes(gw.proc.pid)
    with Connection(gw.url) as conn:
        conn.offer(HEAD + b"X-Big: " + b"a" * size + b"\r\n\r\n")
        answer = conn.read_answer()
    assert answer.status == 431
    assert "over the limit of 65536 bytes" in answer.json()["error"]
    assert rss_bytes(gw.proc.pid, "VmHWM") - before < 16 * 1024 * 1024


def test_a_million_small_headers_are_answered_431_at_once(gw: Platform) -> None:
    reset_peak(gw.proc.pid)
    before = rss_bytes(gw.proc.pid)
    started = time.monotonic()
    with Connection(gw.url) as conn:
        conn.offer(HEAD + b"a: b\r\n" * 1_300_000 + b"\r\n")
        assert conn.read_answer().status == 431
    assert time.monotonic() - started < 5
    assert rss_bytes(gw.proc.pid, "VmHWM") - before < 16 * 1024 * 1024
    assert httpx.get(f"{gw.url}/healthz").status_code == 200


def test_a_head_just_under_the_cap_is_served(gw: Platform) -> None:
    with Connection(gw.url) as conn:  # and the replica takes it with the headers the gateway adds
        answer = conn.call(HEAD + b"X-Big: " + b"a" * (64 * 1024 - len(HEAD) - 20) + b"\r\n\r\n")
    assert answer.status == 200 and answer.body == b"ok"


def test_idle_connections_beyond_the_limit_make_room_for_new_clients(gw: Platform) -> None:
    idle = [socket.create_connection(address(gw.url)) for _ in range(60)]  # twice the limit of 30
    try:
        for _ in range(5):
            assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200
            assert httpx.get(f"{gw.url}/function/sleepy", timeout=5).status_code == 200
    finally:
        for s in idle:
            s.close()


def test_when_every_connection_is_busy_a_new_one_is_answered_503(gw: Platform, tmp_path: Path) -> None:
    busy = [Connection(gw.url) for _ in range(30)]
    try:
        for conn in busy:
            conn.send(request("GET", b"/function/sleepy?s=3&mark=" + str(tmp_path).encode()))
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 30:  # every call is running: no connection is resting
            assert time.monotonic() < deadline, "the calls did not start"
            time.sleep(0.02)
        with Connection(gw.url) as extra:
            answer = extra.call(request("GET", b"/healthz"))
            assert answer.status == 503
            assert answer.headers.get("retry-after") == "1"
            assert "connection limit" in answer.json()["error"]
        for conn in busy:
            assert conn.read_answer().status == 200
    finally:
        for conn in busy:
            conn.close()
    assert httpx.get(f"{gw.url}/healthz", timeout=5).status_code == 200


def test_with_1024_file_descriptors_1100_idle_connections_do_not_take_the_gateway_down(tmp_path: Path) -> None:
    """The default connection bound is derived from the open-files limit: the gateway closes idle connections to
    make room, never fails to accept (EMFILE), and keeps answering."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    environ = {"STOKER_HOME": str(tmp_path), "STOKER_ADMIN_PASSWORD": PASSWORD, "STOKER_POOL_SIZE": "0",
               "PATH": "/usr/bin:/bin"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "stoker", "up", "--port", "0"],
        cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limit,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            m = re.search(r"gateway on (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "stoker up did not start"
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        idle = [socket.create_connection(address(url)) for _ in range(1100)]
        try:
            for _ in range(5):
                assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        finally:
            for s in idle:
                s.close()
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(30)


# --- the replica's server has the same limits ------------------------------------------------------------------------
@pytest.fixture
def replica(tmp_path: Path) -> Iterator[ReplicaProcess]:
    folder = write_function(tmp_path / "fn", "def handle(event, context):\n    return 'ok'\n")
    env = {"STOKER_HEADER_TIMEOUT_S": "1", "STOKER_MAX_CONNECTIONS": "10"}
    r = ReplicaProcess(folder, env)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{r.url}/_/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the replica did not start"
        time.sleep(0.05)
    yield r
    r.stop()


def test_replica_refuses_slow_and_oversized_heads_and_bounds_connections(replica: ReplicaProcess) -> None:
    with Connection(replica.url) as slow:
        slow.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert _refused_within(slow, 5).startswith(b"HTTP/1.1 408 ")
    with Connection(replica.url) as big:
        big.offer(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (300 * 1024) + b"\r\n\r\n")
        assert big.read_answer().status == 431
    idle = [socket.create_connection(address(replica.url)) for _ in range(25)]
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: httpx.get(replica.url, timeout=5).status_code, range(8)))
        assert statuses == [200] * 8
    finally:
        for s in idle:
            s.close()
