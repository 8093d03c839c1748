"""``/system/namespace/{name}`` (issue 15, item 7) on a real ``stoker up``, with the requests faas-cli's
``namespace create|get|update|remove`` send through the go-sdk (``CreateNamespace`` posts to ``/system/namespace/``
and adds ``openfaas: "1"`` to labels and annotations; ``DeleteNamespace`` sends ``{name, labels: {openfaas: "1"}}``)
and the status codes of faas-provider's namespace handlers (faasd: 201, 200, 202, 202; 404; 409)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, Platform

OPENFAAS = {"openfaas": "1"}


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"}, body
    return str(body["error"])


def test_create_get_update_and_remove_as_faas_cli_does(platform: Platform) -> None:
    with platform.client() as c:
        created = {"name": "team-a", "labels": {"demo": "true", **OPENFAAS}, "annotations": OPENFAAS}
        assert c.post("/system/namespace/", json=created).status_code == 201
        assert c.get("/system/namespace/team-a").json() == created
        assert "team-a" in c.get("/system/namespaces").json()
        assert "exists" in _error(c.post("/system/namespace/", json=created), 409)

        changed = {"name": "team-a", "labels": {"env": "prod", **OPENFAAS}, "annotations": {"owner": "ops", **OPENFAAS}}
        assert c.put("/system/namespace/team-a", json=changed).status_code == 202
        assert c.get("/system/namespace/team-a").json() == changed  # replaced, not merged

        assert platform.deploy("nsfn", FUNCTIONS / "hello", namespace="team-a").status_code == 202
        assert "function nsfn" in _error(c.request("DELETE", "/system/namespace/team-a", json=created), 409)
        assert c.get("/system/function/nsfn", params={"namespace": "team-a"}).status_code == 200  # untouched
        body = {"functionName": "nsfn", "namespace": "team-a"}
        assert c.request("DELETE", "/system/functions", json=body).status_code == 202

        gone = {"name": "team-a", "labels": OPENFAAS}
        assert c.request("DELETE", "/system/namespace/team-a", json=gone).status_code == 202
        assert "not found" in _error(c.get("/system/namespace/team-a"), 404)
        assert "team-a" not in c.get("/system/namespaces").json()
        assert _error(c.request("DELETE", "/system/namespace/team-a", json=gone), 404)
        assert _error(c.put("/system/namespace/team-a", json=changed), 404)


def test_labels_are_optional_and_openfaas_is_added(platform: Platform) -> None:
    with platform.client() as c:
        assert c.post("/system/namespace/bare-ns", json={"name": "bare-ns"}).status_code == 201
        assert c.get("/system/namespace/bare-ns").json() == {"name": "bare-ns", "labels": OPENFAAS}
        assert c.request("DELETE", "/system/namespace/bare-ns").status_code == 202  # no body: fine too


def test_the_default_and_namespaces_in_use_exist_without_being_created(platform: Platform) -> None:
    with platform.client() as c:
        assert c.get("/system/namespace/openfaas-fn").json() == {"name": "openfaas-fn", "labels": OPENFAAS}
        assert "always exists" in _error(c.request("DELETE", "/system/namespace/openfaas-fn"), 409)
        assert c.get("/system/function/nsfn").status_code == 404
        assert platform.deploy("usedfn", FUNCTIONS / "hello", namespace="in-use").status_code == 202
        assert c.get("/system/namespace/in-use").json() == {"name": "in-use", "labels": OPENFAAS}
        assert _error(c.post("/system/namespace/", json={"name": "in-use"}), 409)
        # Created from use, it can be given labels.
        assert c.put("/system/namespace/in-use", json={"name": "in-use", "labels": {"a": "b"}}).status_code == 202
        assert c.get("/system/namespace/in-use").json()["labels"] == {"a": "b", **OPENFAAS}
        body = {"functionName": "usedfn", "namespace": "in-use"}
        assert c.request("DELETE", "/system/functions", json=body).status_code == 202
        assert c.request("DELETE", "/system/namespace/in-use").status_code == 202


def test_a_namespace_holding_secrets_is_not_removed(platform: Platform) -> None:
    with platform.client() as c:
        assert c.post("/system/namespace/", json={"name": "vault"}).status_code == 201
        secret = {"name": "token", "namespace": "vault", "value": "s3cret"}
        assert c.post("/system/secrets", json=secret).status_code == 201
        assert "secret token" in _error(c.request("DELETE", "/system/namespace/vault"), 409)
        assert c.request("DELETE", "/system/secrets", json=secret).status_code == 200
        assert c.request("DELETE", "/system/namespace/vault").status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("GET", "/system/namespace/Bad_Name", None, "namespace"),
        ("GET", "/system/namespace/" + "a" * 64, None, "namespace"),
        ("GET", "/system/namespace/%00x", None, "namespace"),
        ("GET", "/system/namespace/%2e%2e", None, "namespace"),
        ("POST", "/system/namespace/", {"name": "../etc"}, "namespace"),
        ("POST", "/system/namespace/", {"name": "kube\x00system"}, "namespace"),
        ("POST", "/system/namespace/", {"name": 7}, "namespace"),
        ("POST", "/system/namespace/", {}, "namespace not specified"),
        ("POST", "/system/namespace/", ["team-x"], "JSON object"),
        ("POST", "/system/namespace/", {"name": "team-x", "labels": {"bad key!": "x"}}, "labels: key"),
        ("POST", "/system/namespace/", {"name": "team-x", "labels": {"k": 1}}, "labels.k must be a string"),
        ("POST", "/system/namespace/", {"name": "team-x", "labels": "openfaas=1"}, "object of strings"),
        ("POST", "/system/namespace/", {"name": "team-x", "annotations": {"k": "a\nb"}}, "control"),
        ("POST", "/system/namespace/", {"name": "team-x", "labels": {f"k{i}": "v" for i in range(65)}}, "at most 64"),
        ("POST", "/system/namespace/team-y", {"name": "team-x"}, "does not match"),
        ("PUT", "/system/namespace/openfaas-fn", {"name": ""}, "namespace"),
        ("PUT", "/system/namespace/openfaas-fn", {"name": "team-x"}, "does not match"),
        ("DELETE", "/system/namespace/openfaas-fn", {"name": "team-x"}, "does not match"),
    ],
)
def test_hostile_names_and_fields_are_refused_and_nothing_is_made(
    platform: Platform, method: str, path: str, body: object, says: str
) -> None:
    with platform.client() as c:
        kwargs = {} if body is None else {"json": body}
        assert says in _error(c.request(method, path, **kwargs), 400)
        names = c.get("/system/namespaces").json()
        assert "team-x" not in names and "team-y" not in names
        assert c.get("/healthz").status_code == 200


def test_namespace_routes_need_authentication(platform: Platform) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = httpx.request(method, f"{platform.url}/system/namespace/openfaas-fn", json={"name": "openfaas-fn"})
        assert r.status_code == 401, method
    r = httpx.post(f"{platform.url}/system/namespace/", json={"name": "sneaky"})
    assert r.status_code == 401
    with platform.client() as c:
        assert c.get("/system/namespace/sneaky").status_code == 404


def test_the_stoker_cli_manages_namespaces(platform: Platform) -> None:
    def stoker(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "stoker", "namespaces", *args]
        return subprocess.run(command, env=platform.env(), capture_output=True, text=True, timeout=60)

    made = stoker("create", "cli-ns", "--label", "env=dev", "--annotation", "owner=ops")
    assert made.returncode == 0 and "Created namespace cli-ns." in made.stdout, made.stderr
    got = json.loads(stoker("get", "cli-ns", "--json").stdout)
    assert got == {"name": "cli-ns", "labels": {"env": "dev", **OPENFAAS}, "annotations": {"owner": "ops", **OPENFAAS}}
    assert "cli-ns" in stoker().stdout.split()
    assert stoker("update", "cli-ns", "--label", "env=prod").returncode == 0
    assert json.loads(stoker("get", "cli-ns", "--json").stdout)["labels"] == {"env": "prod", **OPENFAAS}
    again = stoker("create", "cli-ns")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert stoker("remove", "cli-ns").returncode == 0
    missing = stoker("get", "cli-ns")
    assert missing.returncode != 0 and "not found" in missing.stderr
    bad = stoker("create", "Bad_Name")
    assert bad.returncode != 0 and "namespace" in bad.stderr
