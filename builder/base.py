"""The runtime base image: Python 3.11, stoker's replica runtime and its dependencies, an unprivileged user.

Two images, both cached by tag:

1. the Python root filesystem, ``<base>-rootfs:bookworm``: pulled from an official Python image where a registry is
   reachable, else made offline with ``debootstrap --variant=minbase --include=python3 bookworm`` and imported
   (``docker import``); Debian's python3 in bookworm is 3.11;
2. the base image, ``<base>:py311-<content tag>``: the root filesystem plus ``/opt/stoker/lib`` (the ``stoker`` and
   ``runtime`` packages with their dependencies, installed on the host with ``pip --target``). The tag covers the
   root filesystem, the pinned dependency versions and the source of both packages, so a changed runtime gets a new
   base and an unchanged one is never rebuilt.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import pip
from builder.context import pack_context
from builder.engine import engine_message
from builder.reference import content_tag, has_tag, validate_reference
from builder.stream import Output, run_build
from runtime.contract import COMMAND, PORT, PORT_VAR, RUNTIME_USER
from stoker.errors import NotFound

DEFAULT_BASE = "stoker/runtime"
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
SOURCE_PACKAGES = ("stoker", "runtime")
# The orchestrator side and the command line: replicas never import them (a test checks it).
_NOT_IN_IMAGE = ("runtime/backends", "stoker/cli")
# What ``python -m runtime`` imports beyond the standard library (pinned to the versions installed here).
RUNTIME_REQUIREMENTS = ("uvicorn[standard]", "httptools", "msgpack", "cloudpickle")
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Parts of a minbase root filesystem a Python replica never uses (package caches, docs, translations).
_PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")

BASE_DOCKERFILE = f"""\
FROM {{rootfs}}
COPY lib/ /opt/stoker/lib/
ENV PYTHONPATH=/opt/stoker/lib PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp {PORT_VAR}={PORT} \\
    STOKER_FUNCTION_DIR=/home/app/function
WORKDIR /home/app
USER {RUNTIME_USER}
EXPOSE {PORT}
LABEL com.stoker.base=true org.opencontainers.image.title="stoker runtime"
CMD {json.dumps(list(COMMAND))}
"""


@dataclass(frozen=True)
class BaseImage:
    ref: str
    built: bool  # False when it existed already


def pinned_requirements() -> str:
    """The runtime's requirements pinned to the versions installed with stoker here (tested together)."""
    lines = []
    for req in RUNTIME_REQUIREMENTS:
        name = req.split("[", 1)[0]
        try:
            lines.append(f"{req}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(req)
    return "\n".join(lines) + "\n"


def source_digest() -> str:
    """Content tag of the ``stoker`` and ``runtime`` packages' Python files."""
    parts: list[bytes | str] = []
    for package in SOURCE_PACKAGES:
        for path in sorted((_PROJECT_ROOT / package).rglob("*.py")):
            if _excluded(path.relative_to(_PROJECT_ROOT)):
                continue
            parts += [path.relative_to(_PROJECT_ROOT).as_posix(), path.read_bytes()]
    return content_tag(parts)


def _excluded(rel: Path) -> bool:
    return any(rel.as_posix().startswith(prefix + "/") for prefix in _NOT_IN_IMAGE)


def rootfs_ref(base: str) -> str:
    return f"{base.split(':', 1)[0] if not has_tag(base) else base.rsplit(':', 1)[0]}-rootfs:bookworm"


def image_exists(client: Any, ref: str) -> bool:
    import docker.errors

    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_rootfs(client: Any, ref: str, source: str, out: Output, mirror: str = "") -> None:
    """Make ``ref`` exist: from ``source`` (an image to pull), ``debootstrap``, or ``auto`` (pull, else debootstrap)."""
    import docker.errors

    if image_exists(client, ref):
        return
    if source != "debootstrap":
        image = OFFICIAL_PYTHON if source == "auto" else validate_reference(source, "--from")
        out(f"pulling {image} ...")
        try:
            client.images.pull(image).tag(*ref.rsplit(":", 1))
            return
        except docker.errors.DockerException as exc:
            if source != "auto":
                raise NotFound(f"cannot pull {image}: {engine_message(exc)}") from None
            out(f"no registry reachable ({engine_message(exc)}); making the root filesystem offline")
    _debootstrap_import(client, ref, out, mirror)


def _debootstrap_import(client: Any, ref: str, out: Output, mirror: str) -> None:
    if shutil.which("debootstrap") is None:
        raise pip.BuildFailed("debootstrap", [], "install it (apt-get install debootstrap) or use --from IMAGE")
    with tempfile.TemporaryDirectory(prefix="stoker-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        cmd = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root)]
        out("$ " + " ".join(cmd) + (f" {mirror}" if mirror else "") + "   (about a minute)")
        proc = subprocess.run(cmd + ([mirror] if mirror else []), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise pip.BuildFailed("debootstrap", (proc.stdout + proc.stderr).splitlines())
        for rel in _PRUNE:
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        out(f"importing the root filesystem as {ref}")
        repository, tag = ref.rsplit(":", 1)
        client.api.import_image_from_file(str(archive), repository=repository, tag=tag, changes=["ENV LANG=C.UTF-8"])


def base_ref(client: Any, base: str) -> str:
    """The full reference of the base image for the current runtime (without building anything)."""
    if has_tag(base):
        return base  # pinned by the operator: used as it is
    rootfs = client.images.get(rootfs_ref(base)).id
    return f"{base}:py311-{content_tag([rootfs, pinned_requirements(), source_digest(), BASE_DOCKERFILE])}"


def ensure_base_image(
    client: Any,
    base: str = DEFAULT_BASE,
    cache_dir: Path | None = None,
    source: str = "auto",
    out: Output = print,
    rebuild: bool = False,
) -> BaseImage:
    """The base image for this runtime, built only when missing (or when ``rebuild``)."""
    validate_reference(base, "base image")
    if has_tag(base):
        if not image_exists(client, base):
            raise NotFound(f"base image {base} is not on this Docker Engine (build it with: stoker base-image)")
        return BaseImage(base, built=False)
    ensure_rootfs(client, rootfs_ref(base), source, out)
    ref = base_ref(client, base)
    if image_exists(client, ref) and not rebuild:
        return BaseImage(ref, built=False)
    cache = cache_dir or pip.default_cache_dir()
    deps = pip.install(pinned_requirements(), cache, step="install the runtime's dependencies")
    with tempfile.TemporaryDirectory(prefix="stoker-base-") as tmp:
        lib = Path(tmp) / "lib"
        shutil.copytree(deps / "site", lib, symlinks=True)
        for package in SOURCE_PACKAGES:
            shutil.copytree(
                _PROJECT_ROOT / package, lib / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        for prefix in _NOT_IN_IMAGE:
            shutil.rmtree(lib / prefix, ignore_errors=True)
        # Compiled here: the root filesystem is read-only at run time, so Python could not cache bytecode there.
        compile_cmd = [sys.executable, "-m", "compileall", "-q", *(str(lib / p) for p in SOURCE_PACKAGES)]
        subprocess.run(compile_cmd, check=False, capture_output=True)  # a bad file fails at import, later

        context = pack_context(BASE_DOCKERFILE.format(rootfs=rootfs_ref(base)), {"lib": lib})
        run_build(client, context, ref, out, nocache=rebuild)
    repository = ref.rsplit(":", 1)[0]
    client.images.get(ref).tag(repository, "latest")
    return BaseImage(ref, built=True)
