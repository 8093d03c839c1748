"""Function and runtime dependencies installed on the host with ``pip install --target``, cached by content.

Builds never reach the network from inside a container (package registries fail TLS verification there on machines
like CI's, and a build that needs no network is faster and reproducible): pip runs here, for CPython 3.11 on Linux,
and the resulting folder is copied into the image as one layer. The folder is cached under the requirements' hash,
so a code-only rebuild runs no pip at all and the layer is identical (the engine's build cache reuses it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stoker.errors import DeployFailed

TARGET_PYTHON = (3, 11)  # the Python of the base image
_LOG_TAIL = 15


class BuildFailed(DeployFailed):
    """A build step failed; the message names the step and ends with the tail of its log."""

    def __init__(self, step: str, log: list[str], hint: str = "") -> None:
        tail = [line for line in log if line.strip()][-_LOG_TAIL:]
        self.step = step
        self.log_tail = tail
        text = f"build failed at step '{step}'" + (f" ({hint})" if hint else "")
        super().__init__(text + (":\n" + "\n".join(tail) if tail else ""))


def default_cache_dir() -> Path:
    """``STOKER_BUILD_CACHE``, else ``$XDG_CACHE_HOME/stoker``, else ``~/.cache/stoker``."""
    explicit = os.environ.get("STOKER_BUILD_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stoker"


def requirements_key(requirements: str) -> str:
    """Cache key of a requirements text: comments, blank lines and surrounding spaces do not count."""
    lines = [line.split("#", 1)[0].strip() for line in requirements.splitlines()]
    wanted = "\n".join(line for line in lines if line)
    return hashlib.sha256(f"cp{TARGET_PYTHON[0]}{TARGET_PYTHON[1]}\n{wanted}".encode()).hexdigest()[:16]


def has_requirements(requirements: str) -> bool:
    return any(line.split("#", 1)[0].strip() for line in requirements.splitlines())


def pip_command(target: Path, requirements_file: Path) -> list[str]:
    """The pip invocation: plain when this interpreter is the target Python, else wheels for cp311/manylinux."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet"]
    cmd += ["--target", str(target), "-r", str(requirements_file)]
    if sys.version_info[:2] != TARGET_PYTHON:
        major, minor = TARGET_PYTHON
        cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", f"{major}.{minor}"]
        cmd += ["--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64"]
    return cmd


def install(requirements: str, cache_dir: Path, step: str = "install requirements.txt", timeout: float = 600) -> Path:
    """The folder holding ``requirements`` installed for the target Python (from the cache when present)."""
    final = cache_dir / "deps" / requirements_key(requirements)
    if (final / ".complete").is_file():
        return final
    work = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "site").mkdir(parents=True)
    req_file = work / "requirements.txt"
    req_file.write_text(requirements)
    try:
        proc = subprocess.run(
            pip_command(work / "site", req_file), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        raise BuildFailed(step, [], f"pip took longer than {timeout:.0f}s") from None
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise BuildFailed(step, (proc.stdout + proc.stderr).splitlines(), "pip could not install the requirements")
    shutil.rmtree(work / "site" / "bin", ignore_errors=True)  # console scripts point at the host's interpreter
    (work / ".complete").write_text("")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(work, final)
    return final
