"""A wrong Redis URL fails ``stoker up`` at start with one line naming the flag or variable, exit non-zero (issue 14,
item 10), instead of starting and retrying every second. Against a real redis-server that needs a password."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.platform_fixture import ROOT
from tests.wait_support import free_port

PASSWORD = "right-password"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of this module's own, with a password."""
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
         "--appendonly", "no", "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, password=PASSWORD)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait()


def _up(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "STOKER_HOME": str(tmp_path / "home"), **(env or {})}
    environ.pop("STOKER_REDIS_URL", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "stoker", "up", "--port", "0", *args],
        capture_output=True, text=True, env=environ, cwd=ROOT, timeout=60,
    )  # fmt: skip


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "gateway on" not in proc.stdout + proc.stderr  # it never started
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_wrong_password_fails_at_start_without_showing_it(tmp_path: Path, locked_redis: int) -> None:
    line = _one_line(_up(tmp_path, "--redis", f"redis://:not-it@127.0.0.1:{locked_redis}/0"))
    assert line.startswith("stoker: --redis: cannot use Redis at") and "password" in line
    assert "not-it" not in line


def test_no_password_names_the_variable(tmp_path: Path, locked_redis: int) -> None:
    line = _one_line(_up(tmp_path, env={"STOKER_REDIS_URL": f"redis://127.0.0.1:{locked_redis}/0"}))
    assert line.startswith("stoker: STOKER_REDIS_URL: cannot use Redis at") and "uthentication" in line


def test_an_unreachable_redis_fails_at_start(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    line = _one_line(_up(tmp_path, "--redis", f"redis://127.0.0.1:{port}/0"))
    assert line.startswith("stoker: --redis: cannot use Redis at") and "Connection refused" in line


@pytest.mark.parametrize("url", ["localhost:6379", "redis://127.0.0.1:port/0"])
def test_not_a_redis_url(tmp_path: Path, url: str) -> None:
    line = _one_line(_up(tmp_path, "--redis", url))
    assert "--redis" in line


def test_the_right_password_starts(tmp_path: Path, locked_redis: int) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{locked_redis}/0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stoker", "up", "--port", "0", "--redis", url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "STOKER_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "gateway on" in proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(30)
