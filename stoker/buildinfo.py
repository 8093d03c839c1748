"""Which build of stoker is running: what ``GET /system/info`` reports as ``version.sha`` (OpenFaaS clients and
its certifier require it to be non-empty).

From a git checkout (an editable install, a source tree), the commit it is at, and that commit's subject line. An
installed copy (a wheel, the platform image) has no history: there the sha is a digest of the package's own source
files (``sha256`` of every ``.py`` file of stoker's packages, by path and content), which changes whenever any of
them does, and the message says that it is one. Computed once per process (:func:`build_info` is cached); it reads
files and may run ``git`` once, so call it at startup, not on a request.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the folder that holds the stoker, gateway, runtime ... packages
PACKAGES = ("stoker", "gateway", "runtime", "builder", "autoscaler", "events")
_GIT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class BuildInfo:
    sha: str  # 40 hex digits: a git commit, or the first 40 of the source digest
    commit_message: str


def git_commit(root: Path) -> BuildInfo | None:
    """The commit of the checkout at ``root``; None when ``root`` is not the top of a git checkout of stoker (or git
    is missing): an installed package must not report the commit of whatever repository it happens to sit in."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    try:
        out = subprocess.run(
            [git, "-C", str(root), "log", "-1", "--format=%H%n%s"],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    sha, _, subject = out.partition("\n")
    sha = sha.strip()
    if len(sha) < 40 or any(c not in "0123456789abcdef" for c in sha):
        return None
    return BuildInfo(sha, subject.strip())


def source_digest(root: Path, packages: tuple[str, ...] = PACKAGES) -> str:
    """sha256 (hex) over every ``.py`` file of ``packages`` under ``root``: each file's path, then its content."""
    digest = hashlib.sha256()
    for package in packages:
        folder = root / package
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


@functools.cache
def build_info(root: Path = ROOT) -> BuildInfo:
    """The commit this copy of stoker was built from, else a digest of its sources (see the module's docstring)."""
    return git_commit(root) or BuildInfo(
        source_digest(root)[:40], "no commit recorded: sha is a sha256 digest of the installed package's sources"
    )
