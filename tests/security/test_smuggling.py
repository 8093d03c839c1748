"""Request smuggling through the proxy: whatever a client puts in the path, query or headers of a call, the replica
sees exactly one request for it, with what the client sent, and every caller gets its own answer.

The function counts the requests its one replica receives; a smuggled request shows up as a count that moved by two,
and its answer as someone else's nonce. Before the proxy forwarded the raw path, ``%0d%0a`` in the path was decoded
into the request line: the first test below was answered by a replica that had seen an injected ``Host: a``.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.security.rawhttp import Answer, Connection, call, nonce, request

PROBE = """
import itertools, os

_calls = itertools.count(1)


def handle(event, context):
    return {
        "n": next(_calls),
        "pid": os.getpid(),
        "method": event.method,
        "path": event.path,
        "query": event.query_list,
        "nonce": event.headers.get("x-nonce", ""),
        "headers": dict(event.headers),
    }
"""

SMUGGLE = b"/function/probe/x%20HTTP/1.1%0d%0aHost:%20a%0d%0aContent-Length:%200%0d%0a%0d%0aGET%20/smuggled"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_POOL_SIZE": "0"})
    folder = write_handler(tmp_path_factory.mktemp("fn") / "probe", PROBE)
    # One replica only, so one counter sees every request the function gets.
    labels = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "1"}
    assert p.deploy("probe", folder, labels=labels).status_code == 202
    yield p
    p.stop()


class Counter:
    """Follows the replica's request count through clean probe calls."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.n = self.probe()

    def probe(self) -> int:
        tag = nonce()
        answer = call(self.url, request("GET", b"/function/probe/probe", [(b"x-nonce", tag.encode())]))
        assert answer.status == 200, answer
        data = answer.json()
        assert data["nonce"] == tag, "a probe got someone else's answer"
        return int(data["n"])

    def expect(self, hostile: Answer) -> None:
        """After one hostile call: the replica saw it once if the function answered it, not at all otherwise."""
        if hostile.status == 200:
            assert hostile.json()["n"] == self.n + 1, "the replica saw more than one request for one call"
            self.n += 1
        after = self.probe()
        assert after == self.n + 1, f"the replica saw {after - self.n - 1} request(s) nobody sent"
        self.n = after


def test_the_reported_smuggling_request_reaches_the_replica_as_one_request(gw: Platform) -> None:
    counter = Counter(gw.url)
    tag = nonce()
    answer = call(gw.url, request("GET", SMUGGLE, [(b"x-nonce", tag.encode())]))
    assert answer.status == 200
    data = answer.json()
    assert data["nonce"] == tag
    # The function gets the path decoded, as data; the replica's request line and headers are untouched.
    assert data["path"] == "/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nGET /smuggled"
    assert data["headers"]["host"] != "a"
    counter.expect(answer)


@pytest.mark.parametrize(
    "target",
    [
        b"/function/probe/a%0d%0aX-Injected:%20yes",
        b"/function/probe/a%0aX-Injected:%20yes",
        b"/function/probe/a%0dX-Injected:%20yes",
        b"/function/probe/nul%00byte",
        b"/function/probe/del%7fand%1bescape",
        b"/function/probe/q?a=%0d%0aX-Injected:%20yes&b=%00",
        b"/function/probe/%E2%9C%93?%E2%9C%93=%E2%9C%93",
        b"/function/%70robe/encoded-name",
    ],
)
def test_encoded_control_characters_are_forwarded_encoded(gw: Platform, target: bytes) -> None:
    counter = Counter(gw.url)
    answer = call(gw.url, request("GET", target))
    assert answer.status == 200, answer
    data = answer.json()
    sub, _, query = target.decode().partition("?")
    assert data["path"] == unquote("/" + sub.split("/", 3)[3])
    assert data["query"] == [list(kv) for kv in parse_qsl(query, keep_blank_values=True)]
    assert "x-injected" not in data["headers"]
    counter.expect(answer)


def test_a_percent_encoded_prefix_is_refused(gw: Platform) -> None:
    answer = call(gw.url, request("GET", b"/functio%6E/probe"))
    assert answer.status == 400
    assert "error" in answer.json()


