"""``stoker edge`` in front of real gateways (``stoker up`` processes): a gateway stopped while clients keep calling
costs no call (it turns unready, the edge stops sending to it, then it stops); a killed one costs none of the GETs
(refused and broken ones go to the other) and new calls all go to the survivor; with no gateway at all, calls wait for
one to start instead of failing (issue 19: an upgrade with no failed call)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.install.install_support import Load, free_port, wait_for
from tests.platform_fixture import FUNCTIONS, PASSWORD, ROOT, Platform, start_platform

HELLO = ("Hello from stoker!\n",)
GATEWAY_ENV = {"STOKER_POOL_SIZE": "0", "STOKER_SHUTDOWN_DELAY_S": "2"}


class Edge:
    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "STOKER_EDGE_CHECK_INTERVAL_S": "0.2", "STOKER_EDGE_HOLD_S": "60"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stoker", "edge", "--upstream", upstream, "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        wait_for(lambda: any("edge on" in line for line in self.output) or self.proc.poll() is not None, 30, "edge")
        assert self.proc.poll() is None, "".join(self.output)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _port(p: Platform) -> int:
    match = re.search(r":(\d+)$", p.url)
    assert match
    return int(match.group(1))


def _gateway(home: Path) -> Platform:
    p = start_platform(home, env=GATEWAY_ENV)
    assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
    wait_for(lambda: httpx.get(f"{p.url}/function/hello", timeout=30).text == HELLO[0], 60, "hello")
    return p


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Platform, Platform, Edge]]:
    a, b = _gateway(tmp_path / "a"), _gateway(tmp_path / "b")
    edge = Edge(f"127.0.0.1:{_port(a)},127.0.0.1:{_port(b)}")
    try:
        wait_for(lambda: httpx.get(f"{edge.url}/readyz", timeout=10).status_code == 200, 30, "the edge ready")
        yield a, b, edge
    finally:
        edge.stop()
        for p in (a, b):
            if p.proc.poll() is None:
                p.proc.kill()


def test_a_gateway_stopped_under_load_costs_no_call(two: tuple[Platform, Platform, Edge]) -> None:
    a, _, edge = two
    url = f"{edge.url}/function/hello"
    with Load(url, HELLO) as gets, Load(url, HELLO, method="POST") as posts:
        wait_for(lambda: gets.ok > 50 and posts.ok > 50, 60, "calls through the edge")
        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(60) == 0
        seen = gets.ok + posts.ok
        wait_for(lambda: gets.ok + posts.ok > seen + 50, 60, "calls after the gateway stopped")
    gets.report("edge, a gateway stopped (GET)")
    posts.report("edge, a gateway stopped (POST)")
    assert gets.failed == [] and posts.failed == []


def test_a_killed_gateway_costs_no_get_and_new_calls_go_to_the_other(two: tuple[Platform, Platform, Edge]) -> None:
    a, _, edge = two
    url = f"{edge.url}/function/hello"
    with Load(url, HELLO) as gets:
        wait_for(lambda: gets.ok > 50, 60, "calls through the edge")
        a.proc.kill()
        a.proc.wait(30)
        seen = gets.ok
        wait_for(lambda: gets.ok > seen + 50, 60, "calls after the kill")
    gets.report("edge, a gateway killed (GET)")
    assert gets.failed == []  # refused or broken GETs went to the other gateway
    assert httpx.get(f"{edge.url}/readyz", timeout=10).status_code == 200


def test_the_only_gateway_stopping_keeps_taking_calls_until_its_delay_is_nearly_over(tmp_path: Path) -> None:
    p = start_platform(tmp_path / "home", env={**GATEWAY_ENV, "STOKER_SHUTDOWN_DELAY_S": "8"})
    edge = Edge(f"127.0.0.1:{_port(p)}")
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        wait_for(lambda: httpx.get(f"{edge.url}/function/hello", timeout=30).text == HELLO[0], 60, "hello")
        p.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(f"{edge.url}/readyz", timeout=10).status_code == 503, 30, "the edge to see it")
        # No other gateway exists: this call is answered by the stopping one (not held until another is ready).
        answer = httpx.post(f"{edge.url}/function/hello", content=b"late", timeout=30)
        assert answer.text == "Hello, late!\n"
        assert p.proc.poll() is None  # answered before the gateway stopped
    finally:
        edge.stop()
        if p.proc.poll() is None:
            p.proc.kill()


def test_with_no_gateway_ready_a_call_waits_for_one_instead_of_failing(tmp_path: Path) -> None:
    port = free_port()
    edge = Edge(f"127.0.0.1:{port}")
    p = None
    try:
        assert httpx.get(f"{edge.url}/readyz", timeout=10).status_code == 503
        answers: list[httpx.Response] = []
        caller = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{edge.url}/system/info", auth=("admin", PASSWORD), timeout=90))
        )
        caller.start()
        p = start_platform(tmp_path / "home", "--port", str(port), env=GATEWAY_ENV)
        caller.join(90)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert answers[0].json()["provider"]["provider"] == "stoker"
    finally:
        edge.stop()
        if p is not None and p.proc.poll() is None:
            p.proc.kill()


class _BreakingGateway:
    """A gateway that answers /readyz and breaks every other request off after reading it (a crash mid-call): what
    the edge sends it is counted, to check that only GET and HEAD are ever sent twice."""

    def __init__(self) -> None:
        import socket as socketlib

        self.sock = socketlib.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.calls: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: object) -> None:
        import socket as socketlib

        assert isinstance(conn, socketlib.socket)
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            line = data.split(b"\r\n", 1)[0].decode()
            if " /readyz " in line:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK")
                return
            self.calls.append(line.split(" ")[0])  # received whole, then the connection breaks with no answer


def test_a_call_a_gateway_received_and_broke_off_is_sent_again_only_if_it_is_a_get() -> None:
    broken = _BreakingGateway()
    edge = Edge(f"127.0.0.1:{broken.port}")
    try:
        wait_for(lambda: httpx.get(f"{edge.url}/readyz", timeout=10).status_code == 200, 30, "the edge ready")
        post = httpx.post(f"{edge.url}/function/hello", content=b"pay once", timeout=30)
        assert post.status_code == 502, post.text
        assert broken.calls == ["POST"]  # never twice: the gateway may have run it
        get = httpx.get(f"{edge.url}/function/hello", timeout=30)
        assert get.status_code == 502
        assert broken.calls.count("GET") > 1  # sent again, a bounded number of times
        assert broken.calls.count("GET") <= 4
        # Hostile input is refused with a clear error and the edge stays up.
        big = httpx.post(f"{edge.url}/function/hello", content=b"x" * (21 * 1024 * 1024), timeout=60)
        assert big.status_code == 413
        assert httpx.get(f"{edge.url}/healthz", timeout=10).status_code == 200
    finally:
        edge.stop()
        broken.sock.close()
