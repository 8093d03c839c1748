"""``STOKER_HOME`` on a full file system (a real small tmpfs, mounted for the test; needs root).

Found on main: async calls answered 500 (the docs promise 503 + Retry-After); deploy and secret create answered a
non-JSON 500 and left ``.tmp`` files; scale answered 500 but was applied in memory and not saved, so a restart
silently went back. Now: 503 with Retry-After for async calls, 507 with a JSON error naming the cause for state
changes, no partial files, nothing applied that was not saved, calls to running functions still served.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from pathlib import Path

import httpx
import pytest

from stoker import bundle
from stoker.atomicfile import is_temporary, write_atomic
from stoker.errors import StorageFull
from tests.disk_support import fill
from tests.platform_fixture import FUNCTIONS, Platform, start_platform, write_handler

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs for STOKER_HOME needs root"),
]


def _leftovers(home: Path) -> list[str]:
    return [str(p.relative_to(home)) for p in home.rglob("*") if is_temporary(p) or p.name.endswith(".tmp")]


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_leaves_nothing(small_disk: Path) -> None:
    path = small_disk / "state" / "function.json"
    write_atomic(path, b"old")
    filler = fill(small_disk)
    with pytest.raises(StorageFull, match="No space left on device") as info:
        write_atomic(path, b"new" * 100_000)
    assert info.value.status == 507 and str(path) in str(info.value)
    assert path.read_bytes() == b"old" and sorted(os.listdir(path.parent)) == ["function.json"]
    filler.unlink()
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new" and sorted(os.listdir(path.parent)) == ["function.json"]


def _deploy_body(name: str, folder: Path) -> dict[str, str]:
    return {"service": name, "source": base64.b64encode(bundle.pack(folder)).decode()}


def test_a_full_disk_refuses_changes_cleanly_and_keeps_serving(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "home"
    env = {"STOKER_POOL_SIZE": "0"}
    p: Platform = start_platform(home, env=env)
    filler: Path | None = None
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        state = home / "local" / "functions" / "openfaas-fn" / "hello.json"
        saved = state.read_bytes()
        filler = fill(small_disk)
        write_handler(tmp_path / "other", "def handle(event, context):\n    return 'x' * 100000\n")

        with p.client() as c:
            # Async calls: 503 + Retry-After, JSON naming the cause; nothing accepted that was not stored.
            r = httpx.post(f"{p.url}/async-function/hello", content=b"x" * 100_000)
            assert r.status_code == 503 and r.headers.get("retry-after"), r.text
            assert "full" in r.json()["error"], r.text

            r = c.post("/system/functions", json=_deploy_body("other", tmp_path / "other"), timeout=60)
            assert r.status_code == 507 and "No space left on device" in r.json()["error"], r.text
            assert c.get("/system/function/other").status_code == 404

            r = c.post("/system/secrets", json={"name": "token", "value": "v" * 100_000})
            assert r.status_code == 507 and "No space left on device" in r.json()["error"], r.text
            assert c.get("/system/secrets").json() == []

            r = c.post("/system/scale-function/hello", json={"replicas": 3})
            assert r.status_code == 507 and "No space left on device" in r.json()["error"], r.text
            assert c.get("/system/function/hello").json()["replicas"] == 1  # not applied either

            r = c.put("/system/functions", json=_deploy_body("hello", tmp_path / "other"), timeout=60)
            assert r.status_code == 507, r.text

        # What runs keeps serving (its log lines just miss the file).
        for _ in range(20):
            assert httpx.post(f"{p.url}/function/hello", content=b"full").text == "Hello, full!\n"
        assert state.read_bytes() == saved
        assert _leftovers(home) == []

        filler.unlink()
        filler = None
        with p.client() as c:
            assert c.post("/system/scale-function/hello", json={"replicas": 2}).status_code == 202
            assert c.post("/system/secrets", json={"name": "token", "value": "v"}).status_code == 201
        assert httpx.post(f"{p.url}/async-function/hello", content=b"later").status_code == 202
    finally:
        if filler is not None:
            with contextlib.suppress(OSError):
                filler.unlink()
        p.stop()
    assert json.loads(state.read_text())["replicas"] == 2
    p = start_platform(home, env=env)  # a restart brings back exactly what was saved
    try:
        with p.client() as c:
            status = c.get("/system/function/hello").json()
        assert status["replicas"] == 2 and status["image"] == "source:hello"
        assert httpx.post(f"{p.url}/function/hello", content=b"back").text == "Hello, back!\n"
    finally:
        p.stop()