def test_async_calls_store_and_replay_the_raw_path(gw: Platform) -> None:
    counter = Counter(gw.url)
    tag = nonce()
    target = b"/async-function/probe/a%0d%0aX-Injected:%20yes?q=%0d%0a"
    answer = call(gw.url, request("POST", target, [(b"x-nonce", tag.encode())], b"body"))
    assert answer.status == 202
    call_id = answer.headers["x-call-id"]
    deadline = time.monotonic() + 30
    with gw.client() as c:
        while (result := c.get(f"/system/async-result/{call_id}")).status_code == 202:
            assert time.monotonic() < deadline, "the async call did not run"
            time.sleep(0.05)
    assert result.status_code == 200
    data = result.json()
    assert data["nonce"] == tag
    assert data["path"] == "/a\r\nX-Injected: yes"
    assert data["query"] == [["q", "\r\n"]]
    assert "x-injected" not in data["headers"]
    assert counter.probe() == counter.n + 2  # the queued call reached the replica once, then this probe


# --- arbitrary bytes -----------------------------------------------------------------------------------------------
_URL_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/")


def _encode(pairs: list[tuple[int, bool]], safe: frozenset[int]) -> bytes:
    """Bytes as a client may put them in a URL: safe ones as they are or percent-encoded, the rest encoded."""
    return b"".join(bytes([b]) if raw and b in safe else b"%%%02X" % b for b, raw in pairs)


_pairs = st.lists(st.tuples(st.integers(0, 255), st.booleans()), max_size=32)
# A raw CR or LF in a header is the client's own framing (the gateway's parser takes it as a line end, or refuses
# it), not something the proxy forwards; every other byte is fair game.
_value = st.binary(max_size=32).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_name = st.one_of(
    st.sampled_from([b"host", b"x-call-id", b"te", b"keep-alive", b"x-forwarded-for", b"trailer"]),
    st.binary(min_size=1, max_size=12).map(lambda b: b"x-" + bytes(c for c in b if c not in b"\r\n:")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=_pairs, query=_pairs, headers=st.lists(st.tuples(_name, _value), max_size=4))
def test_arbitrary_bytes_in_path_query_and_headers_give_one_request_per_call(
    gw: Platform, path: list[tuple[int, bool]], query: list[tuple[int, bool]], headers: list[tuple[bytes, bytes]]
) -> None:
    counter = Counter(gw.url)
    tag = nonce()
    raw_path = b"/function/probe/" + _encode(path, _URL_SAFE - {ord("?")})
    raw_query = _encode(query, _URL_SAFE | {ord("?")})
    target = raw_path + b"?" + raw_query if raw_query else raw_path
    try:
        answer = call(gw.url, request("GET", target, [*headers, (b"x-nonce", tag.encode())]), timeout=15)
    except ConnectionError:
        answer = Answer(0)  # the gateway's parser refused the request outright and closed the connection
    assert answer.status in (0, 200, 400, 404, 431), answer
    if answer.status == 200:
        data = answer.json()
        assert data["nonce"] == tag
        assert data["path"] == unquote(raw_path[len(b"/function/probe") :].decode())
        assert data["query"] == [list(kv) for kv in parse_qsl(raw_query.decode(), keep_blank_values=True)]
    counter.expect(answer)


def test_three_concurrent_clients_never_get_each_others_answers(gw: Platform) -> None:
    counter = Counter(gw.url)
    calls_each = 120

    def client(i: int) -> int:
        answered = 0
        with Connection(gw.url) as conn:
            for k in range(calls_each):
                tag = f"{i}-{k}-{nonce()}"
                target = SMUGGLE if k % 2 else b"/function/probe/plain"
                answer = conn.call(request("GET", target, [(b"x-nonce", tag.encode())]))
                assert answer.status == 200, answer
                assert answer.json()["nonce"] == tag, f"client {i} got another caller's answer"
                answered += 1
        return answered

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        total = sum(pool.map(client, range(3)))
    assert total == 3 * calls_each
    # Every answered call reached the replica once, and nothing else did.
    assert counter.probe() == counter.n + total + 1


def test_httpx_client_sees_plain_calls_unchanged(gw: Platform) -> None:
    r = httpx.post(f"{gw.url}/function/probe/some/sub path", params={"a": "1 2"}, content=b"x", timeout=10)
    assert r.status_code == 200
    assert r.json()["path"] == "/some/sub path"
    assert r.json()["query"] == [["a", "1 2"]]
