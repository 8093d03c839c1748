"""The Compose install with Debian's docker-compose 1.29, as docs/install.md has an operator do it: install, deploy,
call, upgrade to a new platform image under load with no failed call (GET and POST, through the edge), uninstall
leaving nothing (every name unique to the run, removed even when a step fails). Prints the timings and the calls of
the upgrade."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest

from stoker.install import engines
from stoker.install.values import Values
from tests.install.install_support import RUN, Load, free_port, stoker, wait_for
from tests.platform_fixture import write_handler

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not shutil.which("docker-compose"), reason="apt-get install docker-compose"),
]

NAME = f"tc{RUN}"


@pytest.fixture(scope="module")
def images(stack_images: dict[str, str]) -> dict[str, str]:
    return dict(stack_images)  # built once per session (tests/conftest.py)


def _leftovers(client: docker.DockerClient) -> list[str]:
    project = {"label": f"com.docker.compose.project={NAME}"}
    owner = {"label": f"com.stoker.owner={engines.compose_owner(Values(target='compose', name=NAME))}"}
    found = [c.name for c in client.containers.list(all=True, filters=project)]
    found += [c.name for c in client.containers.list(all=True, filters=owner)]
    found += [v.name for v in client.volumes.list(filters=project) + client.volumes.list(filters=owner)]
    found += [n.name for n in client.networks.list() if n.name.startswith((f"{NAME}_", f"{NAME}-"))]
    return found


def test_install_deploy_call_upgrade_under_load_and_uninstall(
    images: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home, port = tmp_path / "home", free_port()
    url = f"http://127.0.0.1:{port}"
    flags = ["--name", NAME, "--port", str(port), "--platform-image", images["STOKER_PLATFORM_IMAGE"],
             "--runtime-image", images["STOKER_RUNTIME_IMAGE"],
             "--redis-image", images["STOKER_REDIS_IMAGE"]]  # fmt: skip
    client = docker.from_env()
    timings: dict[str, float] = {}
    try:
        start = time.monotonic()
        stoker("install", "compose", *flags, "--apply", home=home)
        timings["install"] = time.monotonic() - start
        env_file = home / "installs" / f"compose-{NAME}" / ".env"
        password = dict(line.split("=", 1) for line in env_file.read_text().splitlines())["STOKER_ADMIN_PASSWORD"]
        assert (env_file.stat().st_mode & 0o777) == 0o600
        # The state volume is the gateway's: it wrote its lock and credentials there as uid 10001.
        assert httpx.get(f"{url}/system/info", auth=("admin", password), timeout=10).status_code == 200

        folder = write_handler(tmp_path / "fn", "def handle(event, context):\n    return 'v1'\n")
        env = {"STOKER_GATEWAY": url, "STOKER_ADMIN_PASSWORD": password}
        start = time.monotonic()
        stoker("deploy", "--name", "hello", "--handler", str(folder), home=home, env=env)
        timings["first deploy"] = time.monotonic() - start
        start = time.monotonic()
        assert httpx.get(f"{url}/function/hello", timeout=60).text == "v1"
        timings["first call"] = time.monotonic() - start

        # Upgrade: a new platform image (a rebuilt tag), applied with the same command, under load.
        upgraded = images["STOKER_PLATFORM_IMAGE"] + "-v2"
        subprocess.run(["docker", "tag", images["STOKER_PLATFORM_IMAGE"], upgraded], check=True, timeout=60)
        images["upgraded"] = upgraded
        call = f"{url}/function/hello"
        with Load(call, ("v1",)) as load, Load(call, ("v1",), method="POST", body=b"x") as posts:
            wait_for(lambda: load.ok > 20 and posts.ok > 20, 60, "calls before the upgrade")
            start = time.monotonic()
            stoker("install", "compose", *flags[:-6], "--platform-image", upgraded, "--runtime-image",
                   images["STOKER_RUNTIME_IMAGE"], "--redis-image", images["STOKER_REDIS_IMAGE"], "--apply",
                   home=home)  # fmt: skip
            timings["upgrade"] = time.monotonic() - start
            seen = load.ok + posts.ok
            wait_for(lambda: load.ok + posts.ok > seen + 40, 120, "calls after the upgrade")
        gateway = client.containers.get(f"{NAME}_gateway_1")
        assert gateway.attrs["Config"]["Image"] == upgraded  # the gateway was recreated from the new reference
        # The edge, the one published port, was kept: replacing it would have dropped connections.
        assert client.containers.get(f"{NAME}_edge_1").attrs["Config"]["Image"] == images["STOKER_PLATFORM_IMAGE"]
        # The function came back from the state volume and Redis kept its password.
        assert httpx.get(f"{url}/function/hello", timeout=60).text == "v1"
        assert httpx.get(f"{url}/healthz", timeout=10).text == "OK"
        with capsys.disabled():
            print("\ncompose timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
            load.report("compose upgrade under load, GET (the edge holds calls while the gateway is replaced)")
            posts.report("compose upgrade under load, POST")
        # The edge held the calls of the switch until the new gateway was ready: none failed, GET or POST.
        assert load.failed == [] and posts.failed == [], (load.failed[:5], posts.failed[:5])
    finally:
        uninstall = [sys.executable, "-m", "stoker", "uninstall", "compose", "--name", NAME, "--functions"]
        environ = {**os.environ, "STOKER_HOME": str(home)}
        subprocess.run(uninstall, env=environ, capture_output=True, timeout=300, check=False)
        if "upgraded" in images:
            subprocess.run(["docker", "rmi", images.pop("upgraded")], capture_output=True, check=False)
    left = _leftovers(client)
    client.close()
    assert not left, left
