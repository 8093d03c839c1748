"""The runtime base image: Python 3.11, stoker's replica runtime and its dependencies, an unprivileged user.

Two images, both cached by tag:

1. the Python root filesystem, ``<base>-rootfs:bookworm``: pulled from an official Python image where a registry is
   reachable, else made offline with ``debootstrap --variant=minbase --include=python3 bookworm`` and imported
   (``docker import``); Debian's python3 in bookworm is 3.11;
2. the base image, ``<base>:py311-<content tag>``: the root filesystem plus ``/opt/stoker/lib`` (the ``stoker`` and
   ``runtime`` packages with their dependencies, installed on the host with ``pip --target``). The tag covers the
   root filesystem, the pinned dependency versions and the source of both packages, so a changed runtime gets a new
   base and an unchanged one is never rebuilt.

A missing image is built by one caller at a time on the machine (threads and processes: the warm pool and a deploy
of one platform, two platforms, ``stoker base-image``); the others show its progress, wait, and use what it made
(:mod:`builder.baselock`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import pip
from builder.baselock import one_build
from builder.context import pack_context
from builder.engine import engine_message
from builder.reference import content_tag, has_tag, validate_reference
from builder.stream import Output, run_build
from runtime.contract import COMMAND, PORT, PORT_VAR, RUNTIME_USER
from stoker.errors import NotFound
from stoker.processes import alive

DEFAULT_BASE = "stoker/runtime"
OFFICIAL_PYTHON = "python:3.11-slim-bookworm"
SOURCE_PACKAGES = ("stoker", "runtime")
# The orchestrator side and the command line: replicas never import them (a test checks it).
_NOT_IN_IMAGE = ("runtime/backends", "stoker/cli")
# What ``python -m runtime`` imports beyond the standard library (pinned to the versions installed here).
RUNTIME_REQUIREMENTS = ("uvicorn[standard]", "httptools", "msgpack", "cloudpickle")
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_ROOTS_DIR, _ROOTS_PREFIX = "/var/tmp", "stoker-rootfs-"  # the root filesystem being made: large, so not in /tmp
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


MakeRoot = Callable[[Path, Output], None]
"""Fills an empty folder with a root filesystem that has Python 3.11 as ``python3`` (and reports its progress)."""


def debootstrap(mirror: str = "") -> MakeRoot:
    """Debian bookworm, minimal, with its python3 (3.11), made with ``debootstrap`` (about a minute or two)."""

    def make(root: Path, out: Output) -> None:
        if shutil.which("debootstrap") is None:
            raise pip.BuildFailed("debootstrap", [], "install it (apt-get install debootstrap) or use --from IMAGE")
        cmd = ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", str(root)]
        out("$ " + " ".join(cmd) + (f" {mirror}" if mirror else "") + "   (about a minute)")
        log: list[str] = []
        shown = Phases()
        with subprocess.Popen(
            cmd + ([mirror] if mirror else []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                log.append(line)
                if shown.new(line):
                    out(line)
        if proc.returncode != 0:
            raise pip.BuildFailed("debootstrap", log)

    return make


class Phases:
    """Which of debootstrap's lines to show: each change of what it does (``I: Retrieving``, ``I: Extracting``, ...)
    once, and every warning or error, so a two-minute run shows a score of lines instead of hundreds."""

    _SAME = {"Validating": "Retrieving"}  # alternates with Retrieving, one package after the other

    def __init__(self) -> None:
        self.last = ""

    def new(self, line: str) -> bool:
        if not line.startswith("I: "):
            return bool(line.strip())
        verb = line[3:].split(" ", 1)[0]
        verb = self._SAME.get(verb, verb)
        if verb == self.last:
            return False
        self.last = verb
        return True


def ensure_rootfs(
    client: Any, ref: str, source: str, out: Output, mirror: str = "", make_root: MakeRoot | None = None
) -> None:
    """Make ``ref`` exist: from ``source`` (an image to pull), ``debootstrap``, or ``auto`` (pull, else debootstrap);
    ``make_root`` replaces debootstrap (the tests make a small root filesystem through the same import)."""
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
    _import_root(client, ref, out, make_root or debootstrap(mirror))


def _import_root(client: Any, ref: str, out: Output, make_root: MakeRoot) -> None:
    _remove_abandoned_roots(out)
    with tempfile.TemporaryDirectory(prefix=f"{_ROOTS_PREFIX}{os.getpid()}-", dir=_ROOTS_DIR) as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        make_root(root, out)
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


def _remove_abandoned_roots(out: Output) -> None:
    """Remove the root filesystems of builds whose process died mid-way (killed: no cleanup ran). Only those of dead
    processes, and none with something still mounted inside (debootstrap mounts /proc there while it runs)."""
    mounted = Path("/proc/self/mountinfo").read_text(errors="replace") if Path("/proc/self/mountinfo").exists() else ""
    for folder in Path(_ROOTS_DIR).glob(f"{_ROOTS_PREFIX}*-*"):
        pid = folder.name[len(_ROOTS_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or alive(int(pid)) or f" {folder}/" in mounted:
            continue
        out(f"removing {folder}, left by a build that did not finish (process {pid})")
        shutil.rmtree(folder, ignore_errors=True)


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
    make_root: MakeRoot | None = None,
) -> BaseImage:
    """The base image for this runtime, built only when missing (or when ``rebuild``).

    One build at a time on this machine (:mod:`builder.baselock`, under ``cache_dir``): a caller that finds another
    build running shows its progress, waits for it, and uses the image it made."""
    validate_reference(base, "base image")
    if has_tag(base):
        if not image_exists(client, base):
            raise NotFound(f"base image {base} is not on this Docker Engine (build it with: stoker base-image)")
        return BaseImage(base, built=False)
    if not rebuild:
        ref = _existing(client, base)
        if ref:
            return BaseImage(ref, built=False)
    cache = cache_dir or pip.default_cache_dir()
    with one_build(cache, out) as say:
        ref = "" if rebuild else _existing(client, base)
        if ref:
            out(f"the base image {ref} is ready (made by the build waited for)")  # not in the log: no progress
            return BaseImage(ref, built=False)
        began = time.monotonic()
        say(f"building the base image {base} ({_how_long(client, base)}); progress follows")
        ensure_rootfs(client, rootfs_ref(base), source, say, make_root=make_root)
        ref = _build_base(client, base, cache, say, rebuild)
        say(f"built the base image {ref} in {time.monotonic() - began:.0f} s")
    return BaseImage(ref, built=True)


def _existing(client: Any, base: str) -> str:
    """The reference of the base image for this runtime when it exists, else ""."""
    if not image_exists(client, rootfs_ref(base)):
        return ""
    ref = base_ref(client, base)
    return ref if image_exists(client, ref) else ""


def _how_long(client: Any, base: str) -> str:
    if image_exists(client, rootfs_ref(base)):
        return "once per runtime version; under a minute"
    return "the first time on this engine: a Python root filesystem, then the runtime; about 2-4 minutes"


def _build_base(client: Any, base: str, cache: Path, out: Output, rebuild: bool) -> str:
    ref = base_ref(client, base)
    out("installing the runtime's dependencies")
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
    return ref
