"""``STOKER_SHUTDOWN_DELAY_S``: on SIGTERM the gateway turns unready (``/readyz`` 503) yet keeps serving every call,
new connections included, for the delay, then stops on its own; a load balancer checking ``/readyz`` (``stoker
edge``, Kubernetes) has taken it out by then. Without it, a stopping gateway refused new connections at once and the
calls a balancer sent in the meantime failed (issue 19). A second signal stops it at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.install.install_support import wait_for
from tests.platform_fixture import FUNCTIONS, start_platform


def test_a_stopping_gateway_is_unready_but_serves_for_the_delay_then_stops(tmp_path: Path) -> None:
    p = start_platform(tmp_path / "home", env={"STOKER_POOL_SIZE": "0", "STOKER_SHUTDOWN_DELAY_S": "4"})
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        wait_for(lambda: httpx.get(f"{p.url}/function/hello", timeout=30).status_code == 200, 60, "hello")
        ready = httpx.get(f"{p.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.headers.get("connection") != "close"  # keep-alive until it stops
        p.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(f"{p.url}/readyz", timeout=10).status_code == 503, 30, "/readyz 503")
        # It says how long it serves on, for a balancer that has no other gateway (gateway/edge.py).
        assert 0 < float(httpx.get(f"{p.url}/readyz", timeout=10).headers["x-stoker-stops-in"]) <= 4
        # Still serving, on new connections: what a balancer sent before it saw the 503 succeeds.
        answer = httpx.get(f"{p.url}/function/hello", timeout=30)
        assert answer.status_code == 200, answer.text
        # Each answer ends its keep-alive connection: none sits idle for the gateway to close under a new request.
        assert answer.headers["connection"] == "close"
        with httpx.Client(timeout=10) as client:  # a keep-alive client too: its connection ends after the answer
            assert client.get(f"{p.url}/healthz").headers["connection"] == "close"
        assert httpx.get(f"{p.url}/healthz", timeout=10).status_code == 200  # alive: not to be restarted
        assert p.proc.poll() is None
        assert p.proc.wait(60) == 0  # then it stops on its own
    finally:
        if p.proc.poll() is None:
            p.proc.kill()


def test_a_second_signal_stops_a_delayed_gateway_at_once(tmp_path: Path) -> None:
    p = start_platform(tmp_path / "home", env={"STOKER_POOL_SIZE": "0", "STOKER_SHUTDOWN_DELAY_S": "300"})
    try:
        p.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: httpx.get(f"{p.url}/readyz", timeout=10).status_code == 503, 30, "/readyz 503")
        started = time.monotonic()
        assert p.stop(signal.SIGINT, timeout=60) == 0
        assert time.monotonic() - started < 30
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
