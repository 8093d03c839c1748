"""Idle keep-alive connections (issue 15, item 3): Go clients (faas-cli, the certifier) keep a connection idle for up
to 90 s and reuse it for a POST, which they do not retry when the server has closed it meanwhile. The gateway keeps
idle connections for ``STOKER_KEEPALIVE_TIMEOUT_S`` (120 s by default)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.platform_fixture import PASSWORD, Platform, start_platform
from tests.security.rawhttp import Connection

AUTH = "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def _secret_calls_over_one_connection(url: str, pause_s: float, name: str) -> list[int]:
    """Create a secret, stay idle for ``pause_s``, update it and delete it on the same connection (what the
    certifier's secret tests do); http.client does not reconnect, so a connection closed meanwhile fails."""
    conn = _connection(url)
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    statuses = []
    conn.request("POST", "/system/secrets", body=f'{{"name": "{name}", "value": "a"}}', headers=headers)
    response = conn.getresponse()
    response.read()
    statuses.append(response.status)
    sock = conn.sock  # the next requests must go over this very socket
    time.sleep(pause_s)  # the idle time is the behaviour under test, not a wait for something to happen
    for method in ("PUT", "DELETE"):
        conn.request(method, "/system/secrets", body=f'{{"name": "{name}", "value": "b"}}', headers=headers)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        assert conn.sock is sock  # reused, not reopened
    conn.close()
    return statuses


def test_a_connection_is_reused_after_idle_pauses_of_5_and_30_seconds(platform: Platform) -> None:
    results: dict[float, list[int] | BaseException] = {}

    def run(pause: float) -> None:
        try:
            results[pause] = _secret_calls_over_one_connection(platform.url, pause, f"ka-{int(pause)}")
        except BaseException as exc:
            results[pause] = exc

    threads = [threading.Thread(target=run, args=(pause,)) for pause in (5.5, 30.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {5.5: [201, 200, 200], 30.0: [201, 200, 200]}


@pytest.fixture
def short_keepalive(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path / "home", env={"STOKER_KEEPALIVE_TIMEOUT_S": "1"})
    yield p
    p.stop()


REQUEST = f"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n\r\n".encode()


def test_the_idle_timeout_is_the_setting(short_keepalive: Platform) -> None:
    with Connection(short_keepalive.url) as conn:
        assert conn.call(REQUEST).status == 200
        conn.sock.settimeout(10)
        started = time.monotonic()
        assert conn.sock.recv(1) == b""  # closed by the gateway once idle for the setting's 1 s
        assert 0.5 < time.monotonic() - started < 5


@pytest.fixture
def bounded(tmp_path: Path) -> Iterator[Platform]:
    p = start_platform(tmp_path / "home", env={"STOKER_MAX_CONNECTIONS": "8", "STOKER_POOL_SIZE": "0"})
    yield p
    p.stop()


def test_long_idle_keepalive_connections_still_make_room_at_the_connection_bound(bounded: Platform) -> None:
    idle = [Connection(bounded.url) for _ in range(16)]  # twice the bound, each idle after one answer
    try:
        served = 0
        for conn in idle:
            # One closed to make room before its request went out is allowed: the bound is the point.
            with contextlib.suppress(OSError):
                served += conn.call(REQUEST).status == 200
        assert served >= 8
        for _ in range(5):  # new clients are served: the oldest idle connections give way
            with Connection(bounded.url) as fresh:
                assert fresh.call(REQUEST).status == 200
        idle[0].sock.settimeout(10)
        assert idle[0].sock.recv(1) == b""  # the oldest was closed, long before its keep-alive ran out
    finally:
        for conn in idle:
            conn.close()


def test_the_setting_is_validated(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="STOKER_KEEPALIVE_TIMEOUT_S"):
        start_platform(tmp_path / "home", env={"STOKER_KEEPALIVE_TIMEOUT_S": "0"})
