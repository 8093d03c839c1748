"""Round trips through a real platform: closures, classes, generators, large payloads, exceptions, JSON callers."""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass

import httpx
import msgpack
import pytest

from stoker import App
from stoker.sdk import CallFailed, RemoteError
from tests.platform_fixture import Platform

SCALE = 10  # a module-level global the remote function reads: it travels with the function


def _double(x: int) -> int:  # a module-level helper the remote function calls
    return 2 * x


@dataclass
class Point:
    x: int
    y: int

    def norm2(self) -> int:
        return self.x * self.x + self.y * self.y


class Oops(Exception):
    """A user-defined exception: the caller must get this very type back."""


class Unpicklable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()  # cloudpickle cannot carry a lock


def make_app() -> App:
    app = App("rt")
    offset = 7  # a closure cell

    @app.function
    def compute(x: int, y: int = 1) -> int:
        helper = lambda v: v + offset  # noqa: E731 - a lambda inside the function
        return helper(_double(x) * SCALE + y)

    @app.function
    def move(p: Point, dx: int) -> tuple[Point, int]:
        moved = Point(p.x + dx, p.y)
        return moved, moved.norm2()

    @app.function
    def squares(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield i * i

    @app.function
    def reverse(data: bytes) -> bytes:
        return data[::-1]

    @app.function
    def fail(kind: str) -> None:
        if kind == "oops":
            raise Oops("it went wrong")
        if kind == "value":
            raise ValueError("bad value 42")
        raise Unpicklable("holds a lock")

    return app


@pytest.fixture(scope="module")
def app(sdk_platform: Platform) -> App:
    app = make_app()
    assert app.deploy() == ["rt-compute", "rt-move", "rt-squares", "rt-reverse", "rt-fail"]
    return app


def test_closure_lambda_helper_and_global(app: App) -> None:
    compute = app.functions["rt-compute"]
    assert compute.remote(3, y=2) == (2 * 3 * SCALE + 2) + 7
    assert compute(3, y=2) == compute.remote(3, y=2)  # calling it plainly runs it here, same answer


def test_class_instances_and_tuples(app: App) -> None:
    moved, norm = app.functions["rt-move"].remote(Point(3, 4), dx=1)
    assert moved == Point(4, 4) and isinstance(moved, Point)
    assert norm == 32


def test_generator_results(app: App) -> None:
    result = app.functions["rt-squares"].remote(6)
    assert inspect.isgenerator(result)
    assert list(result) == [0, 1, 4, 9, 16, 25]


@pytest.mark.slow
def test_ten_megabytes_each_way(app: App) -> None:
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    assert app.functions["rt-reverse"].remote(data) == data[::-1]


def test_user_exception_comes_back_with_type_message_and_remote_traceback(app: App) -> None:
    with pytest.raises(Oops, match="it went wrong") as info:
        app.functions["rt-fail"].remote("oops")
    remote_tb = str(info.value.__cause__)
    # The function's file name and source travel with it (stoker/sdk/packaging.py), so the remote traceback shows
    # this file, the line and its text (tests/platform/test_tracebacks.py checks them on both backends).
    assert "Remote traceback" in remote_tb and "in fail" in remote_tb and "Oops: it went wrong" in remote_tb
    assert f'File "{__file__}"' in remote_tb
    assert info.value.remote_traceback in remote_tb  # type: ignore[attr-defined]


def test_builtin_exception(app: App) -> None:
    with pytest.raises(ValueError, match="bad value 42"):
        app.functions["rt-fail"].remote("value")


def test_exception_that_cannot_be_pickled_is_rebuilt_by_type_name(app: App) -> None:
    with pytest.raises(Unpicklable, match="holds a lock"):
        app.functions["rt-fail"].remote("lock")


def test_json_callers(app: App, sdk_platform: Platform) -> None:
    url = f"{sdk_platform.url}/function/rt-compute"
    r = httpx.post(url, json={"args": [3], "kwargs": {"y": 2}})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and r.json() == 69
    assert httpx.post(url, json=1).json() == 2 * SCALE + 1 + 7  # a bare JSON value is the single argument
    assert httpx.post(f"{sdk_platform.url}/function/rt-squares", json=3).json() == [0, 1, 4]
    r = httpx.post(f"{sdk_platform.url}/function/rt-fail", json="oops")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["type"].endswith(".Oops") and error["message"] == "it went wrong" and "Traceback" in error["traceback"]
    r = httpx.post(url, content=b"{not json")
    assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_pickled_arguments_need_the_deployers_token(app: App, sdk_platform: Platform) -> None:
    # A stranger's pickle would run code on unpickling: without the token the replica refuses it (403).
    evil = msgpack.packb({"args": [msgpack.ExtType(1, b"\x80\x05N.")], "kwargs": {}}, use_bin_type=True)
    r = httpx.post(
        f"{sdk_platform.url}/function/rt-move", content=evil, headers={"Content-Type": "application/msgpack"}
    )
    assert r.status_code == 403 and "token" in r.json()["error"]
    # A caller with credentials but a fresh App (no deploy of its own) gets the token from the gateway.
    fresh = make_app()
    moved, _ = fresh.functions["rt-move"].remote(Point(1, 1), 2)
    assert moved == Point(3, 1)


def test_undeployed_function(sdk_platform: Platform) -> None:
    app = App("nothere")

    @app.function
    def ghost() -> None: ...

    with pytest.raises(CallFailed, match="not deployed") as info:
        ghost.remote()
    assert info.value.status == 404


def test_spawn_then_get(app: App) -> None:
    call = app.functions["rt-compute"].spawn(1, y=0)
    assert call.get(timeout=60) == 2 * SCALE + 7
    assert call.done()


@pytest.mark.slow
def test_spawned_call_that_raises(app: App) -> None:
    # The queue retries a 500 (five attempts; backoff from 0.2 s here, conftest.py) before it keeps the failure as
    # the result.
    failing = app.functions["rt-fail"].spawn("oops")
    with pytest.raises(Oops, match="it went wrong"):
        failing.get(timeout=120)


def test_remote_error_when_type_is_unknown() -> None:
    from stoker.sdk.errors import rebuild

    exc = rebuild({"type": "nowhere.Missing", "message": "m", "traceback": "tb", "pickle": None})
    assert isinstance(exc, RemoteError) and exc.type_name == "nowhere.Missing" and str(exc.__cause__).endswith("tb")


def test_the_shim_takes_the_bundle_key_out_of_the_functions_environment(sdk_platform: Platform) -> None:
    """docs/sdk.md: the shim removes the per-function key and the signature from os.environ before it unpickles the
    function, so neither the function's code nor what it starts can read them."""
    app = App("shimenv")

    @app.function
    def environment() -> tuple[list[str], str]:
        import os
        import subprocess
        import sys

        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(k for k in os.environ if k.startswith('STOKER_BUNDLE')))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sorted(k for k in os.environ if k.startswith("STOKER_BUNDLE")), child

    assert app.deploy() == ["shimenv-environment"]
    seen, child = app.functions["shimenv-environment"].remote()
    assert seen == ["STOKER_BUNDLE"]  # where the bundle is stays; the key and the signature are gone
    assert child == "['STOKER_BUNDLE']"
