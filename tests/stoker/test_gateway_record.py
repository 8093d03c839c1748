"""`stoker up` on any port: the CLI and SDK of the same STOKER_HOME find it there; --gateway, STOKER_GATEWAY and
OPENFAAS_URL still win; a platform that stopped (or was killed) is not taken for a running one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from stoker import gatewayrecord
from stoker.config import DEFAULT_GATEWAY, gateway_url
from tests.platform_fixture import start_platform
from tests.wait_support import free_port


def _closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def _run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("STOKER_", "OPENFAAS_"))}
    return subprocess.run(
        [sys.executable, *args], env={**environ, "STOKER_HOME": str(home), **env}, capture_output=True, text=True
    )


def test_cli_and_sdk_find_a_platform_on_any_port(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = start_platform(home)  # --port 0: not 8080
    try:
        record = json.loads((home / "gateway.json").read_text())
        assert record["url"] == platform.url
        assert (home / "gateway.json").stat().st_mode & 0o077 == 0
        r = _run(home, "-m", "stoker", "info")
        assert r.returncode == 0, r.stderr
        assert platform.url in r.stdout
        app = tmp_path / "app.py"
        app.write_text(
            textwrap.dedent(
                """
                from stoker import App
                app = App("found")

                @app.function
                def double(x: int) -> int:
                    return 2 * x

                app.deploy()
                print(double.remote(21))
                """
            )
        )
        r = _run(home, str(app))
        assert (r.returncode, r.stdout) == (0, "42\n"), r.stderr
        # What the user says explicitly wins over the record.
        elsewhere = _closed_url()
        for env in ({"STOKER_GATEWAY": elsewhere}, {"OPENFAAS_URL": elsewhere}):
            r = _run(home, "-m", "stoker", "list", **env)
            assert r.returncode == 1 and f"cannot reach the gateway at {elsewhere}" in r.stderr
        r = _run(home, "-m", "stoker", "--gateway", elsewhere, "list")
        assert r.returncode == 1 and elsewhere in r.stderr
    finally:
        assert platform.stop() == 0
    assert not (home / "gateway.json").exists()
    r = _run(home, "-m", "stoker", "list")
    assert r.returncode == 1
    assert "--gateway" in r.stderr and "STOKER_GATEWAY" in r.stderr


def test_a_killed_platform_record_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    platform = start_platform(home)
    platform.stop(signal.SIGKILL)
    assert (home / "gateway.json").exists()  # nothing could remove it
    assert gatewayrecord.read(home) == ""
    assert gateway_url({"STOKER_HOME": str(home)}) == DEFAULT_GATEWAY
    assert gateway_url({"STOKER_HOME": str(home)}, fallback="http://stack:8080") == "http://stack:8080"


def test_client_urls_for_wildcard_binds() -> None:
    assert gatewayrecord.client_url("0.0.0.0", 8094) == "http://127.0.0.1:8094"
    assert gatewayrecord.client_url("::", 8094) == "http://[::1]:8094"
    assert gatewayrecord.client_url("10.0.0.5", 80) == "http://10.0.0.5:80"
