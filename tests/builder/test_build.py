"""Function images built through the real Docker Engine: layers, content tags, failures that leave nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from builder.base import ensure_base_image
from builder.function import build_function
from builder.pip import BuildFailed
from stoker import bundle
from tests.docker_support import docker_client
from tests.platform_fixture import ROOT, write_handler

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def base(client: Any) -> str:
    return ensure_base_image(client, out=lambda _: None).ref


def test_unchanged_source_is_not_rebuilt_and_a_code_change_gets_a_new_tag(
    client: Any, base: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex  # content tags are global: new content for every run
    folder = write_handler(tmp_path / "fn", f"# {token}\ndef handle(event, context):\n    return 'v1'\n")
    first = build_function(client, "build-test", bundle.pack(folder), base, nocache=True)
    again = build_function(client, "build-test", bundle.pack(folder), base)
    assert first.built and not again.built and again.ref == first.ref
    write_handler(folder, f"# {token}\ndef handle(event, context):\n    return 'v2'\n")
    changed = build_function(client, "build-test", bundle.pack(folder), base)
    assert changed.built and changed.ref != first.ref
    out = client.containers.run(changed.ref, ["python3", "-c", "import handler; print(handler.handle(None, None))"],
                                remove=True, working_dir="/home/app/function")  # fmt: skip
    assert out.decode().strip() == "v2"
    image = client.images.get(changed.ref)
    assert image.attrs["Config"]["User"] not in ("", "root", "0")
    assert image.labels["com.stoker.function"] == "build-test"


def test_an_unresolvable_requirement_fails_at_its_step_with_the_log_tail(
    client: Any, base: str, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "fn", "def handle(event, context):\n    return 'x'\n")
    (folder / "requirements.txt").write_text("stoker-no-such-package-3f9a1c==1.0\n")
    before = {t for i in client.images.list("stoker-fn/bad-reqs") for t in i.tags}
    with pytest.raises(BuildFailed) as err:
        build_function(client, "bad-reqs", bundle.pack(folder), base)
    assert err.value.step == "install requirements.txt"
    assert "stoker-no-such-package-3f9a1c" in str(err.value)  # pip's own words, in the tail
    assert {t for i in client.images.list("stoker-fn/bad-reqs") for t in i.tags} == before


def test_stoker_build_streams_progress_and_reports_each_function(client: Any, tmp_path: Path) -> None:
    write_handler(tmp_path / "one", f"# {uuid.uuid4().hex}\ndef handle(event, context):\n    return 'one'\n")
    (tmp_path / "stack.yml").write_text(
        "version: 1.0\nprovider:\n  name: stoker\nfunctions:\n  one:\n    lang: python3-http\n    handler: ./one\n"
        "  img:\n    image: stoker/runtime:latest\n"
    )
    run = [sys.executable, "-m", "stoker", "build", "-f", str(tmp_path / "stack.yml")]
    first = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "Step 1/" in first.stdout and "one: stoker-fn/one:" in first.stdout
    assert "img: runs image stoker/runtime:latest; nothing to build" in first.stdout
    second = subprocess.run([*run, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    results = {r["name"]: r for r in json.loads(second.stdout)}
    assert results["one"]["built"] is False  # no-op rebuild


def test_a_missing_engine_is_one_clear_error(tmp_path: Path) -> None:
    write_handler(tmp_path / "one", "def handle(event, context):\n    return 'one'\n")
    (tmp_path / "stack.yml").write_text("provider:\n  name: stoker\nfunctions:\n  one:\n    handler: ./one\n")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "build", "-f", str(tmp_path / "stack.yml")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "cannot reach the Docker Engine" in proc.stderr


def test_the_base_image_holds_the_replica_side_only(client: Any, base: str) -> None:
    """runtime/replica, runtime/contract.py and the SDK shim are in the image; the orchestrator side
    (runtime/backends) and the command line (stoker/cli) are not, and the replica imports without them."""
    probe = (
        "import os, runtime.replica.server, runtime.contract, stoker.sdk.shim; lib = '/opt/stoker/lib'; "
        "print(*(os.path.exists(os.path.join(lib, p)) for p in "
        "('runtime/replica/server.py', 'runtime/contract.py', 'runtime/backends', 'stoker/cli')))"
    )
    out = client.containers.run(base, ["python3", "-c", probe], remove=True, network_disabled=True)
    assert out.decode().split() == ["True", "True", "False", "False"]
