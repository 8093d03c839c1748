"""Timer and stream triggers through a real ``stoker up`` on the test redis-server: invalid schedules are refused at
deploy, a cron function is invoked on its schedule, ``stoker trigger create`` subscribes a function to a stream."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stoker import bundle
from tests.platform_fixture import FUNCTIONS, Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

RECORDER = """
import json, os
def handle(event, context):
    seen = {k: v for k, v in event.headers.items() if k.startswith("x-stoker-")}
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"headers": seen, "body": event.body.decode()}) + "\\n")
    return "ok"
"""


@pytest.fixture(scope="module")
def redis_url() -> str:
    return shared_redis_url()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), "--redis", redis_url)
    yield p
    p.stop()


@pytest.mark.parametrize(
    ("annotations", "needle"),
    [
        ({"topic": "cron-function", "schedule": "every five minutes"}, "schedule: 'every five minutes'"),
        ({"topic": "cron-function", "schedule": "61 * * * *"}, "out of range"),
        ({"topic": "cron-function"}, "schedule: missing"),
        ({"com.stoker.schedule": "*/0 * * * *"}, "com.stoker.schedule: '*/0 * * * *' is not a cron expression"),
        ({"topic": "cron-function", "schedule": "0 0 31 2 *"}, "schedule: '0 0 31 2 *' never fires"),
    ],
)
def test_an_invalid_schedule_is_refused_at_deploy(platform: Platform, annotations: dict[str, str], needle: str) -> None:
    name = f"badcron{uuid.uuid4().hex[:6]}"
    r = platform.deploy(name, FUNCTIONS / "hello", annotations=annotations)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]
    with platform.client() as c:
        assert c.get(f"/system/function/{name}").status_code == 404  # nothing was deployed
        # Updates are checked too: a valid function cannot be given a bad schedule.
        assert platform.deploy(name, FUNCTIONS / "hello").status_code == 202
        source = base64.b64encode(bundle.pack(FUNCTIONS / "hello")).decode()
        r = c.put("/system/functions", json={"service": name, "source": source, "annotations": annotations})
        assert r.status_code == 400 and needle in r.json()["error"]
        assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202


def test_a_valid_schedule_is_accepted(platform: Platform) -> None:
    name = f"goodcron{uuid.uuid4().hex[:6]}"
    r = platform.deploy(name, FUNCTIONS / "hello", annotations={"topic": "cron-function", "schedule": "0 3 * * 1"})
    assert r.status_code == 202, r.text
    with platform.client() as c:
        assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _deploy_recorder(p: Platform, tmp: Path, name: str, **extra: Any) -> Path:
    out = tmp / f"{name}.jsonl"
    r = p.deploy(name, write_handler(tmp / name, RECORDER), envVars={"OUT": str(out)}, **extra)
    assert r.status_code == 202, r.text
    return out


def _delete(p: Platform, name: str) -> None:
    with p.client() as c:
        assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202


def test_a_cron_function_is_invoked_on_its_schedule(platform: Platform, tmp_path: Path) -> None:
    # Six fields, seconds last (croniter): every 2 seconds, so the test sees several ticks in a few seconds.
    name = f"cron{uuid.uuid4().hex[:6]}"
    cron = {"topic": "cron-function", "schedule": "* * * * * */2"}
    out = _deploy_recorder(platform, tmp_path, name, annotations=cron)
    try:
        wait_until(lambda: len(_records(out)) >= 3, 45, "three cron invocations", poll_s=0.1)
    finally:
        _delete(platform, name)
    ticks = [int(r["headers"]["x-stoker-tick"]) for r in _records(out)]
    assert all(r["headers"]["x-stoker-schedule"] == "* * * * * */2" for r in _records(out))
    assert all(t % 2 == 0 for t in ticks) and len(set(ticks)) == len(ticks)  # each tick once
    assert max(ticks) <= time.time() + 1


def test_stoker_trigger_create_subscribes_a_function_to_a_redis_stream(
    platform: Platform, redis_url: str, tmp_path: Path
) -> None:
    name = f"orders{uuid.uuid4().hex[:6]}"
    stream = f"orders-{uuid.uuid4().hex[:6]}"
    out = _deploy_recorder(platform, tmp_path, name)
    cli = [sys.executable, "-m", "stoker", "trigger"]
    created = subprocess.run([*cli, "create", name, stream], capture_output=True, env=platform.env(), timeout=60)
    assert created.returncode == 0, created.stderr
    listed = subprocess.run([*cli, "ls"], capture_output=True, env=platform.env(), timeout=60)
    assert listed.returncode == 0 and stream.encode() in listed.stdout, listed
    client = redis.Redis.from_url(redis_url)
    try:
        # The trigger reads every message added once `stoker trigger create` has answered: no waiting for a worker.
        msg_id = client.xadd(stream, {"body": b'{"order": 7}'}).decode()
        wait_until(lambda: len(_records(out)) >= 1, 45, "the stream message's invocation", poll_s=0.1)
    finally:
        client.close()
        subprocess.run([*cli, "rm", name, stream], capture_output=True, env=platform.env(), timeout=60)
        _delete(platform, name)
    (record,) = _records(out)
    assert record["headers"]["x-stoker-stream"] == stream
    assert record["headers"]["x-stoker-message-id"] == msg_id
    assert record["body"] == '{"order": 7}'


def test_a_trigger_created_through_one_gateway_is_live_for_another(tmp_path: Path) -> None:
    """Several gateways on one Redis, each running the function: a trigger is created through gateway a, which dies
    (SIGKILL) right after it answered and messages were published; gateway b processes every one of them, from the
    consumer group a made before answering (b's worker takes the trigger up only at its next look)."""
    name, stream = f"multi{uuid.uuid4().hex[:6]}", f"shared-{uuid.uuid4().hex[:6]}"
    url = shared_redis_url()
    a = start_platform(tmp_path / "a", "--redis", url)
    b = start_platform(tmp_path / "b", "--redis", url)
    try:
        _deploy_recorder(b, tmp_path, name)
        out = _deploy_recorder(a, tmp_path, name)
        with a.client() as c:
            assert c.post("/system/triggers", json={"function": name, "stream": stream}).status_code == 201
        client = redis.Redis.from_url(url)
        pipe = client.pipeline()
        for i in range(200):
            pipe.xadd(stream, {"body": str(i).encode()})
        sent = {i.decode() for i in pipe.execute()}
        a.stop(signal.SIGKILL)
        wait_until(
            lambda: {r["headers"]["x-stoker-message-id"] for r in _records(out)} >= sent,
            60,
            "every message",
            poll_s=0.1,
        )
        client.close()
        with b.client() as c:
            assert c.request("DELETE", "/system/triggers", json={"function": name, "stream": stream}).status_code == 200
    finally:
        a.stop(signal.SIGKILL)
        b.stop()
