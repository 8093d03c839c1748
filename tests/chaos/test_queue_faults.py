"""Chaos for the queue: real load while real things are SIGKILLed, every accepted call and message counted to the end.

Faults, each under load from several producer threads: the platform SIGKILLed and restarted (same state, same port)
during async calls and during trigger messages, on both queues; Redis SIGKILLed and restarted from its append-only
file during async calls with callbacks. Accepted means a 202 (an async call), a 201 (a message published through the
gateway) or an XADD Redis answered. Every accepted one must be processed (and an async call end done, with its result,
and its callback delivered); duplicates are allowed (at least once) and counted. Each test prints one line with the
counts (``pytest -s`` shows them).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import redis

from tests.chaos.redis_cut import RedisCut
from tests.platform_fixture import Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RECORDER = """
import os, time
def handle(event, context):
    time.sleep(float(os.environ.get("DELAY", "0")))
    key = event.headers.get("x-stoker-message-id") or event.headers.get("x-call-id")
    with open(os.environ["OUT"], "a") as f:
        f.write(key + "\\n")
    return "done " + key
"""
# Reclaim quickly after a kill; no warm pool (fewer processes on a 2-core machine). The callback allow-list is for
# the SSRF guard on callback URLs (the receiver here is on loopback).
ENV = {
    "STOKER_QUEUE_CLAIM_IDLE_S": "1",
    "STOKER_QUEUE_BACKOFF_S": "0.05",
    "STOKER_POOL_SIZE": "0",
    "STOKER_CALLBACK_ALLOW": "127.0.0.1",
}
TOTAL = 1000
KILL_AT = 300  # accepted so far when the fault strikes: the load is still going on, before and after it


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().split("\n") if line]  # a line cut by SIGKILL is only a prefix


class Load:
    """Producer threads sending until ``total`` are accepted, riding through outages (a refused or failed send is
    counted and tried again with the next item)."""

    def __init__(self, send: Callable[[httpx.Client], str | None], total: int, threads: int = 4) -> None:
        self.send = send
        self.total = total
        self.accepted: list[str] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while len(self.accepted) < self.total:
                try:
                    got = self.send(client)
                except (httpx.HTTPError, redis.RedisError):
                    got = None
                with self._lock:  # every accepted one counts, those past the total included
                    if got is None:
                        self.refused += 1
                    else:
                        self.accepted.append(got)
                if got is None:
                    time.sleep(0.02)  # pacing while the platform (or Redis) is away

    def wait(self, timeout: float) -> set[str]:
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), f"only {len(self.accepted)} of {self.total} accepted in time"
        return set(self.accepted)


@pytest.fixture(params=["embedded", "redis"])
def queue_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "embedded":
        return []
    return ["--redis", shared_redis_url()]


def _start(home: Path, port: int, args: list[str]) -> Platform:
    return start_platform(home, "--port", str(port), *args, env=ENV)


def _deploy(p: Platform, tmp: Path, name: str, **extra: object) -> Path:
    out = tmp / "processed.txt"
    fields = {"envVars": {"OUT": str(out), "DELAY": "0.005"}, **extra}
    r = p.deploy(name, write_handler(tmp / "fn", RECORDER), **fields)
    assert r.status_code == 202, r.text
    return out


def _results(p: Platform, call_ids: set[str]) -> Counter[str]:
    """How each call ended: done (200 with the function's answer), or its pending status."""
    ends: Counter[str] = Counter()
    with p.client() as c:
        for call_id in call_ids:
            r = c.get(f"/system/async-result/{call_id}")
            if r.status_code == 200 and r.content == f"done {call_id}".encode():
                ends["done"] += 1
            else:
                ends[r.json().get("status", str(r.status_code)) if r.status_code == 202 else str(r.status_code)] += 1
    return ends


def _wait_done(p: Platform, call_ids: set[str], timeout: float) -> None:
    """Until every call is done; else fail with how they ended (running, queued, 404...)."""
    deadline = time.monotonic() + timeout
    while (ends := _results(p, call_ids))["done"] != len(call_ids):
        assert time.monotonic() < deadline, f"not every accepted call ended done: {dict(ends)}"
        time.sleep(0.2)


def _report(fault: str, accepted: set[str], completed: set[str], seen: list[str], refused: int) -> None:
    duplicates = len(seen) - len(set(seen))
    share = 100 * len(completed & accepted) / len(accepted)
    print(
        f"\nchaos: {fault}: accepted {len(accepted)}, completed {len(completed & accepted)} ({share:.1f}%), "
        f"duplicates {duplicates}, refused during the fault {refused}"
    )


def _report_callbacks(fault: str, accepted: set[str], calls: list[str]) -> None:
    mine = [c for c in calls if c in accepted]
    print(f"chaos: {fault}: delivered {len(set(mine))} of {len(accepted)}, duplicates {len(mine) - len(set(mine))}")


def _wait_callbacks(p: Platform, accepted: set[str], receiver: Receiver, timeout: float) -> None:
    """Until every accepted call's callback arrived; else fail with how many are missing and why the platform says."""
    deadline = time.monotonic() + timeout
    while missing := accepted - set(receiver.calls):
        if time.monotonic() >= deadline:
            with p.client() as c:
                why = {c.get(f"/system/async-result/{call_id}").headers.get("x-callback-error", "no error noted")
                       for call_id in sorted(missing)[:20]}  # fmt: skip
            raise AssertionError(f"{len(missing)} of {len(accepted)} callbacks never arrived: {sorted(why)}")
        time.sleep(0.05)


def _sigkill_platform_during(load: Load, p: Platform, restart: Callable[[], Platform]) -> Platform:
    _until(lambda: len(load.accepted) >= KILL_AT, 60, f"{KILL_AT} accepted")
    p.stop(signal.SIGKILL)
    assert len(load.accepted) < load.total, "the load ended before the kill"
    return restart()


def test_platform_sigkilled_during_async_calls_with_callbacks(queue_args: list[str], tmp_path: Path) -> None:
    home, port, name = tmp_path / "home", _free_port(), f"chaos-{uuid.uuid4().hex[:8]}"
    receiver = Receiver(delay_s=0.02)
    p = _start(home, port, queue_args)
    try:
        out = _deploy(p, tmp_path, name)
        url = f"http://127.0.0.1:{port}/async-function/{name}"

        def send(client: httpx.Client) -> str | None:
            r = client.post(url, content=b"x", headers={"X-Callback-Url": receiver.url})
            return r.headers["x-call-id"] if r.status_code == 202 else None

        load = Load(send, TOTAL)
        p = _sigkill_platform_during(load, p, lambda: _start(home, port, queue_args))
        accepted = load.wait(120)
        _until(lambda: accepted <= set(_lines(out)), 120, "every accepted call processed")
        _wait_done(p, accepted, 60)
        _wait_callbacks(p, accepted, receiver, 60)
        kind = "redis" if queue_args else "embedded"
        _report(f"platform SIGKILL, async calls, {kind}", accepted, set(_lines(out)), _lines(out), load.refused)
        _report_callbacks(f"platform SIGKILL, callbacks, {kind}", accepted, receiver.calls)
    finally:
        p.stop()
        receiver.server.shutdown()


def test_platform_sigkilled_during_trigger_messages(queue_args: list[str], tmp_path: Path) -> None:
    home, port, name = tmp_path / "home", _free_port(), f"chaos-{uuid.uuid4().hex[:8]}"
    stream = f"chaos-{name}"
    p = _start(home, port, queue_args)
    try:
        out = _deploy(p, tmp_path, name, annotations={"com.stoker.queue.stream": stream})
        if queue_args:  # Redis: producers XADD straight to Redis, which stays up while the platform is down
            r = redis.Redis.from_url(queue_args[1])

            def send(client: httpx.Client) -> str | None:
                time.sleep(0.005)  # paced (<= 800/s): an XADD is so quick the load would end before the kill
                msg_id = r.xadd(stream, {"n": "x"})
                return msg_id.decode() if isinstance(msg_id, bytes) else str(msg_id)

        else:  # embedded: producers publish through the gateway
            publish = f"http://127.0.0.1:{port}/system/streams/{stream}"

            def send(client: httpx.Client) -> str | None:
                answer = client.post(publish, content=b"x", auth=p.auth)
                return str(answer.json()["id"]) if answer.status_code == 201 else None

        load = Load(send, TOTAL)
        p = _sigkill_platform_during(load, p, lambda: _start(home, port, queue_args))
        accepted = load.wait(120)
        _until(lambda: accepted <= set(_lines(out)), 120, "every accepted message processed")
        _report(f"platform SIGKILL, trigger messages, {'redis' if queue_args else 'embedded'}", accepted,
                set(_lines(out)), _lines(out), load.refused)  # fmt: skip
    finally:
        p.stop()


class Receiver:
    """The callback receiver: every X-Call-Id it was sent, duplicates included; each answer takes ``delay_s`` (a
    receiver doing some work: callbacks are in flight when the platform dies)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                time.sleep(delay_s)
                receiver.calls.append(self.headers.get("x-call-id", ""))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_redis_sigkilled_during_async_calls_with_callbacks(
    durable_redis: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = durable_redis()
    url = f"redis://127.0.0.1:{durable_redis.port}/0"  # type: ignore[attr-defined]
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    receiver = Receiver()
    p = start_platform(tmp_path / "home", "--redis", url, env=ENV)
    try:
        out = _deploy(p, tmp_path, name)
        target = f"{p.url}/async-function/{name}"

        def send(client: httpx.Client) -> str | None:
            r = client.post(target, content=b"x", headers={"X-Callback-Url": receiver.url})
            return r.headers["x-call-id"] if r.status_code == 202 else None

        load = Load(send, TOTAL)
        _until(lambda: len(load.accepted) >= KILL_AT, 60, f"{KILL_AT} accepted")
        server.send_signal(signal.SIGKILL)
        server.wait(20)
        refused = load.refused
        _until(lambda: load.refused >= refused + 20, 60, "async calls refused while Redis is down")
        assert len(load.accepted) < load.total, "the load ended before Redis came back"
        durable_redis()
        accepted = load.wait(120)
        _until(lambda: accepted <= set(_lines(out)), 120, "every accepted call processed")
        _wait_done(p, accepted, 60)  # none stays running, none lost
        _wait_callbacks(p, accepted, receiver, 60)
        _report("Redis SIGKILL, async calls", accepted, set(_lines(out)), _lines(out), load.refused)
        _report_callbacks("Redis SIGKILL, callbacks", accepted, receiver.calls)
    finally:
        p.stop()
        receiver.server.shutdown()


def test_redis_dying_right_after_it_acknowledged_a_call_loses_neither_result_nor_callback(
    durable_redis: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The one moment a SIGKILL above hits only by chance: Redis executes the worker's acknowledgement of a finished
    call and dies before answering. The call must still end done, with its result, and its callback arrive."""
    durable_redis()
    cut = RedisCut(durable_redis.port, b"XACK")  # type: ignore[attr-defined]
    receiver = Receiver()
    p = start_platform(tmp_path / "home", "--redis", cut.url, env=ENV)
    try:
        name = f"cut-{uuid.uuid4().hex[:8]}"
        _deploy(p, tmp_path, name)
        cut.arm()
        r = httpx.post(f"{p.url}/async-function/{name}", content=b"x", headers={"X-Callback-Url": receiver.url})
        assert r.status_code == 202
        call_id = r.headers["x-call-id"]
        assert cut.tripped.wait(60), "the worker never acknowledged anything"
        _until(lambda: cut.refused >= 1, 30, "the platform to notice Redis is gone")
        cut.restore()
        _wait_done(p, {call_id}, 60)
        _until(lambda: call_id in receiver.calls, 60, "the callback")
    finally:
        p.stop()
        receiver.server.shutdown()
        cut.close()
