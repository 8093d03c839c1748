"""The CLI, the gateway client and ``stoker new`` without a platform.

Error paths run the real command in a subprocess (exit status, one line on stderr, no traceback). What the CLI
sends is checked against a stand-in HTTP server from the standard library that records requests and answers
as scripted; integration tests against a real gateway live elsewhere.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stoker import bundle
from stoker.cli import main
from stoker.cli.scaffold import add_to_stack
from stoker.client import Client, GatewayError, error_text
from stoker.handler import Event, Headers
from stoker.stack import load_stack
from tests.fakes.gateway import FakeGateway, fake_gateway
from tests.wait_support import free_port

ROOT = Path(__file__).resolve().parents[3]
_ENV_VARS = ("STOKER_GATEWAY", "OPENFAAS_URL", "STOKER_ADMIN_PASSWORD", "OPENFAAS_PASSWORD", "STOKER_TOKEN")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No gateway or credentials leak in from the machine running the tests."""
    for var in _ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STOKER_HOME", str(tmp_path / "home"))


def run_cli(*args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args],
        cwd=cwd,
        env=env,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- a stand-in gateway --------------------------------------------------------------------------


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with fake_gateway() as fake:
        yield fake


def cli(gateway: FakeGateway, *args: str) -> int:
    return main([*args, "--gateway", gateway.url])


# -- error paths, as a subprocess ----------------------------------------------------------------


def test_unreachable_gateway_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("list", "--gateway", url, cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line == (
        f"stoker: cannot reach the gateway at {url}: connection refused (is 'stoker up' running? If it listens "
        "elsewhere, give --gateway URL or set STOKER_GATEWAY)"
    )


def test_gateway_flag_before_the_command(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("--gateway", url, "info", cwd=tmp_path)
    assert result.returncode == 1 and url in one_line(result.stderr)


def test_deploy_with_invalid_name(tmp_path: Path) -> None:
    result = run_cli("deploy", "--name", "Bad_Name", "--handler", "x", cwd=tmp_path)
    assert result.returncode == 2
    assert "function name 'Bad_Name' is invalid" in one_line(result.stderr)


def test_deploy_malformed_stack_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text("provider:\n  name: stoker\nfunctions: [\n  hello:\n")
    result = run_cli("deploy", "-f", "stack.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("stoker: stack.yml:")
    assert "invalid YAML" in result.stderr


def test_deploy_semantic_stack_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text("functions:\n  hello:\n    handler: ./hello\n")
    result = run_cli("deploy", cwd=tmp_path)  # ./stack.yml by default
    assert result.returncode == 2
    assert one_line(result.stderr).startswith('stoker: stack.yml:3: function "hello": handler folder')


def test_invoke_unreachable_reads_stdin_and_fails(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("invoke", "hello", "--gateway", url, cwd=tmp_path, stdin=b"hi")
    assert result.returncode == 1 and "cannot reach the gateway" in one_line(result.stderr)


def test_help_exits_zero(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0 and "deploy" in result.stdout


# -- usage errors, in-process --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["scale", "hello"], "--replicas"),
        (["scale", "hello", "--replicas", "-1"], "is negative"),
        (["logs", "hello", "--since", "soon"], "--since: 'soon' is not a duration"),
        (["deploy", "--name", "hello"], "needs --name and --handler"),
        (["deploy", "--handler", "x"], "needs --name and --handler"),
        (["deploy", "-f", "s.yml", "--name", "a", "--handler", "x"], "not both"),
        (["deploy"], "no stack.yml here"),
        (["deploy", "--name", "hello", "--handler", "missing"], "--handler missing: is not a folder"),
        (["invoke", "hello", "--header", "novalue"], "expected KEY=VALUE"),
        (["up", "--port", "70000"], "STOKER_PORT: 70000 is not a TCP port"),
        (["new", "Hello_World"], "function name 'Hello_World' is invalid"),
        (["list", "--gateway", "localhost:8080"], "'localhost:8080' is not a gateway URL"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["--gateway", f"http://127.0.0.1:{free_port()}", *argv]) == 2
    err = capsys.readouterr().err
    assert expected in one_line(err)


def test_up_with_bad_stack_fails_before_starting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stack.yml").write_text("functions:\n  Bad:\n    image: x\n")
    assert main(["up", "--port", "0", "--stack", str(tmp_path / "stack.yml")]) == 2
    assert f"{tmp_path / 'stack.yml'}:2:" in one_line(capsys.readouterr().err)


# -- stoker new ----------------------------------------------------------------------------------


def run_handler(folder: Path, body: bytes) -> Any:
    spec = importlib.util.spec_from_file_location(f"scaffold_{folder.name}", folder / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handle(Event("POST", "/", {}, Headers(), body), None)


def test_new_creates_a_deployable_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "hello", "--dir", str(tmp_path)]) == 0
    assert "Created" in capsys.readouterr().out
    folder = tmp_path / "hello"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "handler.py", "requirements.txt"]
    stack = load_stack(tmp_path / "stack.yml", {})
    # provider openfaas: faas-cli refuses any other name (stack/stack.go: ParseYAMLData)
    assert stack.provider == "openfaas" and stack.gateway == "http://127.0.0.1:8080"
    (fn,) = stack.functions
    assert fn.name == "hello" and fn.handler_dir == folder.resolve() and fn.image == "hello:latest"
    assert fn.to_deployment("c291cmNl")["image"] == ""  # stoker deploys the folder; the image is faas-cli's
    assert "handler.py" in bundle.check(bundle.pack(folder))  # what the gateway checks on upload
    assert run_handler(folder, b"Ada") == "Hello, Ada!\n"
    assert run_handler(folder, b"") == "Hello, world!\n"


def test_new_appends_and_keeps_the_file(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text(
        "# my functions\nprovider:\n  name: openfaas\nfunctions:\n    old:\n        image: x  # keep\n"
        "configuration:\n  copy: [common]\n"
    )
    assert main(["new", "fresh", "--dir", str(tmp_path)]) == 0
    text = (tmp_path / "stack.yml").read_text()
    assert text.startswith("# my functions\n") and "image: x  # keep" in text
    # The new entry follows the file's own indentation.
    assert "    fresh:\n        lang: python3-http\n        handler: ./fresh\n" in text
    assert [f.name for f in load_stack(tmp_path / "stack.yml", {}).functions] == ["old", "fresh"]


def test_new_refuses_an_existing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hello").mkdir()
    assert main(["new", "hello", "--dir", str(tmp_path)]) == 2
    assert "already exists" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "stack.yml").exists()


def test_new_refuses_a_name_already_in_the_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stack.yml").write_text("functions:\n  hello:\n    image: x\n")
    assert main(["new", "hello", "--dir", str(tmp_path)]) == 2
    assert "already has a function named 'hello'" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "hello").exists()


def test_new_refuses_bad_names_without_writing(tmp_path: Path) -> None:
    for bad in ("Hello", "-x", "a_b", "x" * 64):
        assert main(["new", bad, "--dir", str(tmp_path)]) == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "provider:\n  name: stoker\n",
        "functions:\nprovider:\n  name: stoker\n",
        "functions:\n  a:\n    image: x",
    ],
)
def test_add_to_stack_variants(text: str) -> None:
    out = add_to_stack(text, "fresh")
    kept = text.splitlines()
    assert [line for line in out.splitlines() if line in kept] == kept  # what was there stays, in order
    assert yaml.safe_load(out)["functions"]["fresh"] == {
        "lang": "python3-http",
        "handler": "./fresh",
        "image": "fresh:latest",
    }


