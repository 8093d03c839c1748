"""The platform stack (deploy/swarm) on the local swarm: gateways inside the swarm route to function tasks over the
overlay network; deploy, scale, and a rolling update under load with zero failed requests."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from builder.base import ensure_base_image
from builder.function import build_function
from runtime.backends.swarm.config import PLATFORM, POOL_GENERIC
from runtime.backends.swarm.pool import role
from stoker import bundle
from tests.install.install_support import free_port
from tests.platform_fixture import write_handler
from tests.runtime.backends.swarm.test_support import swarm_engine, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

STACK = f"stk{secrets.token_hex(3)}"  # the install's name: stack, platform, secrets, networks (unique to the run)
PASSWORD = secrets.token_hex(16)
AUTH = ("admin", PASSWORD)
URL = ""  # the gateway's stable entrypoint (a fixed host port), set by the fixture


def _uninstall(home: Path) -> None:
    cmd = [sys.executable, "-m", "stoker", "uninstall", "swarm", "--name", STACK, "--functions"]
    subprocess.run(cmd, env={**os.environ, "STOKER_HOME": str(home)}, capture_output=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The platform installed with `stoker install swarm --apply`, as docs/install.md has an operator do it (its images
    built once per session: tests/conftest.py)."""
    engine = swarm_engine()  # skips without a swarm, before any image is built
    images = request.getfixturevalue("stack_images")
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    cmd = [sys.executable, "-m", "stoker", "install", "swarm", "--name", STACK, "--port", str(port), "--apply",
           "--platform-image", images["STOKER_PLATFORM_IMAGE"], "--runtime-image", images["STOKER_RUNTIME_IMAGE"],
           "--redis-image", images["STOKER_REDIS_IMAGE"]]  # fmt: skip
    env = {**os.environ, "STOKER_HOME": str(home), "STOKER_ADMIN_PASSWORD": PASSWORD}
    try:
        deployed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert deployed.returncode == 0, deployed.stderr
        global URL
        URL = f"http://127.0.0.1:{port}"
        yield engine
    finally:
        _uninstall(home)
        engine.close()


def _gateway_containers(engine: Any) -> list[Any]:
    """The running gateway containers (they publish nothing: the edge in front of them is the entrypoint)."""
    found = engine.containers.list(filters={"label": f"com.docker.swarm.service.name={STACK}_gateway"})
    return [c for c in found if c.status == "running"]


def _asked_inside(container: Any, path: str, admin: bool = False) -> str:
    """``GET path`` on the gateway in ``container``, from inside it: what that one gateway answers (``admin``: with
    the admin's credentials)."""
    url = f"http://127.0.0.1:8080{path}"
    headers = {"Authorization": "Basic " + base64.b64encode(":".join(AUTH).encode()).decode()} if admin else {}
    request = f"urllib.request.Request({url!r}, headers={headers!r})"
    code = f"import urllib.request; print(urllib.request.urlopen({request}, timeout=60).read().decode())"
    result = container.exec_run(["python3", "-c", code])
    return str(result.output.decode().strip()) if result.exit_code == 0 else f"error: {result.output[-200:]!r}"


def _image(engine: Any, tmp_path: Path, version: str) -> str:
    folder = write_handler(tmp_path / version, f"def handle(event, context):\n    return '{version}'\n")
    base = ensure_base_image(engine, "stoker/runtime")
    return str(build_function(engine, "sw-roll", bundle.pack(folder), base.ref).ref)


