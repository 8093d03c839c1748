"""The local backend installs a function's requirements.txt: once per requirement set, shared by the functions that
pin the same set, and a set that cannot be installed refuses the deploy with 422 and the installer's own words."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = pytest.mark.slow

HANDLER = "import humanize\n\ndef handle(event, context):\n    return humanize.naturalsize(int(event.text))\n"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("deps-home"), env={"STOKER_POOL_SIZE": "1"})
    yield p
    p.stop()


def _installed_sets(platform: Platform) -> list[Path]:
    deps = platform.home / "local" / "deps"
    return sorted(p for p in deps.iterdir() if p.is_dir()) if deps.is_dir() else []


def test_requirements_are_installed_and_shared(platform: Platform, tmp_path: Path) -> None:
    for name in ("size-a", "size-b"):
        folder = write_handler(tmp_path / name, HANDLER)
        (folder / "requirements.txt").write_text("# the same set, written differently\nhumanize==4.9.0  \n\n")
    started = time.monotonic()
    r = platform.deploy("size-a", tmp_path / "size-a")
    first = time.monotonic() - started
    assert r.status_code == 202, r.text
    with platform.client() as c:
        assert c.post("/function/size-a", content=b"3000000").text == "3.0 MB"
    started = time.monotonic()
    assert platform.deploy("size-b", tmp_path / "size-b").status_code == 202
    second = time.monotonic() - started
    with platform.client() as c:
        assert c.post("/function/size-b", content=b"2000").text == "2.0 kB"
        # scaled up (the warm pool's generic processes lack the packages: these start with them)
        assert c.post("/system/scale-function/size-b", json={"serviceName": "size-b", "replicas": 3}).status_code == 202
        deadline = time.monotonic() + 60
        while c.get("/system/function/size-b").json()["availableReplicas"] < 3:
            assert time.monotonic() < deadline, "scale-up to 3 did not happen"
            time.sleep(0.1)
        assert {c.post("/function/size-b", content=b"1").text for _ in range(12)} == {"1 Byte"}
    assert len(_installed_sets(platform)) == 1
    print(f"first install {first:.2f}s, same set again {second:.2f}s")


def test_a_requirement_that_cannot_be_installed_is_a_422_with_the_installer_message(
    platform: Platform, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "broken", "def handle(event, context):\n    return 'x'\n")
    (folder / "requirements.txt").write_text("stoker-no-such-package-5e1f==1.0\n")
    before = _installed_sets(platform)
    r = platform.deploy("broken", folder)
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    assert "requirements.txt could not be installed" in message and "stoker-no-such-package-5e1f" in message
    with platform.client() as c:
        assert c.get("/system/function/broken").status_code == 404
        assert c.get("/healthz").status_code == 200
    assert _installed_sets(platform) == before  # nothing half-installed stays
