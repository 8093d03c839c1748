"""Deploying SDK functions: ``stoker deploy app.py``, and the refusals a user must understand."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import httpx
import pytest

from stoker.sdk import App, DeployError
from stoker.sdk.packaging import build_bundle, python_version
from tests.platform_fixture import ROOT, Platform


def test_info_reports_the_runtime_python(sdk_platform: Platform) -> None:
    with sdk_platform.client() as c:
        assert c.get("/system/info").json()["python"] == python_version()


def test_cli_deploys_an_app_file_with_a_helper_module_beside_it(sdk_platform: Platform, tmp_path: Path) -> None:
    # helpers.py is not importable on the replica: it must travel by value with the function.
    (tmp_path / "helpers.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            from stoker import App
            import helpers

            app = App("cliapp")

            @app.function(timeout=10)
            def greet(name: str) -> str:
                return helpers.shout("hello " + name)

            if __name__ == "__main__":
                raise SystemExit("must not run on import")
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "deploy", str(tmp_path / "app.py")],
        capture_output=True,
        text=True,
        env={**sdk_platform.env(), "PYTHONPATH": str(ROOT)},  # stoker importable even when not pip-installed
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Deployed cliapp-greet (openfaas-fn) from app cliapp" in proc.stdout
    r = httpx.post(f"{sdk_platform.url}/function/cliapp-greet", json="ada", timeout=30)
    assert r.json() == "HELLO ADA!"
    with sdk_platform.client() as c:
        fn = c.get("/system/function/cliapp-greet").json()
    assert fn["annotations"]["com.stoker.timeout"] == "10s"


def test_cli_reports_a_file_without_an_app(sdk_platform: Platform, tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("x = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "deploy", str(tmp_path / "empty.py")],
        capture_output=True,
        text=True,
        env=sdk_platform.env(),
        timeout=60,
    )
    assert proc.returncode == 2 and "defines no stoker.App" in proc.stderr


def _with_manifest(data: bytes, **changes: object) -> bytes:
    """The bundle with manifest fields changed: what another Python, or another SDK, would have uploaded."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        for member in src:
            content = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                content = json.dumps({**json.loads(content), **changes}).encode()
                member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
    return out.getvalue()


def _deploy_raw(platform: Platform, name: str, data: bytes) -> httpx.Response:
    with platform.client() as c:
        return c.post(
            "/system/functions", json={"service": name, "source": base64.b64encode(data).decode()}, timeout=60
        )


def test_another_python_minor_version_is_refused_at_deploy(sdk_platform: Platform) -> None:
    data = _with_manifest(build_bundle(lambda: 1, "old-python", [], "t"), python="3.9.18")
    r = _deploy_raw(sdk_platform, "old-python", data)
    assert r.status_code == 422
    message = r.json()["error"]
    assert (
        "pickled with Python 3.9.18" in message
        and f"runs Python {sys.version_info[0]}.{sys.version_info[1]}" in message
    )
    with sdk_platform.client() as c:
        assert c.get("/system/function/old-python").status_code == 404  # nothing of it stays


def test_a_requirement_that_cannot_be_installed_is_refused_with_its_name(sdk_platform: Platform) -> None:
    app = App("reqs")

    @app.function(requirements=["msgpack>=1.0", "surely-not-installed-pkg==1.2"])
    def needs() -> int:
        return 1

    with pytest.raises(DeployError) as info:
        app.deploy()  # the local backend tries to install it, and says why it could not
    message = str(info.value)
    assert "requirements.txt could not be installed" in message and "surely-not-installed-pkg" in message


def test_python_mismatch_message_names_both_versions() -> None:
    from stoker.sdk.app import python_mismatch

    assert python_mismatch("3.11.7", "3.11.2") is None
    assert python_mismatch("3.11.7", "") is None  # unknown: the replica checks the manifest itself
    message = python_mismatch("3.12.1", "3.11.7")
    assert message is not None and "Python 3.12.1" in message and "Python 3.11.7" in message
