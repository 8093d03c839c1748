"""The same SDK function on the Docker backend (skipped where Docker or the docker backend is not there)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from stoker.sdk import App, DeployError
from tests.platform_fixture import PASSWORD, Platform, start_platform

pytestmark = pytest.mark.slow


def _docker_works() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if not _docker_works():
        pytest.skip("no Docker Engine here (scripts/setup.d/20-docker.sh starts one in CI)")
    try:
        p = start_platform(tmp_path_factory.mktemp("sdk-docker"), "--backend", "docker")
    except RuntimeError as exc:
        if "not available" in str(exc):
            pytest.skip("the docker backend is not in this version yet (issue 3)")
        raise
    yield p
    p.stop()


@pytest.mark.xfail(
    strict=True,
    raises=DeployError,
    reason="the docker backend does not yet give containers their signed bundle (STOKER_BUNDLE, STOKER_BUNDLE_KEY, "
    "STOKER_BUNDLE_SIGNATURE from runtime.codesign.replica_env), so the shim refuses to unpickle; remove this mark "
    "when it does",
)
def test_same_function_on_docker(docker_platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_GATEWAY", docker_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("dock")
    factor = 3

    @app.function(timeout=30)
    def scale(values: list[int]) -> tuple[int, str]:
        return sum(v * factor for v in values), os.uname().nodename

    app.deploy()
    total, host = scale.remote([1, 2, 3])
    assert total == 18
    assert host != os.uname().nodename  # it ran in a container, not on this host
    assert [total for total, _ in scale.map([[1], [2]])] == [3, 6]
