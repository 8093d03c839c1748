"""In CI the suite never skips for a missing service: the services scripts/setup.d installs must all be there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import CI_SERVICES, missing_ci_services

ROOT = Path(__file__).resolve().parents[1]


def test_every_service_the_suite_installs_is_required_in_ci() -> None:
    assert len(missing_ci_services({})) == len(CI_SERVICES)
    env = {"STOKER_TEST_DOCKER": "1", "STOKER_TEST_SWARM": "1", "STOKER_TEST_REDIS_URL": "redis://127.0.0.1:1/0"}
    (problem,) = missing_ci_services(env)  # set, but nothing answers there
    assert "unreachable" in problem


def test_a_ci_run_without_its_services_fails_at_once_and_says_which(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("def test_nothing() -> None:\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k not in CI_SERVICES}
    env.update(CI="true", PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT), "-c",
         str(ROOT / "pyproject.toml"), "--confcutdir", str(ROOT / "tests"), "-p", "tests.conftest",
         str(tmp_path / "test_nothing.py")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert run.returncode == 3, run.stdout + run.stderr
    assert "STOKER_TEST_REDIS_URL" in run.stdout + run.stderr