# -- what the CLI sends --------------------------------------------------------------------------


def test_deploy_stack_sends_deployments(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(gateway, "deploy", "-f", str(ROOT / "functions" / "stack.yml"), "--filter", "[hw]*") == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"Deployed hello (openfaas-fn). URL: {gateway.url}/function/hello",
        f"Deployed wordcount (openfaas-fn). URL: {gateway.url}/function/wordcount",
    ]
    hello, wordcount = gateway.seen
    assert (hello.method, hello.path, hello.headers["content-type"]) == (
        "POST",
        "/system/functions",
        "application/json",
    )
    body = hello.json()
    assert set(body) == {
        "service", "namespace", "image", "envProcess", "envVars", "constraints", "secrets", "labels",
        "annotations", "limits", "requests", "readOnlyRootFilesystem", "source",
    }  # fmt: skip
    assert body["service"] == "hello" and body["namespace"] == "openfaas-fn" and body["image"] == ""
    assert "handler.py" in bundle.check(base64.b64decode(body["source"]))
    assert wordcount.json()["annotations"] == {"com.stoker.timeout": "10s"}


def test_deploy_conflict_falls_back_to_put(
    gateway: FakeGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text("def handle(event, context):\n    return 'x'\n")
    gateway.on("POST", "/system/functions", 409, {"error": "function 'fn' already exists"})
    argv = ["deploy", "--name", "fn", "--handler", str(tmp_path / "fn"), "--env", "A=1", "--label", "k=v"]
    assert cli(gateway, *argv, "--secret", "api-key", "-n", "team-a", "--json") == 0
    assert [(s.method, s.path) for s in gateway.seen] == [
        ("POST", "/system/functions"),
        ("PUT", "/system/functions"),
    ]
    body = gateway.seen[1].json()
    assert (body["envVars"], body["labels"], body["secrets"]) == ({"A": "1"}, {"k": "v"}, ["api-key"])
    assert body["namespace"] == "team-a"
    (result,) = json.loads(capsys.readouterr().out)
    assert result == {
        "action": "updated",
        "name": "fn",
        "namespace": "team-a",
        "url": f"{gateway.url}/function/fn.team-a",
    }


def test_deploy_goes_on_after_a_refusal(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.on("POST", "/system/functions", 400, {"error": "bad things"})
    gateway.on("POST", "/system/functions", 200, b"")
    assert cli(gateway, "deploy", "-f", str(ROOT / "functions" / "stack.yml"), "--filter", "[he]*") == 1
    captured = capsys.readouterr()
    assert one_line(captured.err) == "stoker: hello: bad things"
    assert captured.out.startswith("Deployed echo")


def test_remove_and_scale_bodies(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(gateway, "remove", "hello") == 0
    assert cli(gateway, "remove", "hello.team-a") == 0
    assert cli(gateway, "scale", "hello", "--replicas", "3", "-n", "team-a") == 0
    remove, remove_ns, scale = gateway.seen
    assert (remove.method, remove.path, remove.json()) == (
        "DELETE",
        "/system/functions",
        {"functionName": "hello"},
    )
    assert remove_ns.json() == {"functionName": "hello", "namespace": "team-a"}
    assert (scale.method, scale.path) == ("POST", "/system/scale-function/hello")
    assert scale.json() == {"serviceName": "hello", "replicas": 3, "namespace": "team-a"}
    assert capsys.readouterr().out.splitlines() == [
        "Removed hello (openfaas-fn).",
        "Removed hello (team-a).",
        "Scaled hello (team-a) to 3 replicas.",
    ]


def test_gateway_errors_become_one_line(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    gateway.on("GET", "/system/function/nope", 404, {"error": "function 'nope' not found"})
    gateway.on("DELETE", "/system/functions", 500, b"plain text\nover two lines")
    assert cli(gateway, "describe", "nope") == 1
    assert one_line(capsys.readouterr().err) == "stoker: function 'nope' not found"
    assert cli(gateway, "remove", "x") == 1
    assert one_line(capsys.readouterr().err) == "stoker: x: plain text over two lines"


def test_unauthorized_explains_where_credentials_come_from(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.on("GET", "/system/functions", 401, b"unauthorized")
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", "wrong")
    assert cli(gateway, "list") == 1
    line = one_line(capsys.readouterr().err)
    assert "refused the credentials (password from STOKER_ADMIN_PASSWORD)" in line
    assert gateway.seen[0].headers["authorization"] == basic("admin:wrong")


def test_credentials_file(gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "credentials").write_text(json.dumps({"username": "admin", "password": "from-file"}))
    assert cli(gateway, "namespaces") == 0
    assert gateway.seen[0].headers["authorization"] == basic("admin:from-file")
    monkeypatch.setenv("OPENFAAS_PASSWORD", "from-env")
    assert cli(gateway, "namespaces") == 0
    assert gateway.seen[1].headers["authorization"] == basic("admin:from-env")


def test_list_table_and_json(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    functions = [
        {"name": "wordcount", "invocationCount": 1234.0, "replicas": 2, "availableReplicas": 1, "image": ""},
        {"name": "hi", "invocationCount": 5, "replicas": 1, "availableReplicas": 1, "image": "me/hi:1"},
    ]
    gateway.on("GET", "/system/functions", 200, functions)
    assert cli(gateway, "list", "-n", "team-a") == 0
    assert gateway.seen[0].query == {"namespace": ["team-a"]}
    assert capsys.readouterr().out.splitlines() == [
        "NAME       INVOCATIONS  REPLICAS  AVAILABLE  IMAGE/SOURCE",
        "hi         5            1         1          me/hi:1",
        "wordcount  1234         2         1          (source)",
    ]
    assert cli(gateway, "--json", "list") == 0
    assert [f["name"] for f in json.loads(capsys.readouterr().out)] == ["hi", "wordcount"]


def test_logs_stream_ndjson(gateway: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        {
            "name": "hello",
            "namespace": "openfaas-fn",
            "instance": "hello-1",
            "timestamp": "T1",
            "text": "one\n",
        },
        {
            "name": "hello",
            "namespace": "openfaas-fn",
            "instance": "hello-2",
            "timestamp": "T2",
            "text": "two",
        },
    ]
    gateway.on("GET", "/system/logs", 200, "\n".join(json.dumps(x) for x in lines).encode() + b"\n\n")
    assert cli(gateway, "logs", "hello", "--tail", "5", "--since", "10m") == 0
    assert capsys.readouterr().out.splitlines() == ["T1 hello-1 one", "T2 hello-2 two"]
    query = gateway.seen[0].query
    assert query["name"] == ["hello"] and query["tail"] == ["5"] and query["follow"] == ["false"]
    assert query["since"][0].endswith("Z")


def test_invoke_passes_body_and_prints_raw(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    gateway.on("PUT", "/function/echo.team-a/some/path", 200, b"\x00raw\xff")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"payload")))
    argv = ["invoke", "echo.team-a", "--method", "put", "-H", "X-Demo=yes", "-q", "a=1", "-q", "a=2"]
    assert cli(gateway, *argv, "--path", "/some/path") == 0
    assert capsysbinary.readouterr().out == b"\x00raw\xff"
    call = gateway.seen[0]
    assert (call.method, call.body, call.headers["x-demo"]) == ("PUT", b"payload", "yes")
    assert call.query == {"a": ["1", "2"]}
    assert "authorization" not in call.headers  # function routes get no admin credentials


def test_invoke_failure_status(
    gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway.on("POST", "/function/wordcount", 400, {"error": "the body is not valid JSON"})
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"{bad")))
    assert cli(gateway, "invoke", "wordcount") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == "stoker: wordcount answered 400: the body is not valid JSON"


def test_gateway_precedence(
    gateway: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "handler.py").write_text("def handle(event, context):\n    return 'x'\n")
    dead = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "stack.yml").write_text(
        f"provider:\n  name: stoker\n  gateway: {gateway.url}\nfunctions:\n  fn:\n    handler: ./fn\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["deploy"]) == 0  # the stack file's gateway
    monkeypatch.setenv("OPENFAAS_URL", dead)
    assert main(["deploy"]) == 1  # the environment wins over the stack file
    assert dead in capsys.readouterr().err
    assert main(["deploy", "--gateway", gateway.url]) == 0  # and the flag over both
    assert len(gateway.seen) == 2


# -- the client on its own -----------------------------------------------------------------------


def test_client_deploy_update_puts_first(gateway: FakeGateway) -> None:
    gateway.on("PUT", "/system/functions", 404, {"error": "not found"})
    assert Client(gateway.url).deploy({"service": "x", "image": "y"}, update=True) == "created"
    assert [s.method for s in gateway.seen] == ["PUT", "POST"]


def test_client_rejects_a_bad_url() -> None:
    with pytest.raises(GatewayError, match="is not a gateway URL"):
        Client("ftp://example")


def test_client_bearer_token(gateway: FakeGateway) -> None:
    Client(gateway.url, token="t0k").info()
    assert gateway.seen[0].headers["authorization"] == "Bearer t0k"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "function \'x\' not found"}', "function 'x' not found"),
        (b'{"message": "from a proxy"}', "from a proxy"),
        (b"plain\ntext", "plain text"),
        (b"", "503 Service Unavailable"),
        (b"x" * 600, "x" * 500 + "..."),
    ],
)
def test_error_text(body: bytes, expected: str) -> None:
    assert error_text(body, 503, "Service Unavailable") == expected


