"""The CLI's deploy path against a real gateway (`stoker up`): the progress the gateway streams (NDJSON), a
redeploy of a changed function, and a deploy that fails, each as a user runs them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.platform_fixture import PASSWORD, ROOT, Platform, write_handler


def stoker(platform: Platform, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STOKER_", "OPENFAAS_"))}
    env.update(PYTHONPATH=str(ROOT), STOKER_ADMIN_PASSWORD=PASSWORD, STOKER_HOME=str(cwd / "cli-home"))
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args, "--gateway", platform.url],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def stack(folder: Path, text: str) -> Path:
    write_handler(folder / "greet", text)
    (folder / "stack.yml").write_text(
        "version: 1.0\nprovider:\n  name: stoker\nfunctions:\n  greet:\n    lang: python3-http\n    handler: ./greet\n"
    )
    return folder / "stack.yml"


def answer(platform: Platform, expected: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = httpx.post(f"{platform.url}/function/greet", timeout=30).text
        if text == expected:
            return text
        time.sleep(0.2)
    return text


def test_the_cli_deploys_then_redeploys_a_changed_function(platform: Platform, tmp_path: Path) -> None:
    file = stack(tmp_path, "def handle(event, context):\n    return 'v1'\n")
    first = stoker(platform, "deploy", "-f", str(file), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"Deployed greet (openfaas-fn). URL: {platform.url}/function/greet" in first.stdout
    assert answer(platform, "v1") == "v1"
    stack(tmp_path, "def handle(event, context):\n    return 'v2'\n")
    second = stoker(platform, "deploy", "-f", str(file), cwd=tmp_path)  # exists: POST 409, then PUT
    assert second.returncode == 0, second.stderr
    assert answer(platform, "v2") == "v2"


def test_the_gateway_streams_the_deploy_outcome_as_ndjson(platform: Platform, tmp_path: Path) -> None:
    from stoker import bundle

    write_handler(tmp_path / "nd", "def handle(event, context):\n    return 'nd'\n")
    body = {"service": "nd", "source": base64.b64encode(bundle.pack(tmp_path / "nd")).decode()}
    headers = {"Accept": "application/x-ndjson"}
    with httpx.Client(auth=platform.auth, timeout=120) as c:
        reply = c.post(f"{platform.url}/system/functions", json=body, headers=headers)
    assert reply.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
    assert events and events[-1] == {"status": 202}, events


def test_a_deploy_that_fails_to_start_fails_the_cli_with_the_reason(platform: Platform, tmp_path: Path) -> None:
    file = stack(tmp_path, "def handle(event, context)\n    return 'no colon'\n")
    failed = stoker(platform, "deploy", "-f", str(file), cwd=tmp_path)
    assert failed.returncode != 0
    assert "greet" in failed.stderr and "SyntaxError" in failed.stderr, failed.stderr
