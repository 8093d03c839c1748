"""What a function container can reach on the docker backend, against the real Docker Engine.

Found on main: every platform on an engine shared the bridge ``stoker-functions`` with inter-container traffic on,
so a function could call any other function's container directly, bypassing the gateway (and its auth, limits and
metrics). Now each platform has its own bridge with ``enable_icc=false``: another function's container answers
nothing, the gateway still routes to every replica, and the network goes with the platform. What the bridge does not
block is asserted too, so docs/docker.md says exactly what is true: the host's services listening on 0.0.0.0 are
reachable at the bridge's gateway address; services on the host's loopback are not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.containers import FUNCTION, OWNER
from runtime.backends.docker.network import ICC_OPTION, bridge_name, default_name
from tests.docker_support import docker_client
from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = pytest.mark.slow

PROBER = """
import json, socket

def handle(event, context):
    target = json.loads(event.body)
    try:
        s = socket.create_connection((target["host"], target["port"]), timeout=3)
    except OSError as exc:
        return {"reached": False, "error": f"{type(exc).__name__}: {exc}"}
    s.close()
    return {"reached": True}
"""
TARGET = "def handle(event, context):\n    return 'target'\n"


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("isolation"), "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    folder = tmp_path_factory.mktemp("functions")
    try:
        assert p.deploy("prober", write_handler(folder / "prober", PROBER)).status_code == 202
        assert p.deploy("target", write_handler(folder / "target", TARGET)).status_code == 202
        yield p
    finally:
        p.stop(timeout=120)


def _owner(p: Platform) -> str:
    return hashlib.sha256(str(p.home.resolve()).encode()).hexdigest()[:12]


def _container(engine: Any, p: Platform, name: str) -> Any:
    (c,) = engine.containers.list(filters={"label": [f"{FUNCTION}={name}", f"{OWNER}={_owner(p)}"]})
    return c


def _probe(p: Platform, host: str, port: int) -> dict[str, Any]:
    r = httpx.post(f"{p.url}/function/prober", content=json.dumps({"host": host, "port": port}), timeout=30)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def test_a_function_cannot_reach_another_functions_container(platform: Platform, engine: Any) -> None:
    target = _container(engine, platform, "target")
    (address,) = [n["IPAddress"] for n in target.attrs["NetworkSettings"]["Networks"].values()]
    result = _probe(platform, address, 8080)
    assert result["reached"] is False, result
    # The gateway, on the host, still routes to both.
    assert httpx.post(f"{platform.url}/function/target", timeout=30).text == "target"
    assert _probe(platform, "127.0.0.1", 8080)["reached"] is True  # its own replica server: the probe works


def test_each_platform_has_its_own_isolated_network(platform: Platform, engine: Any) -> None:
    owner = _owner(platform)
    network = engine.networks.get(default_name(owner))
    assert network.attrs["Options"][ICC_OPTION] == "false"
    assert network.attrs["Options"]["com.docker.network.bridge.name"] == bridge_name(owner)
    assert {_container(engine, platform, n).id for n in ("prober", "target")} <= set(network.attrs["Containers"])


def _listen(host: str) -> tuple[socket.socket, threading.Event]:
    """A TCP server on ``host`` that sets an event when something connects."""
    server = socket.create_server((host, 0))
    hit = threading.Event()

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            hit.set()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, hit


def test_what_the_bridge_does_not_block_is_what_the_docs_say(platform: Platform, engine: Any) -> None:
    network = engine.networks.get(default_name(_owner(platform)))
    gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
    everywhere, reached = _listen("0.0.0.0")
    loopback, _ = _listen("127.0.0.1")
    try:
        # A host service on all interfaces: reachable at the bridge's gateway address (docs/docker.md says how an
        # operator closes it with a firewall rule on the stk-<owner> interface).
        assert _probe(platform, gateway, everywhere.getsockname()[1])["reached"] is True and reached.wait(5)
        # The host's loopback is not the container's: a service bound to 127.0.0.1 is out of reach.
        assert _probe(platform, gateway, loopback.getsockname()[1])["reached"] is False
    finally:
        everywhere.close()
        loopback.close()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("iptables"), reason="needs root and iptables")
def test_the_firewall_rule_in_the_docs_closes_the_host(platform: Platform, engine: Any) -> None:
    """docs/security.md's two rules for the platform's interface: host services on 0.0.0.0 become unreachable from
    functions, and the gateway still reaches its replicas (the replies are ESTABLISHED)."""
    owner = _owner(platform)
    interface = bridge_name(owner)
    gateway = engine.networks.get(default_name(owner)).attrs["IPAM"]["Config"][0]["Gateway"]
    accept = ["INPUT", "-i", interface, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    drop = ["INPUT", "-i", interface, "-j", "DROP"]
    everywhere, _ = _listen("0.0.0.0")
    subprocess.run(["iptables", "-I", *accept], check=True)
    try:
        subprocess.run(["iptables", "-I", drop[0], "2", *drop[1:]], check=True)
        try:
            assert _probe(platform, gateway, everywhere.getsockname()[1])["reached"] is False
            assert httpx.post(f"{platform.url}/function/target", timeout=30).text == "target"
        finally:
            subprocess.run(["iptables", "-D", *drop], check=True)
    finally:
        subprocess.run(["iptables", "-D", *accept], check=True)
        everywhere.close()
    again, _ = _listen("0.0.0.0")
    try:
        assert _probe(platform, gateway, again.getsockname()[1])["reached"] is True  # the rules are gone
    finally:
        again.close()


def test_the_network_goes_with_the_platform(engine: Any, tmp_path: Path) -> None:
    import docker.errors

    p = start_platform(tmp_path / "home", "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    try:
        assert p.deploy("target", write_handler(tmp_path / "target", TARGET)).status_code == 202
        name = default_name(_owner(p))
        assert engine.networks.get(name) is not None
    finally:
        p.stop(timeout=120)
    with pytest.raises(docker.errors.NotFound):
        engine.networks.get(name)
