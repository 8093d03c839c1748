"""The issue's acceptance tests, against a real redis-server and against the embedded queue: nothing accepted is
lost across SIGKILL, poison messages end as dead letters and replay, a Redis outage gives 503, never a false 202."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

RECORDER = """
import os, time
def handle(event, context):
    time.sleep(float(os.environ.get("DELAY", "0")))
    key = event.headers.get("x-stoker-message-id") or event.headers.get("x-call-id")
    if event.body == b"poison" and not os.path.exists(os.environ["HEAL"]):
        with open(os.environ["OUT"], "a") as f:
            f.write(key + "\\n")
        return {"statusCode": 500, "body": "poisoned"}
    with open(os.environ["OUT"], "a") as f:
        f.write(key + "\\n")
    return "healed" if event.body == b"poison" else "ok"
"""
FAST = {"STOKER_QUEUE_CLAIM_IDLE_S": "1", "STOKER_QUEUE_BACKOFF_S": "0.05", "STOKER_QUEUE_ATTEMPTS": "3"}


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "embedded":
        return []
    return ["--redis", shared_redis_url()]


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().split("\n") if line]  # a line cut by SIGKILL is only a prefix


def _deploy_recorder(p: Platform, tmp: Path, name: str, **extra: str) -> Path:
    out = tmp / "processed.txt"
    env = {"OUT": str(out), "HEAL": str(tmp / "healed"), **extra.pop("env", {})}  # type: ignore[dict-item]
    r = p.deploy(name, write_handler(tmp / "fn", RECORDER), envVars=env, **extra)
    assert r.status_code == 202, r.text
    return out


def test_2000_messages_published_right_after_the_deploy_survive_a_sigkill_halfway(
    backend: list[str], tmp_path: Path
) -> None:
    """A subscription is live from the deploy's answer: 2,000 messages published at once right after it (before the
    worker's first look at the function) are all processed, across a SIGKILL halfway and a restart."""
    home, name = tmp_path / "home", f"rec-{uuid.uuid4().hex[:8]}"
    stream = f"events-{name}"
    env = {**FAST, "STOKER_QUEUE_CONCURRENCY": "4"}
    p = start_platform(home, *backend, env=env)
    try:
        out = _deploy_recorder(
            p, tmp_path, name, env={"DELAY": "0.01"}, annotations={"com.stoker.queue.stream": stream}
        )
        if backend:  # Redis: producers XADD to the function's stream, all in one pipeline
            r = redis.Redis.from_url(backend[1])
            pipe = r.pipeline()
            for i in range(2000):
                pipe.xadd(stream, {"n": str(i)})
            sent = {i.decode() for i in pipe.execute()}
        else:  # embedded: nothing but the gateway can add to its streams
            with p.client() as c:
                sent = {c.post(f"/system/streams/{stream}", content=b"x").json()["id"] for _ in range(2000)}
        assert len(sent) == 2000
        wait_until(lambda: len(_lines(out)) >= 300, 60, "some messages processed")
        p.stop(signal.SIGKILL)
        at_kill = set(_lines(out))
        assert len(at_kill) < 2000, "the kill came too late to test anything"
    finally:
        p.stop(signal.SIGKILL)
    p = start_platform(home, *backend, env=env)
    try:
        wait_until(lambda: sent <= set(_lines(out)), 120, "every message processed after the restart")
        assert set(_lines(out)) == sent
    finally:
        p.stop()


def test_platform_killed_between_202_and_the_invocation(backend: list[str], tmp_path: Path) -> None:
    home, name = tmp_path / "home", f"slow-{uuid.uuid4().hex[:8]}"
    p = start_platform(home, *backend, env=FAST)
    try:
        out = _deploy_recorder(p, tmp_path, name, env={"DELAY": "1.5"})
        r = httpx.post(f"{p.url}/async-function/{name}", content=b"x")
        assert r.status_code == 202
        p.stop(signal.SIGKILL)
        assert _lines(out) == []
    finally:
        p.stop(signal.SIGKILL)
    p = start_platform(home, *backend, env=FAST)
    try:
        done = p.async_result(r.headers["x-call-id"])
        assert done.status_code == 200 and done.content == b"ok"
        assert r.headers["x-call-id"] in _lines(out)
    finally:
        p.stop()


def test_poison_message_is_dead_lettered_after_the_attempts_and_replay_reruns_it(
    backend: list[str], tmp_path: Path
) -> None:
    name = f"poison-{uuid.uuid4().hex[:8]}"
    p = start_platform(tmp_path / "home", *backend, env=FAST)
    try:
        out = _deploy_recorder(p, tmp_path, name)
        call_id = httpx.post(f"{p.url}/async-function/{name}", content=b"poison").headers["x-call-id"]
        with p.client() as c:
            wait_until(lambda: c.get(f"/system/queue/{name}/dead").json() != [], 60, "the dead letter")
            (dead,) = c.get(f"/system/queue/{name}/dead").json()
            assert dead["attempts"] == "3" and "poisoned" in dead["error"]
            assert _lines(out).count(call_id) == 3
            failed = p.async_result(call_id)
            assert failed.headers["x-function-status"] == "500"
            (tmp_path / "healed").touch()
            replay = subprocess.run(
                [sys.executable, "-m", "stoker", "queue", "replay", name], env=p.env(), capture_output=True, text=True
            )
            assert replay.returncode == 0, replay.stderr
            assert "Replayed 1" in replay.stdout
            wait_until(
                lambda: p.async_result(call_id, 1).headers.get("x-function-status") == "200", 60, "the replayed run"
            )
            assert p.async_result(call_id).content == b"healed"
            assert c.get(f"/system/queue/{name}/dead").json() == []
    finally:
        p.stop()


def test_redis_stopped_mid_run_gives_503_never_202_and_recovers(
    durable_redis: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    server = durable_redis()
    url = f"redis://127.0.0.1:{durable_redis.port}/0"  # type: ignore[attr-defined]
    name = f"rec-{uuid.uuid4().hex[:8]}"
    p = start_platform(tmp_path / "home", "--redis", url, env=FAST)
    try:
        _deploy_recorder(p, tmp_path, name)
        first = httpx.post(f"{p.url}/async-function/{name}", content=b"x")
        assert first.status_code == 202
        assert p.async_result(first.headers["x-call-id"]).status_code == 200
        server.terminate()
        server.wait(20)
        for _ in range(5):
            r = httpx.post(f"{p.url}/async-function/{name}", content=b"x", timeout=30)
            assert r.status_code == 503, r.text
            assert "x-call-id" not in r.headers
        health = httpx.get(f"{p.url}/healthz")  # the gateway answers, and says its queue is down
        assert health.status_code == 503 and "error" in health.json(), health.text
        durable_redis()

        def accepted() -> bool:
            return httpx.post(f"{p.url}/async-function/{name}", content=b"x", timeout=30).status_code == 202

        wait_until(accepted, 30, "async calls accepted again")
        wait_until(lambda: httpx.get(f"{p.url}/healthz").status_code == 200, 30, "healthy again")
        again = httpx.post(f"{p.url}/async-function/{name}", content=b"x")
        assert again.status_code == 202
        assert p.async_result(again.headers["x-call-id"]).status_code == 200
    finally:
        p.stop()
