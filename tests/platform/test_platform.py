"""The platform process: state survives restarts and crashes, replicas are supervised, nothing is orphaned."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, Platform, start_platform, write_handler
from tests.wait_support import still_running

pytestmark = pytest.mark.slow

PID_HANDLER = "import os\ndef handle(event, context):\n    return str(os.getpid())\n"


def _replica_pids(platform: Platform) -> set[int]:
    """Replica processes started by the platform (its children but the watcher of their process groups)."""
    children = Path(f"/proc/{platform.proc.pid}/task/{platform.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children if b"local.groups" not in Path(f"/proc/{pid}/cmdline").read_bytes()}


def test_functions_survive_a_restart_and_no_process_is_orphaned(fresh_home: Path, tmp_path: Path) -> None:
    p = start_platform(fresh_home)
    try:
        write_handler(tmp_path / "pid", PID_HANDLER)
        assert p.deploy("pid", tmp_path / "pid").status_code == 202
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        pids = _replica_pids(p)
        generic = {pid for pid in pids if b"STOKER_POOL=1" in Path(f"/proc/{pid}/environ").read_bytes()}
        assert len(pids - generic) == 2  # the rest are the warm pool's generic replicas
    finally:
        assert p.stop() == 0
    assert still_running(pids, 15) == []

    p = start_platform(fresh_home)
    try:
        r = httpx.get(f"{p.url}/function/pid", timeout=30)
        assert r.status_code == 200
        assert httpx.get(f"{p.url}/function/hello", timeout=30).status_code == 200
    finally:
        p.stop()


def test_functions_survive_a_platform_crash(fresh_home: Path, tmp_path: Path) -> None:
    p = start_platform(fresh_home)
    write_handler(tmp_path / "pid", PID_HANDLER)
    assert p.deploy("pid", tmp_path / "pid").status_code == 202
    pids = _replica_pids(p)
    p.stop(signal.SIGKILL)
    assert still_running(pids, 15) == []  # replicas die with the platform, even on SIGKILL

    p = start_platform(fresh_home)
    try:
        assert httpx.get(f"{p.url}/function/pid", timeout=30).status_code == 200
    finally:
        p.stop()


def test_a_crashed_replica_is_restarted(fresh_home: Path, tmp_path: Path) -> None:
    p = start_platform(fresh_home)
    try:
        write_handler(tmp_path / "pid", PID_HANDLER)
        assert p.deploy("pid", tmp_path / "pid").status_code == 202
        first = int(httpx.get(f"{p.url}/function/pid").text)
        os.kill(first, signal.SIGKILL)
        r = httpx.get(f"{p.url}/function/pid", timeout=30)  # waits for the restarted replica
        assert r.status_code == 200 and int(r.text) != first
        with p.client() as c:
            logs = c.get("/system/logs", params={"name": "pid"}).text
        assert "exited with code" in logs
    finally:
        p.stop()


def test_second_platform_on_the_same_home_is_refused(fresh_home: Path) -> None:
    p = start_platform(fresh_home)
    try:
        with pytest.raises(RuntimeError, match="already using"):
            start_platform(fresh_home)
    finally:
        p.stop()


def test_credentials_are_generated_private_and_used_by_the_cli(fresh_home: Path) -> None:
    p = start_platform(fresh_home, env={"STOKER_ADMIN_PASSWORD": ""})
    try:
        creds = fresh_home / "credentials"
        assert creds.stat().st_mode & 0o777 == 0o600
        import json

        password = json.loads(creds.read_text())["password"]
        assert len(password) >= 24
        assert httpx.get(f"{p.url}/system/info", auth=("admin", password)).status_code == 200
    finally:
        p.stop()
