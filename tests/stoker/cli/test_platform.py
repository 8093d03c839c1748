"""The stoker CLI as a user runs it (a subprocess) against a real platform."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.platform_fixture import FUNCTIONS, Platform


def stoker(
    platform: Platform, *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = platform.env()
    env.pop("STOKER_ADMIN_PASSWORD", None)  # the CLI must find the password in $STOKER_HOME/credentials
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def stack_deployed(platform: Platform) -> Platform:
    r = stoker(platform, "deploy", "-f", str(FUNCTIONS / "stack.yml"))
    assert r.returncode == 0, r.stderr
    for name in ("hello", "echo", "wordcount"):
        assert f"Deployed {name}" in r.stdout
    return platform


def test_list_and_describe(stack_deployed: Platform) -> None:
    r = stoker(stack_deployed, "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "INVOCATIONS", "REPLICAS", "AVAILABLE"]
    assert {row.split()[0] for row in rows} >= {"hello", "echo", "wordcount"}
    data = json.loads(stoker(stack_deployed, "list", "--json").stdout)
    assert {f["name"] for f in data} >= {"hello", "echo", "wordcount"}
    r = stoker(stack_deployed, "describe", "echo")
    assert r.returncode == 0 and "echo" in r.stdout and "Ready" in r.stdout


def test_invoke_with_stdin_method_headers_query(stack_deployed: Platform) -> None:
    r = stoker(stack_deployed, "invoke", "hello", stdin=b"cli")
    assert r.returncode == 0 and "cli" in r.stdout
    r = stoker(stack_deployed, "invoke", "echo", "--method", "PUT", "--header", "X-A=1", "--query", "k=v", stdin=b"b")
    data = json.loads(r.stdout)
    assert (data["method"], data["headers"]["x-a"], data["query"], data["body"]) == ("PUT", "1", {"k": "v"}, "b")
    r = stoker(stack_deployed, "invoke", "wordcount", stdin=b"{broken")
    assert r.returncode == 1 and "400" in r.stderr


def test_scale_logs_remove(stack_deployed: Platform, tmp_path: Path) -> None:
    r = stoker(stack_deployed, "deploy", "--name", "cli-fn", "--handler", str(FUNCTIONS / "hello"))
    assert r.returncode == 0, r.stderr
    assert stoker(stack_deployed, "scale", "cli-fn", "--replicas", "2").returncode == 0
    deadline = time.monotonic() + 30
    while json.loads(stoker(stack_deployed, "describe", "cli-fn", "--json").stdout)["availableReplicas"] != 2:
        assert time.monotonic() < deadline, "scale to 2 did not happen"
        time.sleep(0.2)
    stoker(stack_deployed, "invoke", "cli-fn", stdin=b"x")
    deadline = time.monotonic() + 30
    while "call_id=" not in (logs := stoker(stack_deployed, "logs", "cli-fn", "--tail", "20")).stdout:
        assert time.monotonic() < deadline, logs.stdout + logs.stderr
        time.sleep(0.2)
    assert stoker(stack_deployed, "remove", "cli-fn").returncode == 0
    r = stoker(stack_deployed, "describe", "cli-fn")
    assert r.returncode == 1 and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_failures_are_one_line_and_non_zero(stack_deployed: Platform, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "handler.py").write_text("def handle(event, context):\n    return (\n")
    r = stoker(stack_deployed, "deploy", "--name", "bad", "--handler", str(bad))
    assert r.returncode == 1
    assert "line" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = stoker(stack_deployed, "deploy", "--name", "Bad_Name", "--handler", str(bad))
    assert r.returncode == 2 and "invalid" in r.stderr
    r = stoker(stack_deployed, "invoke", "missing-fn", stdin=b"")
    assert r.returncode == 1 and "404" in r.stderr


def test_new_scaffold_deploys_and_answers(stack_deployed: Platform, tmp_path: Path) -> None:
    assert stoker(stack_deployed, "new", "greeter", "--dir", str(tmp_path)).returncode == 0
    r = stoker(stack_deployed, "deploy", "-f", str(tmp_path / "stack.yml"))
    assert r.returncode == 0, r.stderr
    r = stoker(stack_deployed, "invoke", "greeter", stdin=b"there")
    assert r.returncode == 0 and r.stdout


def test_queue_replay_of_an_unknown_function_or_id_fails(stack_deployed: Platform) -> None:
    r = stoker(stack_deployed, "queue", "replay", "no-such-fn")
    assert r.returncode == 1 and "not found" in r.stderr
    r = stoker(stack_deployed, "queue", "replay", "hello", "--id", "1-0")
    assert r.returncode == 1 and "not dead letters of hello" in r.stderr
    r = stoker(stack_deployed, "queue", "replay", "hello")  # a known function without dead letters: nothing to do
    assert r.returncode == 0 and "Replayed 0 dead letters of hello." in r.stdout
    r = stoker(stack_deployed, "queue", "dead", "hello", "-n", "openfaas-fn")
    assert r.returncode == 0, r.stderr
