"""Shared by the install tests: images built offline with tags unique to the run, a load client counting failures."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
RUN = secrets.token_hex(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_images(tag: str) -> dict[str, str]:
    """The runtime, platform and Redis images, tagged ``...:<tag>`` (built offline, cached by content)."""
    images = {
        "STOKER_RUNTIME_IMAGE": f"stoker/runtime:{tag}",
        "STOKER_PLATFORM_IMAGE": f"stoker/platform:{tag}",
        "STOKER_REDIS_IMAGE": f"stoker/redis:{tag}",
    }
    done = subprocess.run([str(ROOT / "deploy/swarm/build-images.sh"), "--redis"], capture_output=True, text=True,
                          env={**os.environ, **images}, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return images


def untag(images: dict[str, str]) -> None:
    subprocess.run(["docker", "rmi", *images.values()], capture_output=True, check=False, timeout=120)


def stoker(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    environ = {**os.environ, "STOKER_HOME": str(home), **(env or {})}
    done = subprocess.run([sys.executable, "-m", "stoker", *args], capture_output=True, text=True, env=environ,
                          timeout=timeout, check=False)  # fmt: skip
    assert done.returncode == 0, f"stoker {' '.join(args)}: {done.stderr}"
    return done.stdout


def wait_for(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    not_yet: tuple[type[Exception], ...] = (httpx.HTTPError,),
    poll_s: float = 0.2,
) -> Any:
    """``check()``'s first truthy value; the errors ``not_yet`` count as not yet (a gateway starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except not_yet:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll_s)


@dataclass
class Load:
    """Clients calling ``url`` until stopped; every answer but a 200 with ``expect`` in its body is a failure."""

    url: str
    expect: tuple[str, ...]
    workers: int = 2
    method: str = "GET"  # POST: calls the edge must never send twice
    body: bytes = b""
    ok: int = 0
    slowest: float = 0.0  # seconds, of the calls that succeeded (calls held through a switch are slow, not lost)
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    started = time.monotonic()
                    r = client.request(self.method, self.url, content=self.body)
                    if r.status_code == 200 and r.text in self.expect:
                        self.ok += 1
                        self.slowest = max(self.slowest, time.monotonic() - started)
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:80]}")
                except httpx.HTTPError as exc:
                    self.failed.append(type(exc).__name__)
                    time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def report(self, what: str) -> str:
        line = f"{what}: {len(self.failed)} failed of {self.ok + len(self.failed)} calls, slowest {self.slowest:.1f}s"
        print(line, flush=True)
        return line
