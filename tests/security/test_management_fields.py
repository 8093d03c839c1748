"""Management API fields read as exactly what the API description says, against a real ``stoker up``.

Each case here was accepted before as something else: a secrets string read as a list of one-letter secrets, a
falsy non-string taken for the default, a stream name whose leading space hid stoker's own prefix, an empty list of
dead letter ids that replayed them all, ``follow=yes-please`` read as false.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stoker import bundle
from tests.platform_fixture import FUNCTIONS, Platform, start_platform, write_handler
from tests.wait_support import wait_until


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    # One attempt per queued call: a failing call becomes a dead letter at once.
    p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_QUEUE_ATTEMPTS": "1", "STOKER_POOL_SIZE": "0"})
    assert p.deploy("hello", FUNCTIONS / "hello", labels={"com.openfaas.scale.max": "2"}).status_code == 202
    yield p
    p.stop()


def _source() -> str:
    return base64.b64encode(bundle.pack(FUNCTIONS / "hello")).decode()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"secrets": "abc"}, "secrets must be a list of strings"),
        ({"secrets": [1]}, "secrets must be a list of strings"),
        ({"readOnlyRootFilesystem": "no"}, "readOnlyRootFilesystem must be true or false"),
        ({"namespace": 0}, "namespace must be a string"),
        ({"namespace": False}, "namespace must be a string"),
        ({"image": False}, "image must be a string"),
        ({"envProcess": []}, "envProcess must be a string"),
        ({"envVars": {"A": 1}}, "envVars must be an object of strings"),
        ({"envVars": {"A": None}}, "envVars must be an object of strings"),
        ({"envVars": {"A=B": "x"}}, "is not an environment variable name"),
        ({"envVars": {"": "x"}}, "is not an environment variable name"),
        ({"envVars": {"A": "x\u0000y"}}, "NUL"),
        ({"labels": {"team": "a\u0000"}}, "NUL"),
        ({"constraints": "node.role==worker"}, "constraints must be a list of strings"),
        ({"limits": {"memory": 128}}, "limits must be an object of strings"),
        ({"source": 5}, "source must be a string"),
    ],
)
def test_deployment_fields_of_the_wrong_type_are_400(platform: Platform, fields: dict[str, Any], needle: str) -> None:
    with platform.client() as c:
        r = c.post("/system/functions", json={"service": "typed", "source": _source(), **fields})
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    with platform.client() as c:
        assert c.get("/system/function/typed").status_code == 404  # nothing half-deployed


def test_nulls_mean_absent_in_a_deployment(platform: Platform) -> None:
    nulls = dict.fromkeys(("namespace", "image", "envProcess", "envVars", "constraints", "secrets", "labels"))
    with platform.client() as c:
        assert c.post("/system/functions", json={"service": "nulls", "source": _source(), **nulls}).status_code == 202
        status = c.get("/system/function/nulls").json()
        assert status["namespace"] == "openfaas-fn" and "envVars" not in status and status["secrets"] == []
        assert c.request("DELETE", "/system/functions", json={"functionName": "nulls"}).status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/system/functions", {"functionName": "hello", "namespace": 0}),
        ("DELETE", "/system/functions", {"functionName": 5}),
        ("POST", "/system/scale-function/hello", {"replicas": 1, "namespace": False}),
        ("POST", "/system/scale-function/hello", {"replicas": 1, "serviceName": 7}),
        ("POST", "/system/scale-function/hello", {"replicas": 1.5}),
        ("POST", "/system/scale-function/hello", {"replicas": True}),
        ("POST", "/system/secrets", {"name": "s", "value": 5}),
        ("POST", "/system/secrets", {"name": "s", "rawValue": "AAAA", "value": 5}),
        ("POST", "/system/secrets", {"name": "s", "rawValue": 5}),
        ("POST", "/system/triggers", {"function": 5, "stream": "orders"}),
        ("POST", "/system/triggers", {"function": "hello", "stream": " stoker:async:hello.openfaas-fn"}),
        ("POST", "/system/triggers", {"function": "hello", "stream": "stoker:async:hello.openfaas-fn"}),
        ("POST", "/system/triggers", {"function": "hello", "stream": "two words"}),
        ("POST", "/system/triggers", {"function": "hello", "stream": "x" * 257}),
        ("POST", "/system/queue/hello/replay", None),
        ("POST", "/system/queue/hello/replay", []),
        ("POST", "/system/queue/hello/replay", {"ids": "all"}),
        ("POST", "/system/secrets?namespace=No%7F", {"name": "s", "value": "v", "namespace": "openfaas-fn"}),
        ("DELETE", "/system/functions?functionName=Bad!", {"functionName": "nosuch"}),
        ("POST", "/system/scale-function/hello?namespace=a..b", {"replicas": 1, "namespace": "openfaas-fn"}),
    ],
    ids=lambda v: str(v)[:40],
)
def test_management_fields_of_the_wrong_type_are_400(platform: Platform, method: str, path: str, body: Any) -> None:
    with platform.client() as c:
        r = c.request(method, path, content=json.dumps(body))  # None is sent as the JSON null
        assert r.status_code == 400 and r.json()["error"], r.text
        # Nothing changed: hello still has one replica, and no trigger or secret appeared.
        assert c.get("/system/function/hello").json()["replicas"] == 1
        assert c.get("/system/triggers").json() == [] and c.get("/system/secrets").json() == []


def test_a_whole_number_written_as_a_float_scales(platform: Platform) -> None:
    with platform.client() as c:
        assert c.post("/system/scale-function/hello", json={"replicas": 1.0}).status_code == 202


@pytest.mark.parametrize(
    "query",
    [
        {"follow": "yes-please"},
        {"follow": "True"},
        {"tail": "+5"},
        {"tail": "\u0665"},  # ARABIC-INDIC DIGIT FIVE: int() reads it, the document says digits
        {"tail": "9" * 30},
        {"since": "yesterday"},
        {"since": "0s"},
        {"since": "2024-13-01T00:00:00Z"},
        {"since": "\u0665m"},
    ],
    ids=str,
)
def test_log_parameters_outside_the_document_are_400(platform: Platform, query: dict[str, str]) -> None:
    with platform.client() as c:
        r = c.get("/system/logs", params={"name": "hello", **query})
    assert r.status_code == 400 and r.json()["error"], r.text


@pytest.mark.parametrize(
    "query",
    [{"follow": "false", "tail": "-1"}, {"since": "2024-01-01T00:00:00Z"}, {"since": "2024-01-01T00:00:00"}, {}],
    ids=str,
)
def test_log_parameters_the_document_allows_work(platform: Platform, query: dict[str, str]) -> None:
    with platform.client() as c:
        r = c.get("/system/logs", params={"name": "hello", **query})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson"), r.text


def test_an_empty_list_of_dead_letter_ids_replays_none(platform: Platform, tmp_path: Any) -> None:
    failing = write_handler(tmp_path / "failing", "def handle(event, context):\n    raise RuntimeError('no')\n")
    assert platform.deploy("failing", failing).status_code == 202
    for _ in range(2):
        assert httpx.post(platform.url + "/async-function/failing", content=b"x").status_code == 202
    with platform.client() as c:
        wait_until(lambda: len(c.get("/system/queue/failing/dead").json()) == 2, 30, "two dead letters")
        assert c.post("/system/queue/failing/replay", json={"ids": []}).json()["replayed"] == 0
        assert len(c.get("/system/queue/failing/dead").json()) == 2
        first = c.get("/system/queue/failing/dead").json()[0]["deadId"]
        assert c.post("/system/queue/failing/replay", json={"ids": [first]}).json()["replayed"] == 1
        assert c.post("/system/queue/failing/replay").json()["replayed"] >= 1  # no body: all of them
