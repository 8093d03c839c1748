"""A replica that dies while the platform cannot start processes (out of file descriptors) comes back as soon as it
can: its supervisor keeps trying, says why in the function's status, and calls work again once fds are free.

The platform's fd limit is lowered from outside with ``prlimit`` (on the real ``stoker up`` process), below the fds
it already holds, so that no new one can be opened; the management API answers over a connection opened before.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux)"),
]

PID_HANDLER = "import os\ndef handle(event, context):\n    return str(os.getpid())\n"


def _nofile(pid: int) -> tuple[str, str]:
    out = subprocess.run(
        ["prlimit", "--pid", str(pid), "--nofile", "--raw", "--noheadings", "--output", "SOFT,HARD"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return out[0], out[1]


def _set_nofile(pid: int, soft: str, hard: str) -> None:
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={soft}:{hard}"], check=True)


def test_a_replica_killed_while_the_platform_is_out_of_fds_comes_back_once_it_has_them(
    fresh_home: Path, tmp_path: Path
) -> None:
    p: Platform = start_platform(fresh_home, env={"STOKER_POOL_SIZE": "0"})
    soft, hard = _nofile(p.proc.pid)
    try:
        assert p.deploy("pid", write_handler(tmp_path / "pid", PID_HANDLER)).status_code == 202
        replica = int(httpx.get(f"{p.url}/function/pid", timeout=30).text)
        with p.client() as api:  # connected now: it needs no new fd later
            assert api.get("/system/function/pid").json()["availableReplicas"] == 1
            _set_nofile(p.proc.pid, "3", hard)  # every fd number is taken: nothing new can be opened
            os.kill(replica, signal.SIGKILL)
            messages: list[str] = []

            def retrying() -> bool:
                messages.append(str(api.get("/system/function/pid").json()["message"]))
                return sum("Too many open files" in m for m in set(messages)) >= 2  # tried again, and again

            wait_until(retrying, 30, "the status to say the replica cannot be started, and the retries go on")
            failing = api.get("/system/function/pid").json()
            assert failing["availableReplicas"] == 0
            _set_nofile(p.proc.pid, soft, hard)
            raised = time.monotonic()
            wait_until(lambda: api.get("/system/function/pid").json()["availableReplicas"] == 1, 30, "the replica")
            back_after = time.monotonic() - raised
            assert api.get("/system/function/pid").json()["message"] == ""  # recovered: no stale error
        r = httpx.get(f"{p.url}/function/pid", timeout=30)
        assert r.status_code == 200 and int(r.text) != replica
        assert back_after < 15, f"back {back_after:.1f}s after the fds were free"
        with p.client() as api:
            logs = api.get("/system/logs", params={"name": "pid"}).text
        assert "could not start a process" in logs
    finally:
        if p.proc.poll() is None:
            _set_nofile(p.proc.pid, soft, hard)
        p.stop()
