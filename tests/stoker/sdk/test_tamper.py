"""A tampered bundle is refused before anything of it is unpickled: the evil pickle would create a marker file."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest

from runtime import codesign
from stoker import bundle
from stoker.sdk import App
from stoker.sdk.packaging import build_bundle
from tests.platform_fixture import ROOT, Platform


class _Evil:
    """Unpickling this creates ``path``: proof that the pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.path), "w")


def _tampered(data: bytes, marker: Path) -> bytes:
    """The same bundle with function.pkl swapped for the evil pickle (same names, same manifest)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src:
            content = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "function.pkl":
                content = pickle.dumps(_Evil(marker))
                member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return out.getvalue()


def test_replica_refuses_a_bundle_changed_after_signing(tmp_path: Path) -> None:
    """The runtime's own check, with no backend in between: sign, swap the pickle, start ``python -m runtime``."""
    marker = tmp_path / "pwned"
    platform_key = os.urandom(32)
    good = build_bundle(lambda: "fine", "victim", [], "token")
    code = bundle.unpack(good, tmp_path / "code")
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(good)
    env = codesign.replica_env(platform_key, "openfaas-fn", "victim", path, bundle.sign(platform_key, good))
    path.write_bytes(_tampered(good, marker))  # after the backend signed it: only the replica can notice
    (code / "function.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    proc = subprocess.run(
        [sys.executable, "-m", "runtime"],
        env={**os.environ, **env, "STOKER_FUNCTION_DIR": str(code), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert "does not match its signature" in proc.stderr
    assert not marker.exists()


def test_replica_without_signature_refuses_to_unpickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = bundle.unpack(_tampered(build_bundle(lambda: 1, "v", [], "t"), marker), tmp_path / "code")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STOKER_BUNDLE")}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime"],
        env={**clean, "STOKER_FUNCTION_DIR": str(code), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3 and "no signed bundle" in proc.stderr
    assert not marker.exists()


@pytest.mark.slow
def test_platform_refuses_a_tampered_bundle_on_disk(sdk_platform: Platform, tmp_path: Path) -> None:
    """Deploy, tamper with the stored bundle and its extracted code, kill the replica: the restart must refuse."""
    marker = tmp_path / "pwned"
    app = App("tamper")

    @app.function
    def victim() -> int:
        return os.getpid()

    app.deploy()
    pid = victim.remote()
    state = json.loads((sdk_platform.home / "local" / "functions" / "openfaas-fn" / "tamper-victim.json").read_text())
    stored = sdk_platform.home / "local" / "bundles" / f"{state['digest']}.tar.gz"
    stored.write_bytes(_tampered(stored.read_bytes(), marker))
    (sdk_platform.home / "local" / "code" / state["digest"] / "function.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    os.kill(pid, signal.SIGKILL)

    deadline = time.monotonic() + 60
    refusals = 0
    while time.monotonic() < deadline:
        with sdk_platform.client() as c:
            r = c.get("/system/logs", params={"name": "tamper-victim", "tail": "200"})
        refusals = r.text.count("does not match its signature")
        if refusals >= 2:  # refused, restarted by the backend, refused again
            break
        time.sleep(0.2)
    assert refusals >= 2, r.text[-3000:]
    assert not marker.exists()
    with sdk_platform.client() as c:
        assert c.get("/system/function/tamper-victim").json()["availableReplicas"] == 0
    assert httpx.get(f"{sdk_platform.url}/healthz").status_code == 200  # the gateway stays up
    app.remove()
