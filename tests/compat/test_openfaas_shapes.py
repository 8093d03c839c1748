"""What OpenFaaS clients read back, in the shapes faas-provider's types and the gateway's swagger give them (the
certifier's Test_ProviderInfo and its deploy/describe comparisons), on a real ``stoker up`` (local backend)."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx

from tests.platform_fixture import FUNCTIONS, ROOT, Platform

HEX40 = re.compile(r"[0-9a-f]{40}")


def test_system_info_names_the_build_in_both_sha_fields(platform: Platform) -> None:
    # GET /system/info as faas-cli's proxy.GetSystemInfo reads it: provider.{provider, orchestration,
    # version.{release, sha}} and version.{release, sha} all non-empty (the certifier fails on an empty sha).
    info = httpx.get(platform.url + "/system/info", auth=platform.auth).json()
    provider, gateway = info["provider"], info["version"]
    assert provider["provider"] == "stoker" and provider["orchestration"] == "local"
    for version in (provider["version"], gateway):
        assert version["release"]
        assert HEX40.fullmatch(version["sha"]), version
        assert version["commit_message"]
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():  # run from a checkout: the commit it is at, not a digest
        head = subprocess.run([git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert gateway["sha"] == head.strip()


def test_status_leaves_out_what_was_not_set_and_labels_the_function(platform: Platform) -> None:
    # faas-provider's FunctionStatus: envVars, constraints, limits and requests are `omitempty`.
    assert platform.deploy("bare", FUNCTIONS / "hello").status_code == 202
    with platform.client() as c:
        status = c.get("/system/function/bare").json()
        for key in ("envVars", "constraints", "limits", "requests"):
            assert key not in status, key
        assert status["labels"] == {"faas_function": "bare"}
        listed = next(f for f in c.get("/system/functions").json() if f["name"] == "bare")
        assert listed == {**status, "invocationCount": listed["invocationCount"]}

        fields = {
            "envVars": {"A": "1"},
            "constraints": ["node.platform.os == linux"],
            "limits": {"memory": "128Mi"},
            "requests": {"cpu": "100m"},
            "labels": {"team": "a", "com.openfaas.scale.min": "1"},
        }
        assert platform.deploy("full", FUNCTIONS / "hello", **fields).status_code == 202
        full = c.get("/system/function/full").json()
        for key in ("envVars", "constraints", "limits", "requests"):
            assert full[key] == fields[key], key
        assert full["labels"] == {**fields["labels"], "faas_function": "full"}
        for name in ("bare", "full"):
            assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202


def test_a_memory_limit_below_the_local_minimum_is_raised_and_said(platform: Platform) -> None:
    # OpenFaaS accepts limits.memory 5Mi (the certifier deploys it); a local replica needs 96Mi to start.
    r = platform.deploy("tiny", FUNCTIONS / "hello", limits={"memory": "5Mi"})
    assert r.status_code == 202, r.text
    with platform.client() as c:
        status = c.get("/system/function/tiny").json()
        assert status["limits"] == {"memory": "5Mi"}  # the deployment as sent
        assert "limits.memory 5Mi" in status["message"] and "rounded up to 96Mi" in status["message"]
        assert httpx.post(platform.url + "/function/tiny", content=b"x").text == "Hello, x!\n"
        assert c.request("DELETE", "/system/functions", json={"functionName": "tiny"}).status_code == 202
