"""The replica's HTTP contract, against a real ``python -m runtime`` process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.replica.conftest import StartReplica
from tests.runtime.replica.replica_process import ReplicaProcess, write_function

RETURNS = """
from stoker import Response

def handle(event, context):
    return {
        "/str": lambda: "héllo",
        "/bytes": lambda: b"\\x00\\x01",
        "/dict": lambda: {"a": 1},
        "/list": lambda: [1, "two"],
        "/none": lambda: None,
        "/response": lambda: Response("created", 201, {"X-Thing": "1"}),
        "/response-json": lambda: Response({"ok": True}, 202),
        "/typed": lambda: Response("<b>hi</b>", 200, {"Content-Type": "text/html", "Content-Length": "99"}),
        "/py3http": lambda: {"statusCode": 418, "body": "teapot", "headers": {"X-Tea": "earl grey"}},
        "/py3http-json": lambda: {"statusCode": 200, "body": {"k": "v"}},
        "/py3http-empty": lambda: {"statusCode": 404},
        "/plain-dict": lambda: {"statusCode": 200, "extra": 1},
        "/unsupported": lambda: object(),
        "/bad-header": lambda: Response("x", 200, {"X-Bad": "a\\r\\nSet-Cookie: evil=1"}),
    }[event.path]()
"""


@pytest.fixture(scope="module")
def returns_replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaProcess]:
    replica = ReplicaProcess(write_function(tmp_path_factory.mktemp("returns"), RETURNS), {})
    yield replica
    replica.stop()


@pytest.mark.parametrize(
    ("path", "status", "content_type", "body", "header"),
    [
        ("/str", 200, "text/plain; charset=utf-8", "héllo".encode(), None),
        ("/bytes", 200, "application/octet-stream", b"\x00\x01", None),
        ("/dict", 200, "application/json", b'{"a": 1}', None),
        ("/list", 200, "application/json", b'[1, "two"]', None),
        ("/none", 200, None, b"", None),
        ("/response", 201, "text/plain; charset=utf-8", b"created", ("x-thing", "1")),
        ("/response-json", 202, "application/json", b'{"ok": true}', None),
        ("/typed", 200, "text/html", b"<b>hi</b>", None),
        ("/py3http", 418, "text/plain; charset=utf-8", b"teapot", ("x-tea", "earl grey")),
        ("/py3http-json", 200, "application/json", b'{"k": "v"}', None),
        ("/py3http-empty", 404, None, b"", None),
        ("/plain-dict", 200, "application/json", b'{"statusCode": 200, "extra": 1}', None),
    ],
)
def test_return_values_become_responses(
    returns_replica: ReplicaProcess,
    path: str,
    status: int,
    content_type: str | None,
    body: bytes,
    header: tuple[str, str] | None,
) -> None:
    with returns_replica.client() as client:
        response = client.get(path)
    assert response.status_code == status
    assert response.headers.get("content-type") == content_type
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))
    if header:
        assert response.headers[header[0]] == header[1]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/unsupported", "function echo failed: BadReturn: handler returned object; return str, bytes"),
        ("/bad-header", "function echo failed: BadReturn: header 'X-Bad'"),
    ],
)
def test_unusable_return_value_is_a_500(returns_replica: ReplicaProcess, path: str, message: str) -> None:
    with returns_replica.client() as client:
        response = client.get(path)
    assert response.status_code == 500
    assert response.text.startswith(message)
    assert "set-cookie" not in response.headers


def test_health_and_ready(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(event, context):\n    return 'hi'\n")
    with replica.client() as client:
        assert client.get("/_/health").status_code == 200
        assert client.get("/_/ready").status_code == 200
        # Other methods on the probe paths are function calls.
        assert client.post("/_/health").text == "hi"


def test_event_and_context_fields(start_replica: StartReplica, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "api-key").write_text("s3cret\n")
    replica = start_replica(
        """
        def handle(event, context):
            return {
                "method": event.method, "path": event.path, "query": event.query,
                "query_list": event.query_list, "headers": dict(event.headers),
                "by_any_case": event.headers["X-CUSTOM"], "text": event.text, "json": event.json(),
                "function": context.function_name, "namespace": context.namespace, "call_id": context.call_id,
                "secret": context.secret("api-key"), "remaining": context.remaining(),
            }
        """,
        env={"STOKER_SECRETS_DIR": str(secrets), "STOKER_NAMESPACE": "team-a", "exec_timeout": "30s"},
    )
    with replica.client() as client:
        response = client.post(
            "/a/b%20c?x=1&x=2&y=", content=b'{"k": [1, 2]}', headers={"X-Custom": "v", "X-Call-Id": "abc-123"}
        )
    assert response.status_code == 200
    got = response.json()
    assert (got["method"], got["path"]) == ("POST", "/a/b c")
    assert got["query"] == {"x": "1", "y": ""}
    assert got["query_list"] == [["x", "1"], ["x", "2"], ["y", ""]]
    assert got["headers"]["x-custom"] == "v" and got["by_any_case"] == "v"
    assert (got["text"], got["json"]) == ('{"k": [1, 2]}', {"k": [1, 2]})
    assert (got["function"], got["namespace"], got["call_id"], got["secret"]) == (
        "echo",
        "team-a",
        "abc-123",
        "s3cret",
    )
    assert 25 < got["remaining"] <= 30


def test_large_body_is_read_in_full(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(event, context):\n    return str(len(event.body))\n")
    with replica.client() as client:
        assert client.put("/", content=b"x" * 3_000_000).text == "3000000"


def test_async_handler(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        import asyncio

        async def handle(event, context):
            await asyncio.sleep(0.01)
            return {"async": True, "body": event.text}
        """
    )
    with replica.client() as client:
        response = client.post("/", content=b"hi")
    assert response.json() == {"async": True, "body": "hi"}


