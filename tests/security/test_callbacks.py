"""SSRF through ``X-Callback-Url``, on a real ``stoker up``.

The attack: the gateway POSTed function output to any URL, loopback and private ranges included, in any spelling
(``http://0x7f000001:PORT``, the Redis port), and followed redirects. Now, by default, a callback to an internal
address is a 400 at submission (nothing queued, nothing sent), is checked again at delivery, connects only to the
address that was checked, and never follows a redirect; ``STOKER_CALLBACK_ALLOW`` opens chosen hosts or blocks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from events.callbacks import CallbackRefused, Target, _post, check_url, post_callback
from events.messages import Result
from stoker.callback_policy import CallbackPolicy
from tests.platform_fixture import FUNCTIONS, Platform, start_platform

pytestmark = pytest.mark.slow


class Receiver:
    """An HTTP server on loopback that records every request it gets (method, path, headers)."""

    def __init__(self, status: int = 200, location: str = "") -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                outer.arrived.set()

            do_GET = do_POST = do_PUT = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("callbacks-default"))
    assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
    yield p
    p.stop()


def _internal_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/x",
        f"http://0x7f000001:{port}/x",
        f"http://2130706433:{port}/x",
        f"http://0177.0.0.1:{port}/x",
        f"http://017700000001:{port}/x",
        f"http://127.1:{port}/x",
        f"http://localhost:{port}/x",
        f"http://LOCALHOST.:{port}/x",
        f"http://[::1]:{port}/x",
        f"http://[::ffff:127.0.0.1]:{port}/x",
        f"http://[::ffff:7f00:1]:{port}/x",
        f"http://[2002:7f00:1::1]:{port}/x",
        f"http://[64:ff9b::7f00:1]:{port}/x",
        f"http://0.0.0.0:{port}/x",
        f"http://[::]:{port}/x",
        f"http://innocent.example@127.0.0.1:{port}/x",
        f"https://127.0.0.1:{port}/x",
        "http://127.0.0.1:6379/",  # Redis's port
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
    ]


def test_internal_callbacks_are_refused_at_submission_in_every_spelling(platform: Platform, receiver: Receiver) -> None:
    with httpx.Client(timeout=30) as c:
        for url in _internal_urls(receiver.port):
            r = c.post(f"{platform.url}/async-function/hello", content=b"ssrf", headers={"X-Callback-Url": url})
            assert r.status_code == 400, (url, r.status_code, r.text)
            error = r.json()["error"]
            assert "X-Callback-Url" in error and "x-call-id" not in r.headers, (url, error)
        # Malformed URLs are 400s too.
        for url in [
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
            "http://",
            "http://a b/",
            "http://x:99999/",
        ]:
            r = c.post(f"{platform.url}/async-function/hello", headers={"X-Callback-Url": url})
            assert r.status_code == 400 and "X-Callback-Url" in r.json()["error"], (url, r.text)
        r = c.post(f"{platform.url}/async-function/hello", headers={"X-Callback-Url": "http://no-such-host.invalid/"})
        assert r.status_code == 400 and "cannot resolve" in r.json()["error"]
        # The calls were not queued: the function ran none of them.
        ok = c.post(f"{platform.url}/async-function/hello", content=b"plain")
        assert ok.status_code == 202
    assert receiver.requests == []


def _result() -> Result:
    return Result(200, [("content-type", "text/plain"), ("x-evil", "a\r\nInjected: 1")], b"out", 0.5, "hello.ns")


def test_delivery_checks_the_url_again(receiver: Receiver) -> None:
    """A URL queued before a policy change, or whose name resolves elsewhere now, is checked when it is sent."""
    problem = asyncio.run(post_callback(f"http://localhost:{receiver.port}/late", "c1", _result()))
    assert problem is not None and "refused" in problem and "loopback" in problem
    assert not any(path == "/late" for _, path, _ in receiver.requests)


def test_delivery_connects_to_the_checked_address_with_the_urls_host() -> None:
    """The connection goes to the address the check saw, never to a new resolution of the name (DNS rebinding):
    here the name does not resolve at all, and the request still arrives, with the URL's Host header."""
    r = Receiver()
    try:
        target = Target(
            url="http://rebind.invalid/cb",
            https=False,
            host="rebind.invalid",
            port=r.port,
            addresses=("127.0.0.1",),
            host_header=f"rebind.invalid:{r.port}",
            target="/cb?x=1",
        )
        assert asyncio.run(_post(target, "c2", _result(), 10)) == 200
        assert r.arrived.wait(10)
        method, path, headers = r.requests[0]
        assert (method, path) == ("POST", "/cb?x=1") and headers["host"] == f"rebind.invalid:{r.port}"
        assert headers["x-call-id"] == "c2" and headers["x-function-status"] == "200"
        assert "injected" not in headers  # a header value with CR/LF is never written
    finally:
        r.close()


def test_allowed_hosts_and_blocks_reach_internal_receivers_without_following_redirects() -> None:
    final = Receiver()
    redirecting = Receiver(status=302, location=f"http://127.0.0.1:{final.port}/stolen")
    try:
        by_block = CallbackPolicy.parse("127.0.0.0/8")
        by_name = CallbackPolicy.parse("localhost")
        target = asyncio.run(check_url(f"http://localhost:{final.port}/ok", by_name))
        assert "127.0.0.1" in target.addresses and target.host_header == f"localhost:{final.port}"
        assert asyncio.run(post_callback(f"http://localhost:{final.port}/ok", "c3", _result(), policy=by_name)) is None
        with pytest.raises(CallbackRefused):
            asyncio.run(check_url(f"http://localhost:{final.port}/ok", CallbackPolicy.parse("127.0.0.2")))
        problem = asyncio.run(post_callback(f"http://127.0.0.1:{redirecting.port}/r", "c4", _result(), policy=by_block))
        assert problem is not None and "302" in problem and "redirects are not followed" in problem
        assert [p for _, p, _ in final.requests] == ["/ok"]  # never /stolen
    finally:
        final.close()
        redirecting.close()


def test_an_allowed_internal_callback_is_delivered_end_to_end(tmp_path_factory: pytest.TempPathFactory) -> None:
    receiver = Receiver()
    p = start_platform(tmp_path_factory.mktemp("callbacks-allowed"), env={"STOKER_CALLBACK_ALLOW": "127.0.0.1/32"})
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        url = f"http://127.0.0.1:{receiver.port}/done"
        r = httpx.post(f"{p.url}/async-function/hello", content=b"cb", headers={"X-Callback-Url": url})
        assert r.status_code == 202
        assert receiver.arrived.wait(30)
        assert receiver.requests[0][2]["x-call-id"] == r.headers["x-call-id"]
        refused = httpx.post(f"{p.url}/async-function/hello", headers={"X-Callback-Url": "http://10.0.0.1/"})
        assert refused.status_code == 400
    finally:
        p.stop()
        receiver.close()
