"""Load that counts every call, faults with their times, and the arithmetic that ties failures to faults.

Each client thread calls a function in a loop over one keep-alive connection and keeps every call: when it started,
when it ended, its status (-1: no HTTP answer at all). A fault (a SIGKILLed replica, a SIGKILLed platform) is kept
as the moment just before and just after it was dealt. A failed call "was in flight" at a fault when it started
before the fault's end and ended after its start; every other failure is a call that came after the fault and
should have succeeded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

REPORTS: list[str] = []  # printed at the end of the run (tests/chaos/conftest.py)

HANDLER = """
import os, socket, time

def handle(event, context):
    time.sleep(float(event.query.get("sleep", "0")))
    return {"pid": os.getpid(), "host": socket.gethostname()}
"""


@dataclass(frozen=True)
class Call:
    start: float
    end: float
    status: int
    served_by: str  # pid (local) or host name (container id) of the replica that answered; on failure, why


@dataclass(frozen=True)
class Fault:
    start: float
    end: float


@dataclass
class Load:
    """``clients`` threads calling ``url()`` (re-read on every call) until stopped."""

    url: Callable[[], str]
    clients: int = 4
    params: dict[str, str] = field(default_factory=lambda: {"sleep": "0.02"})
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    r = client.get(self.url(), params=self.params)
                    status = r.status_code
                    served_by = _served_by(r) if status == 200 else r.text[:200]
                except httpx.HTTPError as exc:
                    status, served_by = -1, f"{type(exc).__name__}: {exc}"
                    time.sleep(0.01)  # a refused connection fails at once; do not spin
                with self._lock:
                    self.calls.append(Call(start, time.monotonic(), status, served_by))

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def stop(self) -> list[Call]:
        self._stop.set()
        for t in self._threads:
            t.join(90)
        return self.snapshot()

    def last_server(self) -> str:
        """Who answered the most recent successful call."""
        return next((c.served_by for c in reversed(self.snapshot()) if c.status == 200), "")


def _served_by(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return ""
    return str(data.get("pid", "")) + "@" + str(data.get("host", ""))


def in_flight(call: Call, fault: Fault) -> bool:
    return call.start <= fault.end and call.end >= fault.start


@dataclass(frozen=True)
class Tally:
    calls: int
    failed: int
    in_flight: int  # failures in flight at a fault
    late: list[Call]  # failures that started after every fault they could be tied to

    def per_fault(self, faults: int) -> float:
        return self.failed / faults if faults else 0.0


def tally(calls: list[Call], faults: list[Fault]) -> Tally:
    failed = [c for c in calls if c.status != 200]
    tied = [c for c in failed if any(in_flight(c, f) for f in faults)]
    late = [c for c in failed if c not in tied]
    return Tally(len(calls), len(failed), len(tied), late)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, poll_s: float = 0.05, why: Callable[[], object] | None = None
) -> None:
    """Until ``check()``; else fail naming ``what`` and, when given, what ``why()`` shows of the state at the end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    seen = f"; last seen: {why()}" if why is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{seen}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
