"""Hostile JSON bodies on every management route that reads one (issue 11, item 8), against a real ``stoker up``.

Every route answers a too deep document with 400 (not a ``RecursionError`` and a 500), a body over its limit with
413 (declared in ``Content-Length`` or streamed chunked), anything that is not strict JSON with 400, always as
``{"error": ...}``; the gateway stays up and the platform's state is what it was.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, Platform, start_platform

JSON_BYTES = 256 * 1024  # STOKER_MAX_JSON_BYTES here: small, so the tests send little (but [ x 100,000 fits)
BUNDLE_BYTES = 1024 * 1024  # STOKER_MAX_BUNDLE_BYTES here
DEPTH = 64  # the default STOKER_MAX_JSON_DEPTH
DEPLOY_LIMIT = BUNDLE_BYTES * 4 // 3 + JSON_BYTES  # the deploy routes' body limit (base64 source + the rest)

# Every route that reads a JSON body, with the limit of its body.
ROUTES = [
    ("POST", "/system/functions", DEPLOY_LIMIT),
    ("PUT", "/system/functions", DEPLOY_LIMIT),
    ("DELETE", "/system/functions", JSON_BYTES),
    ("POST", "/system/scale-function/hello", JSON_BYTES),
    ("POST", "/system/secrets", JSON_BYTES),
    ("PUT", "/system/secrets", JSON_BYTES),
    ("DELETE", "/system/secrets", JSON_BYTES),
    ("POST", "/system/queue/hello/replay", JSON_BYTES),
    ("POST", "/system/triggers", JSON_BYTES),
    ("DELETE", "/system/triggers", JSON_BYTES),
]
IDS = [f"{m} {p}" for m, p, _ in ROUTES]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"STOKER_MAX_JSON_BYTES": str(JSON_BYTES), "STOKER_MAX_BUNDLE_BYTES": str(BUNDLE_BYTES)}
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env=env)
    assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
    yield p
    p.stop()


def _send(platform: Platform, method: str, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return httpx.request(method, platform.url + path, content=content, headers=headers, auth=platform.auth, timeout=60)


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    assert isinstance(message, str) and message
    return message


def _nested(levels: int) -> bytes:
    """An object whose field ``deep`` nests arrays so that the whole document is ``levels`` deep."""
    inner = b"[" * (levels - 1) + b"]" * (levels - 1)
    return b'{"name": "no such name!", "functionName": "no-such-fn", "function": "no-such-fn", "deep": ' + inner + b"}"


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES, ids=IDS)
def test_deep_document_is_400_and_the_gateway_stays_up(platform: Platform, method: str, path: str, limit: int) -> None:
    for body in (b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 40_000 + b"1" + b"}" * 40_000):
        assert "deeper than 64" in _error(_send(platform, method, path, body), 400)
    assert httpx.get(platform.url + "/healthz").status_code == 200


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES, ids=IDS)
def test_nesting_limit_is_exact(platform: Platform, method: str, path: str, limit: int) -> None:
    """64 levels reach the route's own checks (whatever they answer, it is about the fields); 65 do not."""
    r = _send(platform, method, path, _nested(DEPTH))
    assert r.status_code < 500 and "deeper" not in r.text, (r.status_code, r.text[:300])
    assert "deeper than 64" in _error(_send(platform, method, path, _nested(DEPTH + 1)), 400)


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES, ids=IDS)
def test_body_over_the_limit_is_413(platform: Platform, method: str, path: str, limit: int) -> None:
    def padded(size: int) -> bytes:
        head = b'{"name": "no such name!", "functionName": "no-such-fn", "pad": "'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    at_limit = _send(platform, method, path, padded(limit))
    assert at_limit.status_code != 413 and at_limit.status_code < 500, (at_limit.status_code, at_limit.text[:300])
    over = padded(limit + 1)
    assert "over the limit" in _error(_send(platform, method, path, over), 413)
    # Without Content-Length (chunked): counted as it arrives.
    chunks = (over[i : i + 8192] for i in range(0, len(over), 8192))
    assert "over the limit" in _error(_send(platform, method, path, chunks), 413)
    # Far over it, declared: refused on the header.
    assert "over the limit" in _error(_send(platform, method, path, b"[" + b"0," * limit + b"0]"), 413)


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES, ids=IDS)
@pytest.mark.parametrize(
    "body",
    [b"{", b"}", b'{"a": 1,}', b"[1, NaN]", b"Infinity", b'{"a": "\\ud800"}', b'{"a": "\xff"}', b"\x00", b"{}{}"],
    ids=["open", "close", "trailing-comma", "nan", "infinity", "lone-surrogate", "not-utf8", "nul", "two-documents"],
)
def test_anything_but_strict_json_is_400(platform: Platform, method: str, path: str, limit: int, body: bytes) -> None:
    _error(_send(platform, method, path, body), 400)


def test_deployment_strings_may_be_large_but_its_structure_may_not(platform: Platform) -> None:
    """The deploy routes take a body near the bundle limit because of the base64 source; the part outside strings
    (where one byte can become an object) stays within STOKER_MAX_JSON_BYTES."""
    many = b'{"service": "many", "image": "x", "labels": {}, "constraints": [' + b'"",' * (JSON_BYTES // 2) + b'""]}'
    assert len(many) < DEPLOY_LIMIT
    assert "outside its strings" in _error(_send(platform, "POST", "/system/functions", many), 413)
    lists = b'{"service": "lists", "constraints": [' + b"[]," * (JSON_BYTES // 3 + 1) + b"[]]}"
    assert "outside its strings" in _error(_send(platform, "POST", "/system/functions", lists), 413)


def test_state_is_unchanged_after_hostile_bodies(platform: Platform, tmp_path: Path) -> None:
    """Nothing the tests above sent changed anything: hello still serves, and a well-formed request still works."""
    for method, path, _ in ROUTES:
        _send(platform, method, path, b"[" * 100_000)
    with platform.client() as c:
        assert [f["name"] for f in c.get("/system/functions").json()] == ["hello"]
        assert c.get("/system/secrets").json() == []
        assert c.get("/system/triggers").json() == []
        value = base64.b64encode(b"\x00\xff").decode()
        assert c.post("/system/secrets", json={"name": "kept", "rawValue": value}).status_code == 201
        assert c.request("DELETE", "/system/secrets", content=json.dumps({"name": "kept"})).status_code == 200
    assert httpx.post(platform.url + "/function/hello", content=b"you").text == "Hello, you!\n"
