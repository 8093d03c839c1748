"""``/healthz`` and ``/readyz`` tell a load balancer or an orchestrator the truth about the gateway's queue: a Redis
that is down, or that refuses the gateway's password, makes them answer 503 naming the cause; the embedded queue and
a Redis that answers give 200."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.platform_fixture import start_platform
from tests.wait_support import free_port


def _wait(url: str, status: int, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(url, timeout=10)
        if reply.status_code == status or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


@pytest.fixture
def redis_with_password() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            "right-password",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_healthz_and_readyz_report_a_redis_that_is_down_and_recover_when_it_is_back(
    tmp_path: Path, redis_with_password: tuple[str, subprocess.Popen[bytes]]
) -> None:
    redis = redis_with_password
    platform = start_platform(tmp_path / "home", env={"STOKER_REDIS_URL": f"redis://:right-password@{redis[0]}/0"})
    try:
        for path in ("/healthz", "/readyz"):
            reply = _wait(platform.url + path, 200)
            assert reply.status_code == 200 and reply.text == "OK", reply.text
        redis[1].kill()
        redis[1].wait(10)
        for path in ("/healthz", "/readyz"):
            reply = _wait(platform.url + path, 503)
            assert reply.status_code == 503, reply.text
            assert "Redis" in reply.json()["error"] and reply.headers["retry-after"] == "1"
        # The gateway itself stays up and answers everything else.
        assert httpx.get(platform.url + "/system/info", auth=platform.auth, timeout=10).status_code == 200
    finally:
        platform.stop()


def test_a_redis_refusing_the_password_is_unhealthy(
    tmp_path: Path, redis_with_password: tuple[str, subprocess.Popen[bytes]]
) -> None:
    # A wrong password at start stops `stoker up` (tests/stoker/cli/test_up_redis.py); here it changes afterwards.
    address = redis_with_password[0]
    platform = start_platform(tmp_path / "home", env={"STOKER_REDIS_URL": f"redis://:right-password@{address}/0"})
    try:
        assert _wait(platform.url + "/healthz", 200).status_code == 200
        host, port = address.split(":")
        admin = redis.Redis(host=host, port=int(port), password="right-password")
        admin.config_set("requirepass", "rotated-password")
        admin.client_kill_filter(_type="normal", skipme=True)  # the gateway must log in again
        admin.close()
        reply = _wait(platform.url + "/healthz", 503)
        assert reply.status_code == 503 and reply.json()["error"], reply.text
    finally:
        platform.stop()


def test_the_embedded_queue_is_healthy(tmp_path: Path) -> None:
    platform = start_platform(tmp_path / "home", env={"STOKER_REDIS_URL": ""})
    try:
        assert _wait(platform.url + "/readyz", 200).text == "OK"
    finally:
        platform.stop()
