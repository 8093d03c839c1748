"""stoker.buildinfo: the sha /system/info reports where no git checkout is (an installed package, an image)."""

from __future__ import annotations

import shutil
from pathlib import Path

from stoker.buildinfo import build_info, git_commit, source_digest
from tests.platform_fixture import ROOT


def _copy(root: Path) -> Path:
    for package in ("stoker", "gateway"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_an_installed_copy_reports_a_digest_of_its_sources_that_changes_with_them(tmp_path: Path) -> None:
    root = _copy(tmp_path / "site")
    assert git_commit(root) is None  # no .git: not a checkout
    info = build_info(root)
    assert len(info.sha) == 40 and info.sha == source_digest(root)[:40]
    assert "digest" in info.commit_message
    assert source_digest(root) == source_digest(_copy(tmp_path / "again"))  # the same sources, the same digest
    (root / "gateway" / "api.py").write_text((root / "gateway" / "api.py").read_text() + "\n# changed\n")
    assert source_digest(root) != source_digest(tmp_path / "again")


def test_a_folder_inside_some_other_repository_does_not_report_its_commit(tmp_path: Path) -> None:
    # site-packages may sit inside an unrelated checkout: only the top of stoker's own (pyproject.toml beside .git)
    # counts.
    root = _copy(tmp_path / "site")
    (root / ".git").mkdir()
    assert git_commit(root) is None
