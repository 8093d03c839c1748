"""Code bundles built to cost time: many tiny files. The member count is capped (413), and checking and unpacking
happen off the gateway's event loop, so calls to other functions go on during such a deploy."""

from __future__ import annotations

import base64
import io
import tarfile
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from stoker import bundle
from stoker.errors import PayloadTooLarge
from tests.platform_fixture import Platform, start_platform, write_handler

HELLO = "def handle(event, context):\n    return 'hello'\n"


def many_files(count: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("handler.py")
        info.size = len(HELLO)
        tar.addfile(info, io.BytesIO(HELLO.encode()))
        for i in range(count):
            tar.addfile(tarfile.TarInfo(f"data/{i:06d}"), io.BytesIO(b""))
    return buf.getvalue()


def deploy(p: Platform, name: str, data: bytes) -> httpx.Response:
    body = {"service": name, "source": base64.b64encode(data).decode()}
    with p.client() as c:
        return c.post("/system/functions", json=body, timeout=120)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_MAX_BUNDLE_FILES": "12001"}
    p = start_platform(tmp_path_factory.mktemp("home"), env=env)
    assert p.deploy("hello", write_handler(tmp_path_factory.mktemp("fn") / "hello", HELLO)).status_code == 202
    yield p
    p.stop()


def test_the_member_count_is_capped() -> None:
    data = many_files(100)
    assert "handler.py" in bundle.check(data, max_files=101)
    with pytest.raises(PayloadTooLarge, match="more than 100 files"):
        bundle.check(data, max_files=100)


def test_a_bundle_over_the_file_cap_is_refused_413_at_once(gw: Platform) -> None:
    data = many_files(12_001)  # and handler.py: one member too many
    started = time.monotonic()
    r = deploy(gw, "toomany", data)
    assert r.status_code == 413
    assert "more than 12001 files" in r.json()["error"]
    assert time.monotonic() - started < 10
    with gw.client() as c:
        assert c.get("/system/function/toomany").status_code == 404


def test_calls_to_other_functions_go_on_during_a_deploy_of_many_files(gw: Platform) -> None:
    latencies: list[float] = []
    done = threading.Event()

    def caller() -> None:
        with httpx.Client(base_url=gw.url, timeout=60) as client:
            while not done.is_set():
                t = time.perf_counter()
                assert client.get("/function/hello").status_code == 200
                latencies.append(time.perf_counter() - t)

    data = many_files(8_000)
    thread = threading.Thread(target=caller)
    thread.start()
    try:
        r = deploy(gw, "many", data)
    finally:
        done.set()
        thread.join()
    assert r.status_code == 202, r.text
    assert httpx.get(f"{gw.url}/function/many", timeout=30).text == "hello"
    assert len(latencies) > 20
    # Checked and unpacked in the event loop, this bundle stalled every call for seconds.
    assert max(latencies) < 1.0, f"a call waited {max(latencies):.1f}s during the deploy"
