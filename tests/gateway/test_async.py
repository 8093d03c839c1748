"""Async invocations through a real ``stoker up`` (embedded queue): 202 only for stored calls, results by call id,
callbacks, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, Platform, start_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # The callback receiver below listens on loopback, which callbacks may reach only when allowed.
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_CALLBACK_ALLOW": "127.0.0.1"})
    assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
    yield p
    p.stop()


def test_unknown_function_is_404_not_202(platform: Platform) -> None:
    r = httpx.post(f"{platform.url}/async-function/nope", content=b"x")
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_202_then_the_result_by_call_id(platform: Platform) -> None:
    r = httpx.post(f"{platform.url}/async-function/hello", content=b"async")
    assert r.status_code == 202
    call_id = r.headers["x-call-id"]
    done = platform.async_result(call_id, 30)
    assert done.status_code == 200 and done.content == b"Hello, async!\n"
    assert done.headers["x-call-id"] == call_id and done.headers["x-function-status"] == "200"
    assert done.headers["x-function-name"] == "hello.openfaas-fn"
    assert done.headers["content-type"].startswith("text/plain")
    assert float(done.headers["x-duration-seconds"]) > 0


def test_result_needs_auth_and_unknown_ids_are_404(platform: Platform) -> None:
    assert httpx.get(f"{platform.url}/system/async-result/abc").status_code == 401
    with platform.client() as c:
        r = c.get("/system/async-result/0123456789abcdef")
        assert r.status_code == 404 and "error" in r.json()


def test_callback_receives_the_result(platform: Platform) -> None:
    got: list[tuple[dict[str, str], bytes]] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.end_headers()
            arrived.set()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/done"
        r = httpx.post(f"{platform.url}/async-function/hello", content=b"cb", headers={"X-Callback-Url": url})
        assert r.status_code == 202
        assert arrived.wait(30)
        headers, body = got[0]
        assert body == b"Hello, cb!\n"
        assert headers["x-call-id"] == r.headers["x-call-id"] and headers["x-function-status"] == "200"
        assert headers["x-function-name"] == "hello.openfaas-fn" and float(headers["x-duration-seconds"]) > 0
    finally:
        server.shutdown()


def test_a_callback_that_could_not_be_delivered_is_noted_on_the_result(platform: Platform) -> None:
    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(410)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/gone"
        r = httpx.post(f"{platform.url}/async-function/hello", content=b"cb", headers={"X-Callback-Url": url})
        call_id = r.headers["x-call-id"]
        with platform.client() as c:
            deadline = time.monotonic() + 30
            while "x-callback-error" not in (done := c.get(f"/system/async-result/{call_id}")).headers:
                assert time.monotonic() < deadline, "the callback's failure was not noted"
                time.sleep(0.05)
        assert done.status_code == 200 and done.content == b"Hello, cb!\n"  # the result is there either way
        assert "callback" in done.headers["x-callback-error"]
    finally:
        server.shutdown()


def test_a_bad_callback_url_is_refused(platform: Platform) -> None:
    r = httpx.post(f"{platform.url}/async-function/hello", headers={"X-Callback-Url": "file:///etc/passwd"})
    assert r.status_code == 400


def _cli(p: Platform, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], input=stdin, capture_output=True, env=p.env(), timeout=60
    )


def test_cli_invoke_async_prints_the_call_id_and_result_fetches_it(platform: Platform) -> None:
    out = _cli(platform, "invoke", "hello", "--async", stdin=b"cli")
    assert out.returncode == 0, out.stderr
    call_id = out.stdout.decode().strip()
    assert len(call_id) == 32
    fetched = _cli(platform, "result", call_id, "--wait", "30")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout == b"Hello, cli!\n"
    missing = _cli(platform, "result", "ffffffffffffffffffffffffffffffff")
    assert missing.returncode == 1 and b"no call" in missing.stderr


def test_cli_queue_ls_shows_the_functions_stream(platform: Platform) -> None:
    # A deployed function's stream is listed once the queue's workers have synced with the deploy (about a second;
    # this test may be the first of the module to run).
    deadline = time.monotonic() + 30
    while True:
        out = _cli(platform, "queue", "ls")
        assert out.returncode == 0, out.stderr
        if b"stoker:async:hello.openfaas-fn" in out.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert b"stoker:async:hello.openfaas-fn" in out.stdout and b"PENDING" in out.stdout, out.stdout
