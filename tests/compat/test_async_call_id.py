"""Async calls keep the caller's ``X-Call-Id``, as OpenFaaS does (issue 15, item 9), on both queues. The id keys the
stored result, so a caller's id that names a call the queue knows is refused (409) and that call's record stays as
it was: never overwritten, never shown to the second caller. An id that is not safe to keep (too long, characters
outside ``[A-Za-z0-9._-]``) gets a new one, as before."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import Platform, start_platform, write_handler
from tests.redis_support import shared_redis_url

HANDLER = """
def handle(event, context):
    return {"statusCode": 200, "body": {"callId": event.headers.get("x-call-id"), "body": event.text}}
"""


@pytest.fixture(scope="module", params=["embedded", "redis"])
def queued(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, str]]:
    args: list[str] = []
    if request.param == "redis":
        args = ["--redis", shared_redis_url()]
    p = start_platform(tmp_path_factory.mktemp("callid"), *args)
    name = f"callid-{uuid.uuid4().hex[:8]}"  # streams of a shared redis-server are not another test's
    folder = write_handler(tmp_path_factory.mktemp("fn") / name, HANDLER)
    assert p.deploy(name, Path(folder)).status_code == 202
    yield p, name
    p.stop()


def test_a_safe_caller_id_is_kept_end_to_end(queued: tuple[Platform, str]) -> None:
    p, name = queued
    mine = f"3f1c0a7e-{uuid.uuid4()}"
    r = httpx.post(f"{p.url}/async-function/{name}", content=b"first", headers={"X-Call-Id": mine}, timeout=30)
    assert r.status_code == 202 and r.headers["x-call-id"] == mine
    assert p.async_result(mine).json() == {"callId": mine, "body": "first"}


def test_a_reused_id_is_refused_and_the_first_result_stays(queued: tuple[Platform, str]) -> None:
    p, name = queued
    mine = f"order.{uuid.uuid4().hex}"
    first = httpx.post(f"{p.url}/async-function/{name}", content=b"first", headers={"X-Call-Id": mine}, timeout=30)
    assert first.status_code == 202
    again = httpx.post(f"{p.url}/async-function/{name}", content=b"second", headers={"X-Call-Id": mine}, timeout=30)
    assert again.status_code == 409 and mine in again.json()["error"]  # while queued or running
    assert p.async_result(mine).json() == {"callId": mine, "body": "first"}
    later = httpx.post(f"{p.url}/async-function/{name}", content=b"third", headers={"X-Call-Id": mine}, timeout=30)
    assert later.status_code == 409  # its result is kept: still in use
    assert p.async_result(mine).json() == {"callId": mine, "body": "first"}


@pytest.mark.parametrize("unsafe", ["../../etc", "a b", "x" * 129, "-leading-dash", "id;drop", "é"])
def test_an_unsafe_id_gets_a_new_one(queued: tuple[Platform, str], unsafe: str) -> None:
    p, name = queued
    headers = {"X-Call-Id": unsafe.encode()}
    r = httpx.post(f"{p.url}/async-function/{name}", content=b"x", headers=headers, timeout=30)
    assert r.status_code == 202
    fresh = r.headers["x-call-id"]
    assert fresh != unsafe and re.fullmatch(r"[0-9a-f]{32}", fresh)
    assert p.async_result(fresh).json()["callId"] == fresh
