"""Deploy history (``GET /system/function/{name}/history``): what each deploy, update, scale and removal changed, who
asked and how it ended; bounded; kept across a restart of the platform, in STOKER_HOME or in Redis; environment
values never shown. The summary is pure and tested on its own; the rest on a real ``stoker up``."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from gateway.history import KEEP, MAX_CHANGES, changes
from gateway.openapi import document
from stoker import bundle
from stoker.spec import FunctionDeployment
from tests.platform_fixture import FUNCTIONS, PASSWORD, Platform, start_platform
from tests.redis_support import shared_redis_url

SECRET_VALUE = "s3cr3t-value-never-shown"


def test_the_summary_says_what_changed_with_environment_names_only() -> None:
    old = FunctionDeployment(
        service="f", image="a:1", envVars={"KEEP": "1", "TOKEN": "old-token", "GONE": "x"},
        labels={"com.openfaas.scale.max": "5"}, limits={"memory": "128Mi"}, secrets=["db"],
    )  # fmt: skip
    new = FunctionDeployment(
        service="f", image="a:2", envVars={"KEEP": "1", "TOKEN": SECRET_VALUE, "NEW": SECRET_VALUE},
        labels={"com.openfaas.scale.max": "10", "team": "x"}, limits={"memory": "256Mi"}, secrets=["db", "api"],
    )  # fmt: skip
    lines = changes(old, new, "image:a:1", "image:a:2")
    assert lines == [
        "code: image:a:1 -> image:a:2",
        "env -GONE",
        "env +NEW",
        "env TOKEN: changed",
        "label com.openfaas.scale.max: 5 -> 10",
        "label +team=x",
        "limit memory: 128Mi -> 256Mi",
        "secret +api",
    ]
    assert SECRET_VALUE not in repr(lines)
    first = changes(
        None, FunctionDeployment(service="f", source="x", envVars={"A": SECRET_VALUE}), "", "source:sha256:ab"
    )
    assert first == ["code: source:sha256:ab", "env +A"]
    same = changes(new, new, "source:sha256:ab", "source:sha256:ab")
    assert same == ["code: same source"]


def test_a_hostile_summary_stays_short_and_printable() -> None:
    labels = {f"k{i:03}": "v\x1b[31m\n" + "x" * 10_000 for i in range(500)}
    lines = changes(None, FunctionDeployment(service="f", image="a:1", labels=labels), "", "image:a:1")
    assert len(lines) == MAX_CHANGES and lines[-1] == f"and {500 + 1 - MAX_CHANGES + 1} more"
    assert all(line.isprintable() and len(line) < 400 for line in lines)


def _schema() -> dict[str, Any]:
    return {"$ref": "#/components/schemas/History", "components": document()["components"]}


def _history(p: Platform, name: str, **kw: Any) -> httpx.Response:
    with p.client(**kw) as c:
        return c.get(f"/system/function/{name}/history")


def _deploy(p: Platform, name: str, folder: Path, method: str, auth: Any, **fields: Any) -> httpx.Response:
    body = {"service": name, "source": base64.b64encode(bundle.pack(folder)).decode(), **fields}
    return httpx.request(method, f"{p.url}/system/functions", json=body, auth=auth, timeout=60)


class Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {PASSWORD}"
        yield request


@pytest.mark.parametrize("store", ["home", "redis"])
def test_every_change_is_recorded_with_who_and_what_and_survives_a_restart(tmp_path: Path, store: str) -> None:
    env: dict[str, str] = {}
    if store == "redis":
        env["STOKER_REDIS_URL"] = shared_redis_url()
    name = f"hist-{uuid.uuid4().hex[:8]}"  # unique: Redis is shared with other tests and runs
    home = tmp_path / "home"
    p = start_platform(home, env=env)
    try:
        basic = ("admin", PASSWORD)
        assert _history(p, name).status_code == 404  # neither deployed nor any history
        assert _history(p, "Bad_Name").status_code == 400
        assert _deploy(p, name, FUNCTIONS / "hello", "POST", basic).status_code == 202
        assert _deploy(p, name, FUNCTIONS / "hello", "POST", basic).status_code == 409  # refused, and recorded
        update = {"envVars": {"TOKEN": SECRET_VALUE}, "labels": {"com.openfaas.scale.max": "3"}}
        assert _deploy(p, name, FUNCTIONS / "echo", "PUT", Bearer(), **update).status_code == 202
        with p.client() as c:
            assert c.post(f"/system/scale-function/{name}", json={"replicas": 2}).status_code == 202
            assert c.post(f"/system/scale-function/{name}", json={"replicas": 9}).status_code == 400  # max 3
        r = _history(p, name)
        assert r.status_code == 200, r.text
        jsonschema.validate(r.json(), _schema())
        entries = r.json()["entries"]
        assert SECRET_VALUE not in r.text
        assert [(e["action"], e["result"], e["status"], e["via"]) for e in entries] == [
            ("scale", "failed", 400, "basic"),
            ("scale", "ok", 202, "basic"),
            ("update", "ok", 202, "token"),
            ("deploy", "failed", 409, "basic"),
            ("deploy", "ok", 202, "basic"),
        ]
        assert all(e["user"] == "admin" for e in entries)
        digest = lambda folder: "source:sha256:" + hashlib.sha256(bundle.pack(folder)).hexdigest()  # noqa: E731
        first, update_entry = entries[4], entries[2]
        assert first["code"] == digest(FUNCTIONS / "hello") and first["changes"] == [f"code: {first['code']}"]
        assert update_entry["changes"] == [
            f"code: {digest(FUNCTIONS / 'hello')} -> {digest(FUNCTIONS / 'echo')}",
            "env +TOKEN",
            "label +com.openfaas.scale.max=3",
        ]
        assert entries[1]["changes"] == ["replicas: 1 -> 2"] and "maximum" in entries[0]["error"]
        assert entries[0]["timestamp"] >= entries[4]["timestamp"]
        with p.client() as c:
            assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202
        assert _history(p, name).json()["entries"][0]["action"] == "remove"  # kept after the removal
    finally:
        p.stop()
    again = start_platform(home, env=env)
    try:
        kept = _history(again, name)
        assert kept.status_code == 200
        assert [e["action"] for e in kept.json()["entries"]] == [
            "remove",
            "scale",
            "scale",
            "update",
            "deploy",
            "deploy",
        ]
    finally:
        again.stop()


def test_the_history_is_bounded(tmp_path: Path) -> None:
    p = start_platform(tmp_path / "home")
    try:
        assert p.deploy("bounded", FUNCTIONS / "hello").status_code == 202
        with p.client() as c:
            for i in range(KEEP + 5):
                assert c.post("/system/scale-function/bounded", json={"replicas": i % 2}).status_code == 202
        entries = _history(p, "bounded").json()["entries"]
        assert len(entries) == KEEP and entries[-1]["action"] == "scale"  # the oldest (the deploy) went first
    finally:
        p.stop()