# -- polish a new user meets first (issue 14, item 7) ----------------------------------------------


def test_version(tmp_path: Path) -> None:
    r = run_cli("--version", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "stoker 0.1.0")


def test_a_mistyped_command_gets_a_suggestion(tmp_path: Path) -> None:
    r = run_cli("lsit", cwd=tmp_path)
    assert r.returncode == 2
    assert "did you mean 'list'?" in one_line(r.stderr)


def test_an_unknown_flag_points_at_the_subcommand_help(tmp_path: Path) -> None:
    r = run_cli("deploy", "--nope", cwd=tmp_path)
    assert r.returncode == 2
    assert one_line(r.stderr) == "stoker: unrecognized arguments: --nope (see 'stoker deploy --help')"


def test_commands_offer_only_the_options_they_use(tmp_path: Path) -> None:
    for command in ("up", "controller", "base-image"):
        help_text = run_cli(command, "--help", cwd=tmp_path).stdout
        assert "--gateway" not in help_text and "--json" not in help_text, command
    assert "--gateway" not in run_cli("build", "--help", cwd=tmp_path).stdout
    deploy_help = " ".join(run_cli("deploy", "--help", cwd=tmp_path).stdout.split())
    for shown in ("--label K=V label (scaling", "--annotation K=V annotation", "--secret NAME secret the function"):
        assert shown in deploy_help, shown
    for command in ("queue", "trigger"):
        assert "-n NAMESPACE" in run_cli(command, "--help", cwd=tmp_path).stdout
