"""Invocation headers as OpenFaaS's gateway sets them (issue 15, items 8 and 10): one ``X-Duration-Seconds`` (the
gateway's) even when the function sets its own, as of-watchdog does; ``X-Forwarded-Host`` carries the ``Host`` the
client asked for (the replica's ``Host`` is its own address, as behind OpenFaaS's proxy). ``X-Forwarded-For``,
``-Proto`` and ``-Host`` are the gateway's own unless the peer is a proxy listed in ``STOKER_TRUSTED_PROXIES``
(issue 14, item 10): a client cannot make a function believe another address, scheme or host."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.platform_fixture import Platform, start_platform, write_handler

HANDLER = """
SHOWN = ("host", "x-forwarded-host", "x-forwarded-for", "x-forwarded-proto", "x-call-id")


def handle(event, context):
    return {
        "statusCode": 200,
        "body": {k: v for k, v in event.headers.items() if k in SHOWN},
        "headers": {"X-Duration-Seconds": "99.0", "X-Start-Time": "1", "X-Call-Id": "the-replica's"},
    }
"""


@pytest.fixture(scope="module")
def headers_fn(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = write_handler(tmp_path_factory.mktemp("fn") / "headers", HANDLER)
    assert platform.deploy("headers", Path(folder)).status_code == 202
    return "headers"


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform that trusts its loopback peer as a proxy in front of it."""
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    folder = write_handler(tmp_path_factory.mktemp("fn") / "headers", HANDLER)
    assert p.deploy("headers", Path(folder)).status_code == 202
    yield p
    p.stop()


SPOOFED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "outer.example"}


def _call(
    url: str, headers: dict[str, str], path: str = "/function/headers"
) -> tuple[http.client.HTTPResponse, dict[str, str]]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", path, body=b"", headers=headers)
    response = conn.getresponse()
    seen = json.loads(response.read())
    conn.close()
    return response, seen


def test_one_duration_start_and_call_id_each_the_gateways(platform: Platform, headers_fn: str) -> None:
    response, _ = _call(platform.url, {"X-Call-Id": "mine-1"})
    assert response.status == 200
    durations = response.msg.get_all("x-duration-seconds") or []
    assert len(durations) == 1 and float(durations[0]) < 99
    assert response.msg.get_all("x-start-time") and len(response.msg.get_all("x-start-time") or []) == 1
    assert response.msg.get_all("x-call-id") == ["mine-1"]


def test_the_host_the_client_asked_for_arrives_as_x_forwarded_host(platform: Platform, headers_fn: str) -> None:
    _, seen = _call(platform.url, {"Host": "functions.example.com"})
    assert seen["x-forwarded-host"] == "functions.example.com"
    assert seen["host"] != "functions.example.com"  # the replica's own address, as behind OpenFaaS's proxy
    assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"


def test_what_a_client_sends_as_x_forwarded_is_replaced(platform: Platform, headers_fn: str) -> None:
    _, seen = _call(platform.url, {"Host": "inner.example", **SPOOFED})
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the gateway's peer, not the address the client made up
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == "inner.example"


def test_a_trusted_proxy_keeps_its_headers_and_the_gateway_appends_its_peer(behind_proxy: Platform) -> None:
    _, seen = _call(behind_proxy.url, {"Host": "inner.example", **SPOOFED})
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == "outer.example"
    _, plain = _call(behind_proxy.url, {"Host": "inner.example"})  # a trusted peer that sent none
    assert plain["x-forwarded-for"] == "127.0.0.1" and plain["x-forwarded-proto"] == "http"
    assert plain["x-forwarded-host"] == "inner.example"


@pytest.mark.parametrize("trusted", [False, True])
def test_a_queued_call_sees_the_headers_the_gateway_set_when_it_accepted_it(
    platform: Platform, behind_proxy: Platform, headers_fn: str, trusted: bool
) -> None:
    p = behind_proxy if trusted else platform
    parts = urlsplit(p.url)
    assert parts.hostname and parts.port
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", "/async-function/headers", body=b"", headers={"Host": "inner.example", **SPOOFED})
    accepted = conn.getresponse()
    accepted.read()
    conn.close()
    assert accepted.status == 202
    call_id = accepted.headers["x-call-id"]
    deadline = time.monotonic() + 30
    with p.client() as c:
        while (r := c.get(f"/system/async-result/{call_id}")).status_code == 202 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert r.status_code == 200, r.text
    seen = r.json()
    if trusted:
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1" and seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-host"] == "outer.example"
    else:
        assert seen["x-forwarded-for"] == "127.0.0.1" and seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "inner.example"
