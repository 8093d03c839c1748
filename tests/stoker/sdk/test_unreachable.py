"""The SDK against a gateway that is not there: every failure is an SDKError, and `stoker deploy app.py` of a file
that deploys at import exits 1 (an operation failed), not 2 (a usage mistake)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stoker.sdk import App, DeployError, SDKError
from tests.wait_support import free_port


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_deploy_to_an_unreachable_gateway_is_an_sdk_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_HOME", str(tmp_path))
    url = _closed_url()
    app = App("nowhere", gateway=url, password="x")

    @app.function
    def f() -> int:
        return 1

    with pytest.raises(SDKError) as caught:
        app.deploy()
    assert isinstance(caught.value, DeployError)
    assert f"cannot reach the gateway at {url}" in str(caught.value)
    assert "STOKER_GATEWAY" in str(caught.value)
    with pytest.raises(SDKError):
        app.remove()


def test_a_module_level_deploy_that_fails_exits_1(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            from stoker import App

            app = App("eager")

            @app.function
            def f() -> int:
                return 1

            app.deploy()
            """
        )
    )
    env = {**os.environ, "STOKER_HOME": str(tmp_path / "home"), "STOKER_GATEWAY": _closed_url()}
    r = subprocess.run(
        [sys.executable, "-m", "stoker", "deploy", "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stoker: app.py: ") and "cannot reach the gateway" in lines[0]