def test_exception_is_500_with_traceback_in_the_log(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        def handle(event, context):
            return parse(event.text)

        def parse(text):
            raise ValueError(f"bad input {text!r}")
        """
    )
    with replica.client() as client:
        response = client.post("/", content=b"zz", headers={"X-Call-Id": "failing-call"})
        assert response.status_code == 500
        assert response.text == "function echo failed: ValueError: bad input 'zz'"
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        # the replica keeps serving
        assert client.get("/_/ready").status_code == 200
    replica.wait_for('raise ValueError(f"bad input {text!r}")', stream="stderr")
    traceback = [line for line in replica.stderr if line.startswith("call_id=failing-call ")]
    assert any("Traceback (most recent call last):" in line for line in traceback)
    assert any('handler.py", line 3, in handle' in line for line in traceback)
    assert traceback[-1].rstrip().endswith("ValueError: bad input 'zz'")


def test_sys_exit_in_handler_fails_the_call_not_the_replica(start_replica: StartReplica) -> None:
    replica = start_replica("import sys\ndef handle(event, context):\n    sys.exit(1)\n")
    with replica.client() as client:
        assert client.get("/").status_code == 500
        assert client.get("/_/health").status_code == 200


def test_one_log_line_per_call_with_the_call_id(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        def handle(event, context):
            context.logger.info("hello from the handler")
            return context.call_id
        """
    )
    with replica.client() as client:
        given = client.post("/some/path", headers={"X-Call-Id": "call-1"})
        generated = client.get("/other")
    assert given.text == "call-1"
    assert re.fullmatch(r"[0-9a-f]{32}", generated.text)
    replica.wait_for(f"call_id={generated.text} method=GET")
    lines = [line for line in replica.stdout if "call_id=call-1 " in line]
    assert lines[0] == "call_id=call-1 level=INFO hello from the handler\n"
    call_line = r"call_id=call-1 method=POST path=/some/path status=200 duration=\d+\.\d{4}\n"
    assert re.fullmatch(call_line, lines[1])
    assert len(lines) == 2
    other = f"call_id={generated.text} method=GET path=/other status=200"
    assert sum(other in line for line in replica.stdout) == 1


def test_probes_are_not_logged_as_calls(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(event, context):\n    return 'x'\n")
    with replica.client() as client:
        client.get("/_/ready")
        client.get("/_/health")
        client.get("/last", headers={"X-Call-Id": "the-call"})
    replica.wait_for("call_id=the-call")
    assert [line for line in replica.stdout if "method=" in line] == [replica.wait_for("call_id=the-call")]