def _platform_log() -> str:
    """The last lines the gateways and the controller logged (for a failure's message)."""
    lines: list[str] = []
    for service in ("gateway", "controller"):
        cmd = ["docker", "service", "logs", "--timestamps", "--raw", "--tail", "40", f"{STACK}_{service}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        lines += [f"{service}: {line}" for line in (out.stdout + out.stderr).splitlines()]
    return "\n".join(lines)


def _status(name: str) -> dict[str, Any]:
    reply = httpx.get(f"{URL}/system/function/{name}", auth=AUTH, timeout=30)
    return reply.json() if reply.status_code == 200 else {}


def test_gateways_in_the_swarm_deploy_scale_and_roll_under_load(stack: Any, tmp_path: Path) -> None:
    # --entrypoint host: the edge on every manager on a fixed port, in front of gateways that publish nothing.
    (edge,) = stack.api.services(filters={"name": f"{STACK}_edge"})
    assert "Global" in edge["Spec"]["Mode"]
    gateways = stack.api.services(filters={"name": f"{STACK}_gateway"})
    assert "Replicated" in gateways[0]["Spec"]["Mode"] and not gateways[0]["Spec"].get("EndpointSpec", {}).get("Ports")
    v1, v2 = _image(stack, tmp_path, "v1"), _image(stack, tmp_path, "v2")

    reply = httpx.post(f"{URL}/system/functions", json={"service": "sw-roll", "image": v1}, auth=AUTH, timeout=300)
    assert reply.status_code in (200, 202), reply.text

    # Every gateway replica knows the function: the engine holds its metadata.
    gateways = wait_for(lambda: len(_gateway_containers(stack)) == 2 and _gateway_containers(stack), 120, "2 gateways")
    for gateway in gateways:

        def routed(g: Any = gateway) -> bool:
            return _asked_inside(g, "/function/sw-roll") == "v1"

        assert wait_for(routed, 60, f"gateway {gateway.name} to route to the function")

    scaled = httpx.post(
        f"{URL}/system/scale-function/sw-roll", json={"serviceName": "sw-roll", "replicas": 3}, auth=AUTH, timeout=60
    )
    assert scaled.status_code in (200, 202), scaled.text
    wait_for(lambda: all(_status("sw-roll").get("availableReplicas") == 3 for _ in range(4)), 180, "3 replicas")

    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    r = client.get(f"{URL}/function/sw-roll")
                    results.append((r.status_code, r.text))
                except httpx.HTTPError as exc:
                    results.append((0, str(exc)))

    workers = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(results) >= 20, 60, "calls to v1 before the update")
        update = httpx.put(f"{URL}/system/functions", json={"service": "sw-roll", "image": v2}, auth=AUTH, timeout=300)
        assert update.status_code in (200, 202), update.text

        def rolled() -> bool:
            service = stack.api.services(filters={"name": f"{STACK}-sw-roll"})[0]
            done = (service.get("UpdateStatus") or {}).get("State") == "completed"
            return done and all(text == "v2" for _, text in results[-20:])

        wait_for(rolled, 240, "the rolling update to complete")

        def drained() -> bool:  # the last old task drains after its stop delay, under load
            tasks = stack.api.tasks(filters={"service": f"{STACK}-sw-roll"})
            return sum(t["Status"]["State"] == "running" for t in tasks) == 3

        wait_for(drained, 120, "the old tasks to stop")
    finally:
        stop.set()
        for w in workers:
            w.join(60)
    failed = [r for r in results if r[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} calls failed during the update: {failed[:5]}"
    texts = {text for _, text in results}
    assert texts == {"v1", "v2"} and len(results) > 50

    removed = httpx.request("DELETE", f"{URL}/system/functions", json={"functionName": "sw-roll"}, auth=AUTH)
    assert removed.status_code in (200, 202), removed.text
    wait_for(lambda: not stack.api.services(filters={"name": f"{STACK}-sw-roll"}), 60, "the service to go")


def test_the_controller_keeps_a_warm_pool_that_gateways_claim_for_a_cold_start(stack: Any, tmp_path: Path) -> None:
    def generic() -> int:
        services = stack.api.services(filters={"label": f"{PLATFORM}={STACK}"})
        ids = [s["ID"] for s in services if role(s) == POOL_GENERIC]
        tasks = stack.api.tasks(filters={"service": ids, "desired-state": "running"}) if ids else []
        return sum(1 for t in tasks if t["Status"]["State"] == "running")

    wait_for(lambda: generic() == 2, 180, "the leading controller to fill the warm pool")

    handler = "import os\ndef handle(event, context):\n    return os.environ.get('STOKER_INSTANCE', '-')\n"
    folder = write_handler(tmp_path / "cold", handler)
    source = base64.b64encode(bundle.pack(folder)).decode()
    body = {"service": "sw-cold", "source": source, "labels": {"com.openfaas.scale.min": "0"}}  # may rest at zero
    reply = httpx.post(f"{URL}/system/functions", json=body, auth=AUTH, timeout=300)
    assert reply.status_code in (200, 202), reply.text
    scale = {"serviceName": "sw-cold", "replicas": 0}
    assert httpx.post(f"{URL}/system/scale-function/sw-cold", json=scale, auth=AUTH, timeout=60).status_code < 300
    wait_for(lambda: _status("sw-cold").get("availableReplicas") == 0, 120, "sw-cold to reach zero")
    for gateway in _gateway_containers(stack):  # each gateway reads the swarm on its own (every 0.5 s): until one
        # has seen the scale-down, it still routes to the stopping replica, which serves during its stop delay

        def at_zero(g: Any = gateway) -> bool:
            return '"availableReplicas":0' in _asked_inside(g, "/system/function/sw-cold", admin=True).replace(" ", "")

        wait_for(at_zero, 60, f"gateway {gateway.name} to see sw-cold at zero")
    wait_for(lambda: generic() == 2, 180, "the warm pool to be full")

    # The gateway (on the overlay) claims a pool replica and specialises it: the first call is served by it.
    first = httpx.get(f"{URL}/function/sw-cold", timeout=120)
    served_by_pool = first.status_code == 200 and first.text.startswith(f"{STACK}-pool-")
    assert served_by_pool, f"{first.status_code} {first.text}\n{_platform_log()}"
    # The controller retires that bridge once the function's own replica is ready, and refills the pool.
    wait_for(lambda: not httpx.get(f"{URL}/function/sw-cold", timeout=60).text.startswith(f"{STACK}-pool-"), 180, "own")
    wait_for(lambda: generic() == 2, 180, "the pool to be refilled")
    removed = httpx.request("DELETE", f"{URL}/system/functions", json={"functionName": "sw-cold"}, auth=AUTH)
    assert removed.status_code in (200, 202), removed.text
