"""The OpenFaaS-compatible management API: CRUD, status, scale, logs, auth, bad input."""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest

from stoker import bundle
from tests.platform_fixture import FUNCTIONS, Platform, write_handler
from tests.wait_support import wait_until


@pytest.mark.parametrize(
    "auth", [None, ("admin", "wrong"), ("root", "test-password")], ids=["missing", "wrong-password", "wrong-user"]
)
def test_system_routes_need_credentials(platform: Platform, auth: tuple[str, str] | None) -> None:
    for method, path in (("GET", "/system/functions"), ("GET", "/system/info"), ("POST", "/system/functions")):
        r = httpx.request(method, platform.url + path, auth=auth)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Basic")


def test_bearer_token_and_basic_auth_work(platform: Platform) -> None:
    assert (
        httpx.get(platform.url + "/system/info", headers={"Authorization": "Bearer test-password"}).status_code == 200
    )
    assert httpx.get(platform.url + "/system/info", headers={"Authorization": "Bearer nope"}).status_code == 401
    info = httpx.get(platform.url + "/system/info", auth=platform.auth).json()
    assert info["provider"]["provider"] == "stoker"
    assert info["provider"]["orchestration"] == "local"


def test_health_is_open(platform: Platform) -> None:
    assert httpx.get(platform.url + "/healthz").status_code == 200


def test_function_lifecycle(platform: Platform) -> None:
    with platform.client() as c:
        assert platform.deploy("life", FUNCTIONS / "hello", labels={"team": "a"}).status_code == 202
        again = platform.deploy("life", FUNCTIONS / "hello")
        assert again.status_code == 409

        status = c.get("/system/function/life").json()
        assert status["name"] == "life" and status["namespace"] == "openfaas-fn"
        assert status["replicas"] == 1 and status["availableReplicas"] == 1
        assert status["labels"] == {"team": "a", "faas_function": "life"}
        assert status["createdAt"].endswith("Z")
        assert "source" not in status

        httpx.get(f"{platform.url}/function/life")
        assert c.get("/system/function/life").json()["invocationCount"] == 1
        assert any(f["name"] == "life" for f in c.get("/system/functions").json())

        r = c.post("/system/scale-function/life", json={"serviceName": "life", "replicas": 3})
        assert r.status_code == 202
        wait_until(lambda: c.get("/system/function/life").json()["availableReplicas"] == 3, 20)

        r = c.post("/system/scale-function/life", json={"serviceName": "life", "replicas": 1})
        wait_until(lambda: c.get("/system/function/life").json()["availableReplicas"] == 1, 20)

        # update in place: new code serves, and nothing failed during the roll
        body = {"service": "life", "source": _bundle({"handler.py": "def handle(e, c):\n    return 'v2'\n"})}
        assert c.put("/system/functions", json=body).status_code == 202
        assert httpx.get(f"{platform.url}/function/life").text == "v2"

        assert c.request("DELETE", "/system/functions", json={"functionName": "life"}).status_code == 202
        assert c.get("/system/function/life").status_code == 404
        assert httpx.get(f"{platform.url}/function/life").status_code == 404
        assert c.request("DELETE", "/system/functions", json={"functionName": "life"}).status_code == 404


def test_failed_update_keeps_the_old_version(platform: Platform, tmp_path: Path) -> None:
    assert platform.deploy("keep", FUNCTIONS / "hello").status_code == 202
    before = httpx.get(f"{platform.url}/function/keep").text
    broken = {"service": "keep", "source": _bundle({"handler.py": "def handle(:\n"})}
    with platform.client() as c:
        r = c.put("/system/functions", json=broken)
    assert r.status_code == 422
    assert "line 1" in r.json()["error"]
    assert httpx.get(f"{platform.url}/function/keep").text == before


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"service": "Bad_Name", "image": "x"}, "invalid"),
        ({"service": "a" * 64, "image": "x"}, "at most 63"),
        ({"service": "-dash", "image": "x"}, "invalid"),
        ({"service": "ok"}, "image or a source"),
        ({"service": "ok", "source": "!!!notbase64"}, "base64"),
        ({"service": "ok", "source": base64.b64encode(b"not a tarball").decode()}, "tar.gz"),
        ({"service": "ok", "labels": ["not", "a", "map"], "image": "x"}, "labels"),
        ({"service": "ok", "image": "x", "labels": {"com.openfaas.scale.min": "many"}}, "com.openfaas.scale.min"),
        (  # docs/autoscaling.md: OpenFaaS Pro's CPU scaling is not offered
            {"service": "ok", "image": "x", "labels": {"com.openfaas.scale.type": "cpu"}},
            "com.openfaas.scale.type: 'cpu' is not one of capacity, rps",
        ),
    ],
)
def test_bad_deployments_are_400_with_the_reason(platform: Platform, body: dict[str, object], needle: str) -> None:
    with platform.client() as c:
        r = c.post("/system/functions", json=body)
    assert r.status_code == 400
    assert needle in r.json()["error"]


