"""The swarm route chosen at start: ``stoker up --backend swarm`` on a host reaches its replicas through published
ports by itself, and a forced ``overlay`` route on a host fails at once naming STOKER_SWARM_ROUTE (it used to fail
every deploy after 120 s with "no replica became ready")."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from builder.base import ensure_base_image
from runtime.backends.swarm.config import PLATFORM
from runtime.backends.swarm.route import attached, choose, container_ids
from stoker.errors import ConfigError
from tests.platform_fixture import FUNCTIONS, PASSWORD, ROOT, start_platform
from tests.runtime.backends.swarm.test_support import swarm_engine, wait_for

ID = "3f4e" * 16
# /proc/self/mountinfo in a container (Docker 24, overlay2, cgroup v2): the container's own files come from
# /var/lib/docker/containers/<id>/; the image layers are elsewhere.
MOUNTINFO = f"""\
1063 858 0:77 / / rw,relatime master:406 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/doc
1066 1063 0:81 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1071 1063 253:1 /var/lib/docker/containers/{ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw
1072 1063 253:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda1 rw
1073 1063 253:1 /var/lib/docker/containers/{ID}/hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw
"""


# A host's: every running container's shm shows there too, and must not make the host look like that container.
HOST_MOUNTINFO = f"""\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw
60 42 0:45 / /var/lib/docker/containers/{ID}/mounts/shm rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs shm rw
"""


def test_the_container_id_is_read_from_the_mounts() -> None:
    assert container_ids(MOUNTINFO) == [ID]
    assert container_ids(HOST_MOUNTINFO) == []


def test_auto_follows_the_network_and_overlay_off_it_is_refused() -> None:
    assert choose("auto", "fns", attached=True) == "overlay"
    assert choose("auto", "fns", attached=False) == "published"
    assert choose("overlay", "fns", attached=True) == "overlay"
    assert choose("published", "fns", attached=True) == "published"
    with pytest.raises(ConfigError, match=r"STOKER_SWARM_ROUTE=overlay.*not attached.*'fns'"):
        choose("overlay", "fns", attached=False)


@pytest.mark.slow
def test_attached_knows_a_real_container_on_the_overlay(swarm_platform: str, tmp_path: Path) -> None:
    engine = swarm_engine()
    network = f"{swarm_platform}-functions"  # removed by the fixture
    if not engine.api.networks(names=[network]):
        engine.api.create_network(network, driver="overlay", attachable=True, labels={PLATFORM: swarm_platform})
    image = ensure_base_image(engine, "stoker/runtime", out=lambda _: None).ref
    script = "cat /proc/self/mountinfo; echo END; sleep 120"
    container = engine.containers.run(
        image, ["sh", "-c", script], network=network, detach=True, name=f"{swarm_platform}-route", user="root"
    )
    try:
        logs = wait_for(lambda: (text := container.logs().decode()) and "END" in text and text, 60, "mountinfo")
        inside = tmp_path / "mountinfo"
        inside.write_text(logs)
        assert container_ids(logs)[0] == container.id
        assert attached(engine, network, inside)
        assert not attached(engine, "bridge", inside)
        assert not attached(engine, network)  # this test, on the host
    finally:
        container.remove(force=True)
        engine.close()


@pytest.fixture
def host_env(swarm_platform: str) -> dict[str, str]:
    """`stoker up --backend swarm` as a user types it on a host: no STOKER_SWARM_ROUTE (the platform's services and
    network are removed by the module's fixture)."""
    env = dict(os.environ)
    env.update(
        STOKER_SWARM_ROUTE="",  # empty is unset (start_platform adds the test's own environment to this one)
        STOKER_SWARM_PLATFORM=swarm_platform,
        STOKER_SWARM_NETWORK=f"{swarm_platform}-functions",
        STOKER_SWARM_STOP_DELAY_S="1",
    )
    return env


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stoker_up_on_a_host_deploys_and_answers(host_env: dict[str, str], tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "home", "--backend", "swarm", env=host_env)
    try:
        reply = platform.deploy("routed", FUNCTIONS / "hello")
        assert reply.status_code in (200, 202), reply.text  # was 502 after 120 s: "no replica became ready"
        with httpx.Client(base_url=platform.url, timeout=60) as client:
            answer = client.post("/function/routed", content=b"host")
        assert answer.status_code == 200, answer.text
        assert answer.text == "Hello, host!\n"
        assert any("swarm route: published" in line for line in platform.output), platform.output
    finally:
        platform.stop(timeout=60)


@pytest.mark.slow
def test_a_forced_overlay_route_on_a_host_fails_at_start(host_env: dict[str, str], tmp_path: Path) -> None:
    env = {**host_env, "STOKER_SWARM_ROUTE": "overlay", "STOKER_HOME": str(tmp_path / "home")}
    env["STOKER_ADMIN_PASSWORD"] = PASSWORD
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "stoker", "up", "--backend", "swarm", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "STOKER_SWARM_ROUTE=overlay" in done.stderr and f"{host_env['STOKER_SWARM_NETWORK']}" in done.stderr
    assert "gateway on" not in done.stdout
    assert time.monotonic() - began < 60  # at start, not after a deploy's 120 s wait
