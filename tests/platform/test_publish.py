"""Publishing to a stream through the gateway (``POST /system/streams/{stream}``, ``stoker queue publish``) on the
embedded queue, where nothing else can add a message: a trigger fires from it, hostile bodies get a clear error and
store nothing, and a function deployed by ``stoker up --stack`` reads what is published as soon as it says so."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

RECORDER = """
import json, os
def handle(event, context):
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"id": event.headers.get("x-stoker-message-id"), "body": event.body.decode(),
                            "type": event.headers.get("content-type")}) + "\\n")
    return "ok"
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_MAX_BODY_BYTES": str(64 * 1024)})
    yield p
    p.stop()


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _recorder(p: Platform, tmp: Path, name: str, **extra: Any) -> Path:
    out = tmp / f"{name}.jsonl"
    r = p.deploy(name, write_handler(tmp / name, RECORDER), envVars={"OUT": str(out)}, **extra)
    assert r.status_code == 202, r.text
    return out


def _cli(p: Platform, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], input=stdin, capture_output=True, env=p.env(), timeout=60
    )


def test_published_messages_fire_a_trigger_on_the_embedded_queue(platform: Platform, tmp_path: Path) -> None:
    name, stream = f"pub{uuid.uuid4().hex[:6]}", f"orders/{uuid.uuid4().hex[:6]}"  # a slash is fine in a name
    out = _recorder(platform, tmp_path, name)
    created = _cli(platform, "trigger", "create", name, stream)
    assert created.returncode == 0, created.stderr
    with platform.client() as c:  # right after the trigger is answered: no waiting for a worker
        r = c.post(f"/system/streams/{stream}", json={"order": "7", "qty": 2, "paid": True})
        assert r.status_code == 201 and r.json()["stream"] == stream
        json_id = r.json()["id"]
        raw = c.post(f"/system/streams/{stream}", content=b"\x00raw bytes", headers={"content-type": "text/plain"})
        assert raw.status_code == 201
    by_fields = _cli(platform, "queue", "publish", stream, "--field", "a=b", "--field", "c=d=e")
    assert by_fields.returncode == 0, by_fields.stderr
    by_stdin = _cli(platform, "queue", "publish", stream, stdin=b"from stdin")
    assert by_stdin.returncode == 0, by_stdin.stderr
    wait_until(lambda: len(_records(out)) == 4, 60, "four invocations")
    got = {r["id"]: r for r in _records(out)}
    assert json.loads(got[json_id]["body"]) == {"order": "7", "qty": "2", "paid": "true"}
    assert got[json_id]["type"] == "application/json"
    assert got[raw.json()["id"]]["body"] == "\x00raw bytes"
    assert json.loads(got[by_fields.stdout.decode().strip()]["body"]) == {"a": "b", "c": "d=e"}
    assert got[by_stdin.stdout.decode().strip()]["body"] == "from stdin"
    assert _cli(platform, "trigger", "rm", name, stream).returncode == 0


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "needle"),
    [
        ("/system/streams/stoker:async:x.openfaas-fn", b"x", {}, 400, "stoker's own"),
        ("/system/streams/a%01b", b"x", {}, 400, "control characters"),
        ("/system/streams/%0As", b"x", {}, 400, "control characters"),  # a line break too (was 404: no route)
        ("/system/streams/caf%C3%A9", b"x", {}, 400, "printable ASCII"),  # as the OpenAPI pattern says
        ("/system/streams/" + "s" * 300, b"x", {}, 400, "the most is 256"),
        ("/system/streams/s", b"[1, 2]", {"content-type": "application/json"}, 400, "an object"),
        ("/system/streams/s", b"{}", {"content-type": "application/json"}, 400, "at least one field"),
        ("/system/streams/s", b'{"a": {"b": 1}}', {"content-type": "application/json"}, 400, "an object cannot"),
        ("/system/streams/s", b'{"a": null}', {"content-type": "application/json"}, 400, "null cannot"),
        ("/system/streams/s", b"[" * 50_000, {"content-type": "application/json"}, 400, "deeper than"),
        ("/system/streams/s", b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
        ("/system/streams/s", b"x" * (64 * 1024 + 1), {}, 413, "over the limit"),
    ],
)
def test_hostile_publishes_get_a_clear_error_and_store_nothing(
    platform: Platform, path: str, body: bytes, headers: dict[str, str], status: int, needle: str
) -> None:
    with platform.client() as c:
        before = _settled_queues(c)
        r = c.post(path, content=body, headers=headers)
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]
        assert c.get("/system/queues").json() == before
    assert httpx.post(f"{platform.url}/system/streams/s", content=b"x").status_code == 401  # authenticated
    assert httpx.get(f"{platform.url}/healthz").status_code == 200


def _settled_queues(c: httpx.Client) -> object:
    """The queues listing once it holds still: no message in flight, and no row of a trigger that is gone (a trigger
    removed by the test before is dropped from the listing by the workers' next sync, about a second later, which must
    not be mistaken for a change made by this test)."""
    deadline = time.monotonic() + 30
    while True:
        rows = c.get("/system/queues").json()
        triggers = {(t["function"], t["stream"]) for t in c.get("/system/triggers").json()}
        idle = all(r["lag"] == 0 and r["pending"] == 0 for r in rows)
        synced = all(r["stream"].startswith("stoker:async:") or (r["function"], r["stream"]) in triggers for r in rows)
        if (idle and synced) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_trigger_for_an_unknown_function_is_404(platform: Platform) -> None:
    with platform.client() as c:
        r = c.post("/system/triggers", json={"function": "nosuch", "stream": "orders"})
        assert r.status_code == 404 and "nosuch" in r.json()["error"]
        assert {"function": "nosuch.openfaas-fn", "stream": "orders"} not in c.get("/system/triggers").json()
    cli = _cli(platform, "trigger", "create", "nosuch", "orders")
    assert cli.returncode != 0 and b"nosuch" in cli.stderr


def test_a_function_may_not_read_stokers_own_streams(platform: Platform, tmp_path: Path) -> None:
    name = f"spy{uuid.uuid4().hex[:6]}"
    spied = {"com.stoker.queue.stream": "orders, stoker:async:victim.openfaas-fn"}
    r = platform.deploy(name, write_handler(tmp_path / name, RECORDER), annotations=spied)
    assert r.status_code == 400 and "stoker's own" in r.json()["error"]
    with platform.client() as c:
        assert c.get(f"/system/function/{name}").status_code == 404


STACK = """\
version: 1.0
provider:
  name: stoker
functions:
  {name}:
    lang: python3-http
    handler: ./{name}
    environment:
      OUT: {out}
    annotations:
      com.stoker.queue.stream: {stream}
"""


def test_a_stack_function_reads_what_is_published_as_soon_as_up_says_it_is_deployed(tmp_path: Path) -> None:
    name, stream = f"stk{uuid.uuid4().hex[:6]}", f"jobs-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "out.jsonl"
    write_handler(tmp_path / name, RECORDER)
    stack = tmp_path / "stack.yml"
    stack.write_text(STACK.format(name=name, out=out, stream=stream))
    p = start_platform(tmp_path / "home", "--stack", str(stack))
    try:
        wait_until(lambda: any("deployed" in line for line in p.output), 60, "the stack deployed")
        with p.client() as c:
            ids = {c.post(f"/system/streams/{stream}", content=f"{i}".encode()).json()["id"] for i in range(50)}
        wait_until(lambda: len(_records(out)) >= 50, 60, "every message processed")
        assert {r["id"] for r in _records(out)} == ids
    finally:
        p.stop()
