"""A real ``stoker up`` in a subprocess, for integration tests (no mocks of our own parts)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stoker import bundle

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
PASSWORD = "test-password"


@dataclass
class Platform:
    home: Path
    proc: subprocess.Popen[str]
    url: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def auth(self) -> tuple[str, str]:
        return ("admin", PASSWORD)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=30, **kw)

    def env(self) -> dict[str, str]:
        """Environment for CLI subprocesses pointed at this platform."""
        return {**os.environ, "STOKER_HOME": str(self.home), "STOKER_GATEWAY": self.url}

    def deploy(self, name: str, folder: Path, **fields: Any) -> httpx.Response:
        body = {"service": name, "source": base64.b64encode(bundle.pack(folder)).decode(), **fields}
        with self.client() as c:
            return c.post("/system/functions", json=body, timeout=60)

    def async_result(self, call_id: str, timeout: float = 60) -> httpx.Response:
        """``GET /system/async-result/{call_id}`` until it is no longer 202 (queued, running or retrying), or the last
        202 after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                r = c.get(f"/system/async-result/{call_id}")
                if r.status_code != 202 or time.monotonic() > deadline:
                    return r
                assert r.json()["status"] in ("queued", "running", "retrying"), r.text
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_platform(home: Path, *args: str, env: dict[str, str] | None = None) -> Platform:
    environ = {**os.environ, "STOKER_HOME": str(home), "STOKER_ADMIN_PASSWORD": PASSWORD, **(env or {})}
    environ.pop("STOKER_GATEWAY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stoker", "up", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environ,
        cwd=ROOT,
    )
    platform = Platform(home, proc)
    found = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            platform.output.append(line)
            m = re.search(r"gateway on (http://\S+)", line)
            if m:
                platform.url = m.group(1)
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while not found.wait(0.05):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("stoker up did not start:\n" + "".join(platform.output))
    return platform


def write_handler(folder: Path, source: str, name: str = "handler.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(source)
    return folder
