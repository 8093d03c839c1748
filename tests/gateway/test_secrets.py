"""Secrets: the OpenFaaS /system/secrets API and the CLI; functions read them as files, never as env vars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.platform_fixture import Platform, write_handler

READER = """
import os
def handle(event, context):
    leaked = [k for k, v in os.environ.items() if v == "s3cr3t-value"]
    return {"token": context.secret("api-token"), "leaked": leaked}
"""


def _cli(platform: Platform, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], input=stdin, capture_output=True, env=platform.env(), timeout=60
    )


def test_secret_lifecycle_and_function_reads_it_as_a_file(platform: Platform, tmp_path: Path) -> None:
    with platform.client() as c:
        assert c.post("/system/secrets", json={"name": "api-token", "value": "s3cr3t-value"}).status_code == 201
        assert c.post("/system/secrets", json={"name": "api-token", "value": "x"}).status_code == 409
        assert {"name": "api-token", "namespace": "openfaas-fn"} in c.get("/system/secrets").json()
        assert "s3cr3t-value" not in c.get("/system/secrets").text

        write_handler(tmp_path / "reader", READER)
        assert platform.deploy("reader", tmp_path / "reader", secrets=["api-token"]).status_code == 202
        data = httpx.get(f"{platform.url}/function/reader").json()
        assert data == {"token": "s3cr3t-value", "leaked": []}

        assert c.put("/system/secrets", json={"name": "api-token", "value": "rotated"}).status_code == 200
        assert httpx.get(f"{platform.url}/function/reader").json()["token"] == "rotated"

        # In use: refused, naming the function, and nothing changes for it.
        r = c.request("DELETE", "/system/secrets", json={"name": "api-token"})
        assert r.status_code == 409 and "reader" in r.json()["error"] and "force" in r.json()["error"]
        assert httpx.get(f"{platform.url}/function/reader").json()["token"] == "rotated"
        r = c.request("DELETE", "/system/secrets", params={"force": "true"}, json={"name": "api-token"})
        assert r.status_code == 200
        assert c.request("DELETE", "/system/secrets", json={"name": "api-token"}).status_code == 404
        assert c.request("DELETE", "/system/functions", json={"functionName": "reader"}).status_code == 202


def test_deploy_with_a_missing_secret_is_refused(platform: Platform, tmp_path: Path) -> None:
    write_handler(tmp_path / "needs", READER)
    r = platform.deploy("needs", tmp_path / "needs", secrets=["not-there"])
    assert r.status_code == 400
    assert "not-there" in r.json()["error"]


def test_bad_secret_bodies(platform: Platform) -> None:
    with platform.client() as c:
        assert c.post("/system/secrets", json={"name": "Bad_Name", "value": "x"}).status_code == 400
        assert c.post("/system/secrets", json={"name": "novalue"}).status_code == 400
        r = c.post("/system/secrets", json={"name": "empty", "value": ""})
        assert r.status_code == 400 and "empty" in r.json()["error"]
        assert "empty" not in [s["name"] for s in c.get("/system/secrets").json()]
        assert c.post("/system/secrets", json={"name": "full", "value": "x"}).status_code == 201
        assert c.put("/system/secrets", json={"name": "full", "value": ""}).status_code == 400
        assert c.request("DELETE", "/system/secrets", json={"name": "full"}).status_code == 200
        assert c.put("/system/secrets", json={"name": "ghost", "value": "x"}).status_code == 404
        assert httpx.get(f"{platform.url}/system/secrets").status_code == 401


def test_secret_cli(platform: Platform) -> None:
    r = _cli(platform, "secret", "create", "cli-secret", "--from-literal", "v1")
    assert r.returncode == 0, r.stderr
    r = _cli(platform, "secret", "update", "cli-secret", stdin=b"v2")
    assert r.returncode == 0, r.stderr
    r = _cli(platform, "secret", "ls")
    assert "cli-secret" in r.stdout.decode()
    r = _cli(platform, "secret", "create", "cli-secret", "--from-literal", "again")
    assert r.returncode == 1 and b"already exists" in r.stderr
    assert b"stoker secret update cli-secret" in r.stderr
    r = _cli(platform, "secret", "create", "cli-empty", "--from-literal", "")
    assert r.returncode == 2 and b"empty" in r.stderr
    assert _cli(platform, "secret", "rm", "cli-secret").returncode == 0


def test_secret_in_use_cli(platform: Platform, tmp_path: Path) -> None:
    assert _cli(platform, "secret", "create", "used", "--from-literal", "v").returncode == 0
    write_handler(tmp_path / "user", "def handle(event, context):\n    return context.secret('used')\n")
    assert platform.deploy("user-a", tmp_path / "user", secrets=["used"]).status_code == 202
    assert platform.deploy("user-b", tmp_path / "user", secrets=["used"]).status_code == 202
    r = _cli(platform, "secret", "rm", "used")
    assert r.returncode == 1
    assert b"used by user-a, user-b" in r.stderr and b"--force" in r.stderr
    assert _cli(platform, "secret", "rm", "used", "--force").returncode == 0
    for name in ("user-a", "user-b"):
        assert _cli(platform, "remove", name).returncode == 0
