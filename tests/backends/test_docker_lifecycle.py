"""Platform lifecycle with the docker backend: adoption after a restart, a missing engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.docker_config import FUNCTION, OWNER
from tests.platform_fixture import ROOT, start_platform, write_handler

pytestmark = pytest.mark.slow


def test_a_restarted_platform_adopts_its_containers(docker_engine: Any, tmp_path: Path) -> None:
    env = {"STOKER_DOCKER_ON_SHUTDOWN": "leave"}
    home = tmp_path / "home"
    first = start_platform(home, "--backend", "docker", env=env)
    try:
        folder = write_handler(tmp_path / "keep", "def handle(event, context):\n    return 'kept'\n")
        assert first.deploy("keeper", folder).status_code == 202
    finally:
        assert first.stop(timeout=120) == 0
    before = [c.id for c in docker_engine.containers.list(filters={"label": f"{FUNCTION}=keeper"}) if OWNER in c.labels]
    assert len(before) == 1  # left running
    second = start_platform(home, "--backend", "docker")  # default on_shutdown: remove
    try:
        with second.client() as c:
            assert c.get("/system/function/keeper").json()["replicas"] == 1
        reply = httpx.get(f"{second.url}/function/keeper", timeout=30)
        for _ in range(100):
            if reply.status_code == 200:
                break
            reply = httpx.get(f"{second.url}/function/keeper", timeout=30)
        assert reply.text == "kept"
        after = [
            c.id for c in docker_engine.containers.list(filters={"label": f"{FUNCTION}=keeper"}) if OWNER in c.labels
        ]
        assert after == before  # adopted, not duplicated
    finally:
        second.stop(timeout=120)
    assert [c for c in docker_engine.containers.list(all=True, filters={"label": f"{FUNCTION}=keeper"})] == []


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
