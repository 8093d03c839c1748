"""One base-image build at a time: builders in threads of one process and in another process, started together on
an engine without the image, make one root filesystem and one image, and those that waited show the progress of the
build they waited for (the warm pool and a deploy used to run debootstrap at once: two images, a dangling rootfs).

A small real build (:mod:`tests.builder.base_support`: a tiny root filesystem through the same import and build);
the full debootstrap path runs the same code with debootstrap as the root maker."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from builder.base import BaseImage, ensure_base_image
from builder.baselock import WAITING
from tests.builder.base_support import TINY_ROOT_LINE, link_runtime_deps, tiny_root
from tests.docker_support import docker_client
from tests.platform_fixture import ROOT
from tests.wait_support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

THREADS = 3


def test_concurrent_builders_make_one_image_and_show_its_progress(tmp_path: Path) -> None:
    client = docker_client()
    base = f"stoker-test-{secrets.token_hex(4)}/runtime"  # images of this run only, removed at the end
    cache, go, made = tmp_path / "cache", tmp_path / "go", tmp_path / "made"
    link_runtime_deps(cache)
    outputs: list[list[str]] = [[] for _ in range(THREADS + 1)]  # the threads', then the other process's
    results: dict[int, BaseImage] = {}
    errors: list[BaseException] = []

    def build(i: int) -> None:
        try:
            results[i] = ensure_base_image(
                client, base, cache, source="debootstrap", out=outputs[i].append, make_root=tiny_root(go, made)
            )
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    cmd = [sys.executable, "-m", "tests.builder.base_support", base, str(cache), str(go), str(made)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            outputs[THREADS].append(line.rstrip("\n"))

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    threads = [threading.Thread(target=build, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    try:
        # The first builder holds the lock inside its root maker until `go`: every other one must find it taken.
        wait_until(lambda: sum(WAITING in out for out in outputs) == THREADS, 60, f"{THREADS} builders to wait")
        assert len(made.read_text().splitlines()) == 1, outputs  # only the holder got as far as its root maker
        go.touch()
        for t in threads:
            t.join(300)
        assert proc.wait(300) == 0, outputs[THREADS]
        pumping.join(10)
        assert not errors, errors

        assert len(made.read_text().splitlines()) == 1, "more than one root filesystem was made"  # re-checked
        assert not Path(made.read_text().strip()).exists(), "the root filesystem's folder was left behind"
        assert not list(cache.glob("base-image-*.log"))  # progress logs go with their build

        last = [line for line in outputs[THREADS] if line.startswith("RESULT ")][-1].split()
        refs = {r.ref for r in results.values()} | {last[1]}
        assert len(refs) == 1, refs
        assert [r.built for r in results.values()].count(True) + (last[2] == "True") == 1
        tags = {tag for image in client.images.list(name=base) for tag in image.tags}
        assert tags == {*refs, f"{base}:latest"}
        assert [image.tags for image in client.images.list(name=f"{base}-rootfs")] == [[f"{base}-rootfs:bookworm"]]

        # Those that waited showed the build they waited for: its steps, from the root filesystem to the image.
        for out in outputs:
            text = "\n".join(out)
            assert TINY_ROOT_LINE in text and f"importing the root filesystem as {base}-rootfs" in text, text
            assert "Step 2/" in text and "built the base image" in text, text
    finally:
        go.touch()  # a failed test: let every builder finish, so that what they make is removed below
        for t in threads:
            t.join(120)
        if proc.poll() is None:
            proc.kill()
        _remove_images(client, base)
        client.close()


def test_a_build_removes_the_root_filesystem_a_killed_build_left(tmp_path: Path) -> None:
    client = docker_client()
    base = f"stoker-test-{secrets.token_hex(4)}/runtime"
    cache, go, made = tmp_path / "cache", tmp_path / "go", tmp_path / "made"
    link_runtime_deps(cache)
    cmd = [sys.executable, "-m", "tests.builder.base_support", base, str(cache), str(go), str(made)]
    killed = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        wait_until(lambda: made.exists() and made.read_text().strip(), 60, "the build to start its root filesystem")
        left = Path(made.read_text().strip())
        killed.kill()  # mid-build, as `kill -9` or the OOM killer would: no cleanup runs
        killed.wait(30)
        assert left.is_dir()
        go.touch()
        image = ensure_base_image(
            client, base, cache, source="debootstrap", out=lambda _: None, make_root=tiny_root(go, made)
        )
        assert image.built
        assert not left.exists(), "the killed build's root filesystem is still there"
        assert len(made.read_text().splitlines()) == 2 and not Path(made.read_text().split()[1]).exists()
    finally:
        if killed.poll() is None:
            killed.kill()
        _remove_images(client, base)
        client.close()


def _remove_images(client: Any, base: str) -> None:
    """What a test's builds made: the base image and its root filesystem, every tag."""
    for name in (base, f"{base}-rootfs"):
        for image in client.images.list(name=name):
            for tag in image.tags:
                with contextlib.suppress(Exception):
                    client.images.remove(tag)
