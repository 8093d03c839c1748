"""Platform lifecycle with the docker backend: adoption after a restart, a missing engine."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.containers import FUNCTION, OWNER
from tests.platform_fixture import ROOT, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow


def test_a_restarted_platform_adopts_its_containers(docker_engine: Any, tmp_path: Path) -> None:
    # A name of this run's own: a container an interrupted run left (it is left running on purpose below) or another
    # run's on the same engine is not this one's, and must not be counted or break the next run.
    name = f"keeper-{uuid.uuid4().hex[:8]}"

    def containers(**kw: Any) -> list[Any]:
        return [c for c in docker_engine.containers.list(filters={"label": f"{FUNCTION}={name}"}, **kw)]

    env = {"STOKER_DOCKER_ON_SHUTDOWN": "leave"}
    home = tmp_path / "home"
    first = start_platform(home, "--backend", "docker", env=env)
    try:
        try:
            folder = write_handler(tmp_path / "keep", "def handle(event, context):\n    return 'kept'\n")
            assert first.deploy(name, folder).status_code == 202
        finally:
            assert first.stop(timeout=120) == 0
        before = [c.id for c in containers() if OWNER in c.labels]
        assert len(before) == 1  # left running
        second = start_platform(home, "--backend", "docker")  # default on_shutdown: remove
        try:
            with second.client() as c:
                assert c.get(f"/system/function/{name}").json()["replicas"] == 1
            wait_until(
                lambda: httpx.get(f"{second.url}/function/{name}", timeout=30).status_code == 200, 120, poll_s=0.1
            )
            assert httpx.get(f"{second.url}/function/{name}", timeout=30).text == "kept"
            assert [c.id for c in containers() if OWNER in c.labels] == before  # adopted, not duplicated
        finally:
            second.stop(timeout=120)
        assert containers(all=True) == []
    finally:
        for container in containers(all=True):  # only when the test failed half-way
            container.remove(force=True)


def test_no_engine_is_one_clear_error_and_the_local_backend_is_unaffected(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/absent.sock"}
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "up", "--backend", "docker", "--port", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "STOKER_HOME": str(tmp_path / "h1"), **env},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot reach the Docker Engine" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    local = start_platform(tmp_path / "h2", env=env)
    try:
        folder = write_handler(tmp_path / "fn", "def handle(event, context):\n    return 'local'\n")
        assert local.deploy("plain", folder).status_code == 202
        assert httpx.get(f"{local.url}/function/plain", timeout=30).text == "local"
    finally:
        local.stop()


def test_functions_at_zero_and_on_pool_replicas_survive_a_restart(docker_engine: Any, tmp_path: Path) -> None:
    # Neither has a container of its own when the platform stops: one is at zero, the other's replica came from
    # the warm pool (it carries the pool's labels, and a restarted platform removes pool containers).
    home = tmp_path / "home"
    env = {"STOKER_POOL_SIZE": "1"}
    folder = write_handler(tmp_path / "fn", "def handle(event, context):\n    return 'still here'\n")
    first = start_platform(home, "--backend", "docker", env=env)
    try:
        with first.client() as c:
            for name in ("atzero", "pooled"):
                assert first.deploy(name, folder, labels={"com.openfaas.scale.min": "0"}).status_code == 202
                assert c.post(f"/system/scale-function/{name}", json={"replicas": 0}).status_code == 202
            wait_until(lambda: c.get("/system/function/pooled").json()["availableReplicas"] == 0, 120, poll_s=0.1)
            wait_until(lambda: _warm(first) >= 1, 120, poll_s=0.1)
        assert httpx.get(f"{first.url}/function/pooled", timeout=60).text == "still here"  # from the pool
    finally:
        assert first.stop(timeout=120) == 0
    second = start_platform(home, "--backend", "docker", env=env)
    try:
        with second.client() as c:
            assert c.get("/system/function/atzero").json()["replicas"] == 0
            assert c.get("/system/function/pooled").json()["replicas"] == 1
        for name in ("atzero", "pooled"):
            reply = httpx.get(f"{second.url}/function/{name}", timeout=60)
            assert (reply.status_code, reply.text) == (200, "still here"), reply.text
    finally:
        second.stop(timeout=120)


def _warm(platform: Any) -> int:
    text = httpx.get(f"{platform.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("stoker_warm_pool_ready"):
            return int(float(line.split()[-1]))
    return 0
