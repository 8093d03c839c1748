"""Timer and stream triggers through a real ``stoker up`` on the test redis-server: invalid schedules are refused at
deploy, a cron function is invoked on its schedule, ``stoker trigger create`` subscribes a function to a stream."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from stoker import bundle
from tests.platform_fixture import FUNCTIONS, Platform, start_platform

pytestmark = pytest.mark.slow

RECORDER = """
import json, os
def handle(event, context):
    seen = {k: v for k, v in event.headers.items() if k.startswith("x-stoker-")}
    with open(os.environ["OUT"], "a") as f:
        f.write(json.dumps({"headers": seen, "body": event.body.decode()}) + "\\n")
    return "ok"
"""


def _redis_url() -> str:
    url = os.environ.get("STOKER_TEST_REDIS_URL", "")
    if not url:
        pytest.skip("STOKER_TEST_REDIS_URL is not set (scripts/test starts a redis-server and sets it)")
    return url


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), "--redis", _redis_url())
    yield p
    p.stop()


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("annotations", "needle"),
    [
        ({"topic": "cron-function", "schedule": "every five minutes"}, "schedule: 'every five minutes'"),
        ({"topic": "cron-function", "schedule": "61 * * * *"}, "out of range"),
        ({"topic": "cron-function"}, "schedule: missing"),
        ({"com.stoker.schedule": "*/0 * * * *"}, "com.stoker.schedule: '*/0 * * * *' is not a cron expression"),
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
