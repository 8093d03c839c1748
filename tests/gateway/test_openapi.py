"""The API description (gateway/openapi.yaml) against the gateway's real routes: valid OpenAPI 3.1, no route missing
and none invented, the same document served, shipped and linked from docs/, and the behaviour it promises for
authentication, undeclared methods and a queue that is down, seen on a real ``stoker up``."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import validate
from starlette.routing import Route

from gateway.app import GatewayApp
from gateway.async_api import ASYNC_PREFIX
from gateway.openapi import PATH, document
from gateway.proxy import PREFIX
from runtime.backends import create_backend
from stoker import __version__
from stoker.config import Config
from tests.platform_fixture import FUNCTIONS, ROOT, Platform, start_platform
from tests.wait_support import free_port

FUNCTIONS_PATH = "/system/functions"

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# The raw ASGI apps in front of Starlette take every method at these prefixes (gateway/app.py).
RAW_PREFIXES = (PREFIX, ASYNC_PREFIX)


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> GatewayApp:
    config = Config.from_env({}, home=tmp_path_factory.mktemp("home"), pool_size=0, autoscale=False)
    return GatewayApp(config, create_backend(config, b"k" * 32), "password")


def test_the_document_is_valid_openapi() -> None:
    validate(document())
    assert document()["openapi"].startswith("3.1")
    assert document()["info"]["version"] == __version__


def test_docs_and_package_hold_the_same_document() -> None:
    docs = ROOT / "docs" / "openapi.yaml"
    assert yaml.safe_load(docs.read_text()) == document()
    assert docs.resolve() == (ROOT / "gateway" / "openapi.yaml").resolve()  # one file, not two to keep in step


def test_every_starlette_route_and_method_is_documented_and_nothing_else(app: GatewayApp) -> None:
    routes: dict[str, set[str]] = {}
    for route in app.starlette.routes:
        assert isinstance(route, Route) and route.methods
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {stream:path} is {stream} in the document
        routes.setdefault(path, set()).update(m.lower() for m in route.methods)
    documented: dict[str, set[str]] = {}
    for path, method, _ in _operations(document()):
        if not path.startswith(RAW_PREFIXES):
            documented.setdefault(path, set()).add(method)
    # Starlette answers HEAD wherever GET is; the document says so once rather than per route.
    assert {p: m - {"head"} for p, m in routes.items()} == documented


def test_the_invoke_prefixes_are_documented_with_every_method() -> None:
    for prefix in RAW_PREFIXES:
        for path in (prefix + "{name}", prefix + "{name}/{path}"):
            assert set(document()["paths"][path]) - {"parameters"} == METHODS, path
    assert not [p for p in document()["paths"] if p.startswith(RAW_PREFIXES) and "{name}" not in p]


def test_system_routes_need_credentials_and_nothing_else_does() -> None:
    doc = document()
    schemes = {name: (s["type"], s["scheme"]) for name, s in doc["components"]["securitySchemes"].items()}
    assert schemes == {"basicAuth": ("http", "basic"), "bearerAuth": ("http", "bearer")}
    assert doc["security"] == [{"basicAuth": []}, {"bearerAuth": []}]
    for path, method, op in _operations(doc):
        if path.startswith("/system/"):
            assert "security" not in op and "401" in op["responses"], f"{method} {path}"
        else:
            assert op.get("security") == [] and "401" not in op["responses"], f"{method} {path}"


def test_every_error_answer_is_the_json_error_body() -> None:
    responses = document()["components"]["responses"]
    for path, method, op in _operations(document()):
        for code, answer in op["responses"].items():
            if code != "default" and int(code) >= 400:
                ref = answer["$ref"].rpartition("/")[2]
                schema = responses[ref]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{method} {path} {code}"


def test_settings_the_document_names_exist() -> None:
    text = (ROOT / "gateway" / "openapi.yaml").read_text()
    fields = {f"STOKER_{name.upper()}" for name in Config.__dataclass_fields__}
    named = {word.strip("`(),.;:") for word in text.split() if word.strip("`(),.;:").startswith("STOKER_")}
    assert named and named <= fields, named - fields


# --- against a real platform -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def down_queue_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform whose Redis went away just after it started (a Redis that is not there at all stops ``stoker up``)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    finally:
        redis_proc.kill()
        redis_proc.wait(10)
    deadline = time.monotonic() + 30
    while httpx.get(p.url + "/readyz", timeout=10).status_code != 503:
        assert time.monotonic() < deadline, "the gateway did not notice its Redis was gone"
        time.sleep(0.1)
    yield p
    p.stop()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _concrete(path: str) -> str:
    return (
        path.replace("{name}", "hello")
        .replace("{function}", "hello")
        .replace("{path}", "x")
        .replace("{call_id}", "0" * 32)
        .replace("{stream}", "orders")
    )


def test_served_document_and_authentication_as_documented(down_queue_platform: Platform) -> None:
    url = down_queue_platform.url
    assert httpx.get(url + PATH).status_code == 401
    served = httpx.get(url + PATH, auth=down_queue_platform.auth)
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == document()
    for path, method, op in _operations(document()):
        if method in ("head", "options", "trace") or path.startswith(RAW_PREFIXES):
            continue
        r = httpx.request(method.upper(), url + _concrete(path), timeout=30)
        if op.get("security") == []:
            assert r.status_code != 401, f"{method} {path}"
        else:
            assert r.status_code == 401 and r.json()["error"], f"{method} {path}"
            assert r.headers["www-authenticate"] == 'Basic realm="stoker"'


def test_an_undeclared_method_is_405_listing_every_declared_one(down_queue_platform: Platform) -> None:
    for path, item in document()["paths"].items():
        if path.startswith(RAW_PREFIXES):
            continue
        r = httpx.request("PATCH", down_queue_platform.url + _concrete(path), auth=down_queue_platform.auth)
        assert r.status_code == 405 and r.json()["error"], path
        allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
        assert allowed - {"head"} == set(item) - {"parameters"}, path


def test_queue_routes_answer_503_when_the_queue_is_down(down_queue_platform: Platform) -> None:
    """Every route the document says answers 503 for a queue that is down does, with Retry-After, and a JSON error."""
    # A function that reads no stream deploys without the queue; one that reads a stream cannot be subscribed: 503,
    # and nothing of it is deployed.
    assert down_queue_platform.deploy("hello", FUNCTIONS / "hello").status_code == 202
    annotations = {"com.stoker.queue.stream": "orders"}
    refused = down_queue_platform.deploy("reader", FUNCTIONS / "hello", annotations=annotations)
    assert refused.status_code == 503 and refused.headers["retry-after"] and "queue" in refused.json()["error"]
    with down_queue_platform.client() as c:
        assert c.get("/system/function/reader").status_code == 404
    bodies = {"post": {"function": "hello", "stream": "orders"}, "delete": {"function": "hello", "stream": "orders"}}
    checked = 0
    for path, method, op in _operations(document()):
        if (
            "503" not in op["responses"]
            or not path.startswith("/system/")
            or path in ("/system/queues", FUNCTIONS_PATH)
        ):
            continue  # /system/queues reads the streams of deployed functions: with none, it asks the queue nothing
        if path == "/system/queue/{function}/replay":
            body: Any = {}
        else:
            body = bodies.get(method)
        r = httpx.request(
            method.upper(), down_queue_platform.url + _concrete(path), json=body, auth=down_queue_platform.auth
        )
        assert r.status_code == 503, (method, path, r.status_code, r.text)
        assert r.headers["retry-after"] and "queue" in r.json()["error"]
        checked += 1
    assert checked == 8  # async-result, dead, replay, publish, the three trigger routes, and a function's history
