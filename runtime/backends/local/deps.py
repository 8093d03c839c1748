"""A local function's ``requirements.txt``, installed into a folder of its own, cached by the requirement set.

The local backend runs replicas with the platform's interpreter; a function whose ``requirements.txt`` names
packages the platform's environment does not already satisfy gets them installed once into
``$STOKER_HOME/local/deps/<key>/site``, put first on its replicas' ``PYTHONPATH`` (after stoker's own code), so its
pinned versions win over the platform's. ``key`` hashes the interpreter and the requirement lines (comments, blank
lines and spacing do not count): functions that pin the same set share one folder, and a redeploy with unchanged
requirements installs nothing. This is what the Docker builder's dependency layer does (builder/pip.py), on the host.

The installer is ``uv`` (a dependency: two to three times faster than pip here, on a first install and when its own
cache already holds the packages; see docs/functions.md), else ``pip``. One install per set at a time (a file lock),
into a temporary folder renamed into place when complete, so a failed or interrupted install leaves nothing used. A
failure is :class:`~stoker.errors.DeployFailed` (422) ending with the installer's own last lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stoker.errors import DeployFailed

REQUIREMENTS = "requirements.txt"
_TAIL = 12
_COMPLETE = ".complete"


def requirement_lines(code_dir: Path) -> list[str]:
    """The requirement lines of a function folder (none when it has no requirements.txt)."""
    try:
        text = (code_dir / REQUIREMENTS).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in (raw.split("#", 1)[0].strip() for raw in text.splitlines()) if line]


def key(lines: list[str], python: str) -> str:
    """The cache key of a requirement set for an interpreter."""
    which = f"{os.path.realpath(python)}\n{sys.version if os.path.realpath(python) == _ours() else ''}"
    return hashlib.sha256(("\n".join([which, *lines])).encode()).hexdigest()[:20]


def installed(root: Path, code_dir: Path, python: str) -> Path | None:
    """The installed packages of a function folder, or None when it needs none (or they are not installed)."""
    lines = requirement_lines(code_dir)
    if not lines:
        return None
    folder = root / "deps" / key(lines, python)
    return folder / "site" if (folder / _COMPLETE).is_file() else None


def ensure(root: Path, code_dir: Path, python: str, timeout: float = 600) -> Path | None:
    """Install the requirements of ``code_dir`` unless their set is installed already; return the folder for
    ``PYTHONPATH`` (None when there is nothing to install). Blocking: call it in a thread."""
    lines = requirement_lines(code_dir)
    if not lines or (os.path.realpath(python) == _ours() and not _missing(lines)):
        return None  # nothing, or only what the platform's own environment (the replicas' too) already satisfies
    deps = root / "deps"
    deps.mkdir(parents=True, exist_ok=True)
    folder = deps / key(lines, python)
    with open(deps / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second deploy of the same set waits, then finds it installed
        if (folder / _COMPLETE).is_file():
            return folder / "site"
        work = deps / f"{folder.name}.tmp"
        shutil.rmtree(work, ignore_errors=True)
        (work / "site").mkdir(parents=True)
        (work / REQUIREMENTS).write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            done = subprocess.run(
                installer_command(python, work / "site", work / REQUIREMENTS),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            shutil.rmtree(work, ignore_errors=True)
            raise DeployFailed(f"{REQUIREMENTS}: installing took longer than {timeout:.0f}s") from None
        if done.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            tail = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()][-_TAIL:]
            raise DeployFailed(f"{REQUIREMENTS} could not be installed: " + " | ".join(tail))
        shutil.rmtree(work / "site" / "bin", ignore_errors=True)  # console scripts: not on a replica's PATH
        (work / _COMPLETE).write_text("")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(work, folder)
        return folder / "site"


def installer_command(python: str, target: Path, requirements: Path) -> list[str]:
    """``uv pip install`` when uv is installed, else ``pip install``, into ``target`` for ``python``."""
    uv = _uv()
    if uv:
        return [uv, "pip", "install", "--quiet", "--python", python, "--target", str(target), "-r", str(requirements)]
    return [
        python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
        "--target", str(target), "-r", str(requirements),
    ]  # fmt: skip


def _uv() -> str:
    with contextlib.suppress(ImportError, FileNotFoundError):
        from uv import find_uv_bin  # type: ignore[import-not-found, unused-ignore]

        return str(find_uv_bin())
    return shutil.which("uv") or ""


def _missing(lines: list[str]) -> list[str]:
    from stoker.sdk.shim import missing_requirements  # the replica's own check of an SDK bundle's requirements

    return missing_requirements(lines)


def _ours() -> str:
    return os.path.realpath(sys.executable)
