"""Chaos for what sits under the platform: the disk filling up while calls come in, and the Docker Engine not
answering while functions are called and scaled. Real load, every call counted to the end.

- Disk: ``STOKER_HOME`` (state, the embedded queue, logs) on a small real tmpfs that is filled to its last byte in the
  middle of a run of sync calls and async calls, then freed. Sync calls to a running function never fail; an async
  call is either accepted (202) and then ends ``done`` with its result, or refused with 503 and ``Retry-After``
  (never a 500, never a 202 that is then lost).
- Engine: dockerd is stopped (SIGSTOP) for a few seconds under load on the docker backend while a scale-up is asked
  for. Calls to the running replica never fail (the gateway calls containers, not the engine), ``/healthz`` keeps
  answering at once, and the scale-up completes once the engine is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chaos.chaos_support import HANDLER, REPORTS, Load, wait_until
from tests.disk_support import fill
from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


# --- the disk fills up ------------------------------------------------------------------------------------------


class AsyncLoad:
    """One thread submitting async calls without pause; every answer kept (call id of a 202, else the status)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: list[str] = []
        self.refused: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url, content=b"x" * 2048)
                except httpx.HTTPError as exc:
                    self.refused.append((-1, f"{type(exc).__name__}: {exc}"))
                    continue
                if r.status_code == 202:
                    self.accepted.append(r.headers["x-call-id"])
                else:
                    self.refused.append((r.status_code, r.headers.get("retry-after", "") + " " + r.text[:200]))
                    time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)


def test_the_disk_filling_up_under_load_loses_no_accepted_call(small_disk: Path, tmp_path: Path) -> None:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_QUEUE_CLAIM_IDLE_S": "1", "STOKER_QUEUE_BACKOFF_S": "0.05"}
    p: Platform = start_platform(small_disk / "home", env=env)
    filler: Path | None = None
    name = f"disk-{uuid.uuid4().hex[:6]}"
    try:
        assert p.deploy(name, write_handler(tmp_path / "fn", HANDLER)).status_code == 202
        url = f"{p.url}/function/{name}"
        sync = Load(lambda: url, clients=3, params={"sleep": "0"})
        queued = AsyncLoad(f"{p.url}/async-function/{name}")
        try:
            wait_until(lambda: len(queued.accepted) > 50 and len(sync.snapshot()) > 50, 60, "load before the fill")
            filler = fill(small_disk)
            full_at = len(queued.refused)
            wait_until(lambda: len(queued.refused) > full_at + 20, 60, "async calls refused while the disk is full")
            time.sleep(2)  # the disk stays full under load for a while
            filler.unlink()
            filler = None
            freed_at = len(queued.accepted)
            wait_until(lambda: len(queued.accepted) > freed_at + 50, 60, "async calls accepted again")
        finally:
            calls = sync.stop()
            queued.stop()
        failed_sync = [c for c in calls if c.status != 200]
        assert failed_sync == [], failed_sync[:5]
        wrong = [(s, why) for s, why in queued.refused if s != 503 or not why.split(" ", 1)[0]]
        assert wrong == [], wrong[:5]  # a refusal is a 503 with Retry-After, never a 500 or a dropped connection

        def status(call_id: str) -> int:
            with p.client() as c:
                return c.get(f"/system/async-result/{call_id}").status_code

        pending = set(queued.accepted)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            pending = {call_id for call_id in pending if status(call_id) != 200}
            time.sleep(0.2)
        assert not pending, f"{len(pending)} of {len(queued.accepted)} accepted calls never finished"
        REPORTS.append(
            f"disk full under load: sync calls {len(calls)}, failed 0; async accepted {len(queued.accepted)}, "
            f"completed {len(queued.accepted)}; refused with 503 while full {len(queued.refused)}"
        )
    finally:
        if filler is not None:
            with contextlib.suppress(OSError):
                filler.unlink()
        p.stop()


# --- the engine stops answering ---------------------------------------------------------------------------------


def _dockerd_pid() -> int:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    if not out:
        pytest.skip("no dockerd process on this machine to pause (an engine elsewhere)")
    return int(out[0])


def test_an_engine_that_stops_answering_fails_no_call_and_the_scale_up_completes(
    docker_engine: Any, tmp_path: Path
) -> None:
    dockerd = _dockerd_pid()
    p = start_platform(tmp_path / "home", "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    name = f"engine-{uuid.uuid4().hex[:6]}"
    paused = False
    try:
        labels = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "2", "com.openfaas.scale.type": "capacity"}
        assert p.deploy(name, write_handler(tmp_path / "fn", HANDLER), labels=labels).status_code == 202
        url = f"{p.url}/function/{name}"
        load = Load(lambda: url, clients=3)
        scaled: list[int] = []
        health: list[float] = []
        try:
            wait_until(lambda: len(load.snapshot()) > 30, 60, "load")
            os.kill(dockerd, signal.SIGSTOP)
            paused = True
            stopped_at = time.monotonic()

            def scale() -> None:
                with httpx.Client(base_url=p.url, auth=p.auth, timeout=120) as c:
                    scaled.append(c.post("/system/scale-function/" + name, json={"replicas": 2}).status_code)

            asker = threading.Thread(target=scale, daemon=True)
            asker.start()
            while time.monotonic() - stopped_at < 5:
                started = time.monotonic()
                assert httpx.get(f"{p.url}/healthz", timeout=10).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.2)
            os.kill(dockerd, signal.SIGCONT)
            paused = False
            asker.join(120)

            seen: list[object] = []

            def available() -> int:
                with p.client() as c:
                    seen[:] = [c.get(f"/system/function/{name}").json()]
                    return int(seen[0]["availableReplicas"])  # type: ignore[index]

            def why() -> object:  # the function's status and what the platform said of it (scaling decisions)
                return [seen, [line.strip() for line in p.output if name in line][-15:]]

            wait_until(lambda: available() == 2, 120, "the second replica once the engine answers", why=why)
            during = [c for c in load.snapshot() if c.start >= stopped_at]
            wait_until(lambda: len(load.snapshot()) > len(during) + 30, 60, "calls after the pause")
        finally:
            if paused:
                os.kill(dockerd, signal.SIGCONT)
            calls = load.stop()
        failed = [c for c in calls if c.status != 200]
        assert failed == [], failed[:5]
        assert scaled == [202], scaled
        assert max(health) < 1.0, health  # the gateway's loop never waits on the engine
        REPORTS.append(
            f"dockerd stopped 5 s under load: calls {len(calls)}, failed 0; /healthz max {max(health) * 1000:.0f} ms; "
            "the scale-up asked meanwhile completed once the engine answered"
        )
    finally:
        p.stop(timeout=120)