def test_scaling_above_the_maximum_is_400_and_changes_nothing(platform: Platform, tmp_path: Path) -> None:
    name = f"capped-{uuid.uuid4().hex[:8]}"
    labels = {"com.openfaas.scale.max": "2", "com.openfaas.scale.type": "rps"}  # rps: accepted as documented
    assert platform.deploy(name, write_handler(tmp_path / name, "def handle(e, c):\n    return 'ok'\n"), labels=labels)\
        .status_code == 202  # fmt: skip
    with platform.client() as c:
        r = c.post(f"/system/scale-function/{name}", json={"serviceName": name, "replicas": 3})
        assert r.status_code == 400
        assert r.json() == {"error": "replicas 3 is over the function's maximum (2)"}
        status = c.get(f"/system/function/{name}").json()
        assert status["replicas"] == 1 and status["labels"]["com.openfaas.scale.type"] == "rps"
        assert c.post(f"/system/scale-function/{name}", json={"serviceName": name, "replicas": 2}).status_code == 202
        wait_until(lambda: c.get(f"/system/function/{name}").json()["availableReplicas"] == 2, 20)
        assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202


def test_folder_without_handler_and_escaping_paths_are_refused(platform: Platform, tmp_path: Path) -> None:
    with platform.client() as c:
        r = c.post("/system/functions", json={"service": "nohandler", "source": _bundle({"other.py": "x = 1\n"})})
        assert r.status_code == 400 and "handler.py" in r.json()["error"]
        r = c.post("/system/functions", json={"service": "escape", "source": _bundle({"../evil.py": "x"})})
        assert r.status_code == 400 and "escapes" in r.json()["error"]
        r = c.post("/system/functions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400


def test_local_backend_refuses_image_only_deploys_clearly(platform: Platform) -> None:
    with platform.client() as c:
        r = c.post("/system/functions", json={"service": "img", "image": "ghcr.io/openfaas/figlet:latest"})
    assert r.status_code == 400
    assert "--backend docker" in r.json()["error"]


def test_logs_are_ndjson_with_openfaas_fields(platform: Platform, tmp_path: Path) -> None:
    write_handler(tmp_path / "talk", "def handle(event, context):\n    print('said', event.text)\n    return 'ok'\n")
    assert platform.deploy("talk", tmp_path / "talk").status_code == 202
    httpx.post(f"{platform.url}/function/talk", content=b"marker-123")
    with platform.client() as c:
        wait_until(lambda: "marker-123" in c.get("/system/logs", params={"name": "talk"}).text, 20)
        items = [json.loads(line) for line in c.get("/system/logs", params={"name": "talk"}).text.splitlines()]
        assert set(items[0]) == {"name", "namespace", "instance", "timestamp", "text"}
        assert any(i["text"] == "said marker-123" for i in items)
        assert len(c.get("/system/logs", params={"name": "talk", "tail": 1}).text.splitlines()) == 1
        assert c.get("/system/logs", params={"name": "ghost"}).status_code == 404
        assert c.get("/system/logs", params={"name": "talk", "tail": "x"}).status_code == 400

        with c.stream("GET", "/system/logs", params={"name": "talk", "follow": "true", "tail": 0}) as stream:
            httpx.post(f"{platform.url}/function/talk", content=b"live-456")
            followed = []
            for line in stream.iter_lines():
                followed.append(json.loads(line))
                if "live-456" in line:
                    break
            # The stream ending (or only old lines) is a failure: the new line must come while following.
            assert followed and followed[-1]["text"] == "said live-456", followed
            assert all("marker-123" not in item["text"] for item in followed)  # tail=0: nothing from before


def test_namespaces(platform: Platform) -> None:
    with platform.client() as c:
        assert "openfaas-fn" in c.get("/system/namespaces").json()


def _bundle(files: dict[str, str]) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def test_a_deploy_asked_for_as_ndjson_streams_its_progress_then_the_answer(platform: Platform, tmp_path: Path) -> None:
    folder = write_handler(tmp_path / "streamed", "def handle(event, context):\n    return 'streamed'\n")
    body = {"service": "streamed", "source": base64.b64encode(bundle.pack(folder)).decode()}
    headers = {"accept": "application/x-ndjson"}
    with platform.client() as c:
        first = c.post("/system/functions", json=body, headers=headers, timeout=60)
        assert first.status_code == 200 and first.headers["content-type"].startswith("application/x-ndjson")
        events = [json.loads(line) for line in first.text.splitlines() if line.strip()]
        assert events[-1] == {"status": 202}  # the local backend builds nothing: no log lines before it
        assert httpx.post(f"{platform.url}/function/streamed", timeout=30).text == "streamed"

        # Refusals decided during the deploy come as the last line; malformed requests are refused as usual.
        again = c.post("/system/functions", json=body, headers=headers, timeout=60)
        last = json.loads(again.text.splitlines()[-1])
        assert last["status"] == 409 and "already exists" in last["error"]
        assert c.post("/system/functions", content=b"{", headers=headers).status_code == 400
