"""A platform on an engine without its base image: `stoker up --backend docker` says at start that it builds it,
how long that takes, then its progress; a `stoker deploy` that needs it meanwhile streams the same build's progress
to the terminal and then deploys (it used to wait two silent minutes, and build a second image at once).

The base image has a name of this run's own; its root filesystem is the shared one, tagged, so the build is the
real base step (the runtime and its dependencies) without debootstrap. The test holds the build lock at first, as a
build running elsewhere on the machine would, so the platform's start and the deploy both meet a running build."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from builder.base import ensure_base_image, rootfs_ref
from builder.baselock import WAITING, one_build
from tests.builder.base_support import link_runtime_deps
from tests.docker_support import docker_client
from tests.platform_fixture import FUNCTIONS, ROOT, start_platform
from tests.wait_support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def _has(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)


def test_up_and_deploy_show_the_base_image_build(tmp_path: Path) -> None:
    client = docker_client()
    shared = ensure_base_image(client, "stoker/runtime", out=lambda _: None)  # its root filesystem, reused
    base = f"stoker-test-{secrets.token_hex(4)}/runtime"
    client.images.get(rootfs_ref("stoker/runtime")).tag(*rootfs_ref(base).rsplit(":", 1))
    cache = tmp_path / "cache"
    link_runtime_deps(cache)
    env = {"STOKER_DOCKER_BASE_IMAGE": base, "STOKER_BUILD_CACHE": str(cache), "STOKER_POOL_SIZE": "1"}
    platform = None
    deploy_lines: list[str] = []
    try:
        with one_build(cache, lambda _: None) as say:  # another build runs: the platform and the deploy wait
            platform = start_platform(tmp_path / "home", "--backend", "docker", env=env)
            wait_until(lambda: _has(platform.output, WAITING), 60, "stoker up to say it waits for the build")
            cmd = [sys.executable, "-m", "stoker", "deploy", "--name", "based", "--handler", str(FUNCTIONS / "hello")]
            deploy = subprocess.Popen(
                cmd,
                env={**platform.env(), **env},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

            def pump() -> None:
                assert deploy.stdout is not None
                for line in deploy.stdout:
                    deploy_lines.append(line.rstrip("\n"))

            pumping = threading.Thread(target=pump, daemon=True)
            pumping.start()
            wait_until(lambda: _has(deploy_lines, WAITING), 60, "the deploy to say it waits for the build")
            say("a line of the other build")  # relayed to both while they wait
            wait_until(lambda: _has(deploy_lines, "a line of the other build"), 30, "the deploy to relay the build")
            wait_until(lambda: _has(platform.output, "a line of the other build"), 30, "stoker up to relay the build")
        # Released: one of them builds, the other shows its progress; then the deploy goes on.
        assert deploy.wait(300) == 0, "\n".join(deploy_lines)
        pumping.join(10)
        for lines in (platform.output, deploy_lines):
            text = "\n".join(lines)
            assert f"building the base image {base} (once per runtime version; under a minute)" in text, text
            assert "Step 2/" in text and "built the base image" in text, text
        assert all(line.startswith("based: ") for line in deploy_lines[:-1]), deploy_lines  # named, on stderr
        assert deploy_lines[-1].startswith("Deployed based"), deploy_lines
        with httpx.Client(base_url=platform.url, timeout=60) as http:
            assert http.post("/function/based", content=b"base").text == "Hello, base!\n"
        built = [tag for image in client.images.list(name=base) for tag in image.tags]
        assert len([tag for tag in built if ":py311-" in tag]) == 1, built  # one image, not one per builder
        assert shared.ref not in built
    finally:
        if platform is not None:
            platform.stop(timeout=120)
        # By tag: the image may be the shared one under another name (the engine's build cache), which stays.
        for image in client.images.list(name=base) + client.images.list(name=f"{base}-rootfs"):
            for tag in image.tags:
                if tag.startswith(f"{base}"):
                    with contextlib.suppress(Exception):
                        client.images.remove(tag)
        client.close()
