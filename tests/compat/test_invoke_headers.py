"""Invocation headers as OpenFaaS's gateway sets them (issue 15, items 8 and 10): one ``X-Duration-Seconds`` (the
gateway's) even when the function sets its own, as of-watchdog does; ``X-Forwarded-Host`` carries the ``Host`` the
client asked for (the replica's ``Host`` is its own address, as behind OpenFaaS's proxy), unless the client sent
one."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.platform_fixture import Platform, write_handler

HANDLER = """
def handle(event, context):
    return {
        "statusCode": 200,
        "body": {k: v for k, v in event.headers.items() if k in ("host", "x-forwarded-host", "x-call-id")},
        "headers": {"X-Duration-Seconds": "99.0", "X-Start-Time": "1", "X-Call-Id": "the-replica's"},
    }
"""


@pytest.fixture(scope="module")
def headers_fn(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = write_handler(tmp_path_factory.mktemp("fn") / "headers", HANDLER)
    assert platform.deploy("headers", Path(folder)).status_code == 202
    return "headers"


def _call(url: str, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, dict[str, str]]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", "/function/headers", body=b"", headers=headers)
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
    _, kept = _call(platform.url, {"Host": "inner.example", "X-Forwarded-Host": "outer.example"})
    assert kept["x-forwarded-host"] == "outer.example"  # set by a proxy in front: kept, not doubled
