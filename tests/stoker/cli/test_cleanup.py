"""``stoker down`` and ``stoker purge`` (issue 14, item 9) against real platforms: each removes what its own
platform left and nothing of another platform, which keeps answering; ``down`` keeps state (the next ``stoker up``
serves the same functions), ``purge`` removes the home too and refuses to run unasked without a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.containers import OWNER, owner_id
from tests.docker_support import docker_client
from tests.platform_fixture import FUNCTIONS, ROOT, Platform, start_platform


def _stoker(home: Path, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOKER_HOME": str(home)}
    env.pop("STOKER_GATEWAY", None)
    return subprocess.run(
        [sys.executable, "-m", "stoker", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=180,
        stdin=stdin,
    )  # fmt: skip


def _answers(p: Platform, name: str = "hello") -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.post(f"{p.url}/function/{name}", content=b"x", timeout=30)
        if r.status_code == 200:
            return r.text == "Hello, x!\n"
        time.sleep(0.1)
    return False


@pytest.fixture
def two_local(tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    a = start_platform(tmp_path / "a")
    b = start_platform(tmp_path / "b")
    try:
        for p in (a, b):
            assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
            assert _answers(p)
        yield a, b
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop()


def test_down_stops_its_platform_keeps_its_state_and_leaves_another_platform_alone(
    two_local: tuple[Platform, Platform],
) -> None:
    a, b = two_local
    done = _stoker(a.home, "down")
    assert done.returncode == 0, done.stderr
    assert f"stopped the platform (pid {a.proc.pid})" in done.stdout and "state kept" in done.stdout
    assert a.proc.wait(10) == 0  # a clean stop, its replicas with it
    assert not (a.home / "gateway.json").exists() and not (a.home / "local" / "sockets").exists()
    assert _answers(b)  # the other platform was not touched
    again = start_platform(a.home)  # state kept: the same function, without a deploy
    try:
        assert _answers(again)
    finally:
        again.stop()
    assert _answers(b)


def test_purge_refuses_unasked_without_a_terminal_then_removes_everything_with_yes(
    two_local: tuple[Platform, Platform],
) -> None:
    a, b = two_local
    refused = _stoker(a.home, "purge")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert a.proc.poll() is None and _answers(a)  # nothing happened
    no = subprocess.run(
        [sys.executable, "-m", "stoker", "purge"], input="no\n", capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "STOKER_HOME": str(a.home)}, timeout=60,
    )  # fmt: skip
    assert no.returncode == 2  # a pipe is no terminal either: --yes is the only way unattended
    purged = _stoker(a.home, "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert not a.home.exists() and a.proc.wait(10) == 0
    assert _answers(b) and b.home.is_dir()


def test_purge_never_removes_a_folder_that_is_not_a_platforms_state(tmp_path: Path) -> None:
    precious = tmp_path / "not-a-platform"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    refused = _stoker(precious, "purge", "--yes")
    assert refused.returncode == 2 and "does not look like a platform's state" in refused.stderr
    assert (precious / "thesis.tex").read_text() == "years of work"


# --- Docker: what a platform that was killed leaves on the engine ---------------------------------------------------


@pytest.fixture
def engine() -> Iterator[Any]:
    client = docker_client()  # skips without an engine (fails with STOKER_TEST_DOCKER=1, as in CI)
    yield client
    client.close()


def _owned(engine: Any, home: Path) -> tuple[list[str], list[str]]:
    label = {"label": f"{OWNER}={owner_id(home)}"}
    containers = [c.name for c in engine.containers.list(all=True, filters=label)]
    volumes = [v.name for v in engine.volumes.list(filters=label)]
    return containers, volumes


@pytest.mark.slow
def test_down_on_docker_removes_what_a_killed_platform_left_and_nothing_of_another(engine: Any, tmp_path: Path) -> None:
    a = start_platform(tmp_path / "a", "--backend", "docker", env={"STOKER_POOL_SIZE": "1"})
    b = start_platform(tmp_path / "b", "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    try:
        for p in (a, b):
            assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
            assert _answers(p)
        a.stop(signal.SIGKILL)  # a crash: its containers, pool container and volumes stay behind
        left_containers, left_volumes = _owned(engine, a.home)
        assert left_containers and left_volumes
        b_before = _owned(engine, b.home)
        done = _stoker(a.home, "down")  # the backend is the one a's last `stoker up` used
        assert done.returncode == 0, done.stderr
        assert _owned(engine, a.home) == ([], [])
        for name in left_containers:
            assert f"removed container {name}" in done.stdout
        assert _owned(engine, b.home) == b_before and _answers(b)
        assert (a.home / "docker" / "functions").is_dir()  # state kept
    finally:
        b.stop(timeout=120)
        _stoker(a.home, "down")


@pytest.mark.slow
def test_purge_on_docker_removes_the_images_it_built_and_its_home(engine: Any, tmp_path: Path) -> None:
    folder = tmp_path / "needs"
    folder.mkdir()
    (folder / "handler.py").write_text("import six\n\ndef handle(event, context):\n    return six.__version__\n")
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    a = start_platform(tmp_path / "a", "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    try:
        assert a.deploy("needs", folder).status_code == 202
        with a.client() as c:
            image = c.get("/system/function/needs").json()["image"]
        assert engine.images.get(image).labels.get("com.stoker.function") == "needs"
        purged = _stoker(a.home, "purge", "--yes")
        assert purged.returncode == 0, purged.stderr
        assert f"removed image {image}" in purged.stdout and not a.home.exists()
        assert not engine.images.list(name=image.rsplit(":", 1)[0], filters={"label": "com.stoker.function=needs"})
    finally:
        if a.proc.poll() is None:
            a.stop(timeout=120)
