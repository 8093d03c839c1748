"""Invoking functions through the gateway: pass-through, headers, errors a user sees."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, Platform, write_handler

ECHO_PID = """
import os, time
def handle(event, context):
    if event.query.get("sleep"):
        time.sleep(float(event.query["sleep"]))
    return {"pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def deployed(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Platform:
    for name in ("hello", "echo", "wordcount"):
        assert platform.deploy(name, FUNCTIONS / name).status_code == 202
    tmp = tmp_path_factory.mktemp("fns")
    write_handler(tmp / "boom", "def handle(event, context):\n    raise ValueError('kaput ' + event.text)\n")
    write_handler(
        tmp / "slow",
        "import time\ndef handle(event, context):\n"
        "    if event.text == 'spin':\n        while True: pass\n"
        "    time.sleep(float(event.text or 0)); return 'done'\n",
    )
    assert platform.deploy("boom", tmp / "boom").status_code == 202
    assert platform.deploy("slow", tmp / "slow", annotations={"com.stoker.timeout": "1s"}).status_code == 202
    write_handler(tmp / "pid", ECHO_PID)
    assert platform.deploy("pid", tmp / "pid", labels={"com.openfaas.scale.min": "2"}).status_code == 202
    return platform


def test_hello_answers_text_with_call_headers(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/hello", content=b"")
    assert r.status_code == 200
    assert "stoker" in r.text.lower()
    assert len(r.headers["x-call-id"]) >= 16
    assert int(r.headers["x-start-time"]) > 0
    assert 0 <= float(r.headers["x-duration-seconds"]) < 5


def test_call_id_from_the_client_is_kept(deployed: Platform) -> None:
    r = httpx.get(f"{deployed.url}/function/hello", headers={"X-Call-Id": "my-call-1"})
    assert r.headers["x-call-id"] == "my-call-1"


def test_echo_sees_method_path_query_headers_body(deployed: Platform) -> None:
    r = httpx.put(
        f"{deployed.url}/function/echo/some/sub/path",
        params={"a": "1", "b": "two"},
        headers={"X-Custom": "yes"},
        content=b"payload bytes",
    )
    assert r.status_code == 200
    data = r.json()
    assert data["method"] == "PUT"
    assert data["path"] == "/some/sub/path"
    assert data["query"] == {"a": "1", "b": "two"}
    assert data["headers"]["x-custom"] == "yes"
    assert data["body"] == "payload bytes"


def test_namespace_qualified_path(deployed: Platform) -> None:
    assert httpx.get(f"{deployed.url}/function/hello.openfaas-fn").status_code == 200
    r = httpx.get(f"{deployed.url}/function/hello.other-ns")
    assert r.status_code == 404


def test_wordcount_json_in_json_out(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/wordcount", json={"text": "a b a\nc"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["words"] == 4
    assert httpx.post(f"{deployed.url}/function/wordcount", content=b"{not json").status_code == 400


def test_unknown_function_is_404_json(deployed: Platform) -> None:
    r = httpx.get(f"{deployed.url}/function/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["error"]


def test_body_over_limit_is_413(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/echo", content=b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413
    assert "limit" in r.json()["error"]
    assert httpx.post(f"{deployed.url}/function/echo", content=b"x" * 1000).status_code == 200


def test_handler_exception_is_500_and_traceback_in_logs(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/boom", content=b"now")
    assert r.status_code == 500
    assert "boom" in r.text and "kaput now" in r.text
    with deployed.client() as c:
        lines = c.get("/system/logs", params={"name": "boom", "tail": 50}).text
    assert "Traceback" in lines and "ValueError: kaput now" in lines


def test_hanging_handler_is_504_and_replica_serves_next(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/slow", content=b"spin", timeout=30)
    assert r.status_code == 504
    r = httpx.post(f"{deployed.url}/function/slow", content=b"0", timeout=30)
    assert (r.status_code, r.text) == (200, "done")


def test_handler_blocked_in_c_is_504_and_function_recovers(deployed: Platform) -> None:
    r = httpx.post(f"{deployed.url}/function/slow", content=b"3600", timeout=30)
    assert r.status_code == 504
    r = httpx.post(f"{deployed.url}/function/slow", content=b"0", timeout=30)
    assert (r.status_code, r.text) == (200, "done")


def test_load_is_spread_over_replicas_by_fewest_in_flight(deployed: Platform) -> None:
    # Two slow calls at once: the second must go to the idle replica, not queue behind the first.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(httpx.get, f"{deployed.url}/function/pid?sleep=0.5", timeout=30) for _ in range(4)]
        pids = {f.result().json()["pid"] for f in calls}
    assert len(pids) == 2


def test_metrics_use_openfaas_names(deployed: Platform) -> None:
    httpx.get(f"{deployed.url}/function/hello")
    text = httpx.get(f"{deployed.url}/metrics").text
    assert 'gateway_function_invocation_total{function_name="hello.openfaas-fn",code="200"}' in text
    assert 'gateway_function_invocation_started{function_name="hello.openfaas-fn"}' in text
    assert 'gateway_functions_seconds_count{function_name="hello.openfaas-fn",code="200"}' in text
    assert 'gateway_service_count{function_name="pid.openfaas-fn"} 2' in text


def test_broken_deploys_leave_gateway_and_others_serving(deployed: Platform, tmp_path: Path) -> None:
    syntax = write_handler(tmp_path / "syntax", "def handle(event, context):\n    return (\n\nx = 1\n")
    r = deployed.deploy("syntax", syntax)
    assert r.status_code == 422
    assert "line" in r.json()["error"] and "SyntaxError" in r.json()["error"]
    imp = write_handler(tmp_path / "imp", "import no_such_module_here\ndef handle(e, c):\n    return 1\n")
    r = deployed.deploy("imp", imp)
    assert r.status_code == 422
    assert "no_such_module_here" in r.json()["error"]
    with deployed.client() as c:
        names = {f["name"] for f in c.get("/system/functions").json()}
    assert "syntax" not in names and "imp" not in names  # nothing half-deployed
    assert httpx.get(f"{deployed.url}/function/hello").status_code == 200


def test_head_and_other_methods_pass_through(deployed: Platform) -> None:
    r = httpx.head(f"{deployed.url}/function/echo", timeout=10)
    assert r.status_code == 200 and r.content == b""
    for method in ("GET", "DELETE", "PATCH", "OPTIONS"):
        r = httpx.request(method, f"{deployed.url}/function/echo", timeout=10)
        assert r.status_code == 200 and r.json()["method"] == method
