"""Volumes the docker backend mounts read-only into replicas: a function's secrets and its signed code bundle.

A volume, not a bind mount: no host path is ever mounted into a function. Each is filled through a container that
is created and never started, and named by its content, so an unchanged deploy reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.base import pinned_requirements
from runtime import codesign
from runtime.backends.docker_config import BUNDLE_DIR, BUNDLE_FILE, FUNCTION, NAMESPACE, OWNER
from stoker import bundle
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment


@dataclass
class FunctionCode:
    """A source deploy's signed bundle as its replicas get it."""

    volume: str = ""  # holds bundle.tar.gz, mounted read-only at BUNDLE_DIR
    env: dict[str, str] = field(default_factory=dict)  # codesign.replica_env variables
    data: bytes = b""  # the bundle, kept for warm starts; empty when the function cannot use the pool


def function_code(client: Any, owner: str, platform_key: bytes, dep: FunctionDeployment, data: bytes) -> FunctionCode:
    """The bundle volume and codesign variables of a source deploy (the key given is the per-function one)."""
    volume = bundle_volume(client, owner, dep, data)
    path = f"{BUNDLE_DIR}/{BUNDLE_FILE}"
    env = codesign.replica_env_for_bytes(platform_key, dep.namespace, dep.service, data, path)
    # The pool's containers run the base image: only a function that needs nothing more can start in one.
    poolable = not dep.secrets and not dep.envProcess and not needs_image(data)
    return FunctionCode(volume, env, data if poolable else b"")


def secrets_volume(client: Any, home: Path, owner: str, dep: FunctionDeployment) -> str:
    """A volume holding the function's secrets as files (mounted at /var/openfaas/secrets); "" when it has none.

    Values come from ``$STOKER_HOME/secrets/<namespace>/<name>``."""
    if not dep.secrets:
        return ""
    values: dict[str, bytes] = {}
    for name in dep.secrets:
        path = home / "secrets" / dep.namespace / name
        try:
            values[name] = path.read_bytes()
        except OSError:
            raise InvalidRequest(f"secret {name!r} not found in namespace {dep.namespace!r} ({path})") from None
    digest = hashlib.sha256(json.dumps({k: v.hex() for k, v in sorted(values.items())}).encode()).hexdigest()
    volume = f"stoker-secrets-{owner}-{dep.namespace}-{dep.service}-{digest[:12]}"
    _fill(client, dep, owner, volume, values)
    return volume


def bundle_volume(client: Any, owner: str, dep: FunctionDeployment, data: bytes) -> str:
    """A volume holding the function's signed bundle as ``bundle.tar.gz`` (mounted at ``BUNDLE_DIR``), so the
    replica can check its own code before it unpickles anything (:mod:`runtime.codesign`)."""
    volume = f"stoker-bundle-{owner}-{dep.namespace}-{dep.service}-{bundle.digest(data)[:12]}"
    if not _exists(client, volume):
        _fill(client, dep, owner, volume, {BUNDLE_FILE: data})
    return volume


def needs_image(data: bytes) -> bool:
    """Whether a source bundle needs an image of its own: only to install requirements the base image lacks.

    Otherwise the plain base image runs it, unpacking the mounted signed bundle at start (no build, nothing stored
    per version). A requirement counts as present when it names one of the runtime's own packages, unpinned or
    pinned (``==``) to the version the base image holds; anything else (ranges, URLs, options) gets an image."""
    lines = [line.split("#", 1)[0].strip() for line in _requirements(data).splitlines()]
    wanted = [line for line in lines if line]
    if not wanted:
        return False
    present = base_packages()
    return not all(_present(line, present) for line in wanted)


_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([A-Za-z0-9.+!_-]+))?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_packages() -> dict[str, str]:
    """The runtime's own distributions in the base image, by normalised name, with their pinned versions."""
    packages = {}
    for line in pinned_requirements().splitlines():
        m = _REQUIREMENT.match(line.strip())
        if m and m.group(2):
            packages[_normal(m.group(1))] = m.group(2)
    return packages


def _present(requirement: str, present: dict[str, str]) -> bool:
    m = _REQUIREMENT.match(requirement)
    if not m or _normal(m.group(1)) not in present:
        return False
    return m.group(2) is None or m.group(2) == present[_normal(m.group(1))]


def _requirements(data: bytes) -> str:
    """The bundle's requirements.txt ("" when it has none)."""
    with contextlib.suppress(tarfile.TarError, KeyError, OSError), tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.extractfile("requirements.txt")
        if member is not None:
            return member.read().decode("utf-8", "replace")
    return ""


def remove_volume(client: Any, volume: str) -> None:
    with contextlib.suppress(Exception):
        client.volumes.get(volume).remove(force=True)


def _exists(client: Any, volume: str) -> bool:
    import docker.errors

    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    return True


def _fill(client: Any, dep: FunctionDeployment, owner: str, volume: str, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    client.volumes.create(volume, labels={OWNER: owner, FUNCTION: dep.service, NAMESPACE: dep.namespace})
    filler = client.containers.create(dep.image, volumes={volume: {"bind": "/s", "mode": "rw"}}, command="-")
    try:
        filler.put_archive("/s", buf.getvalue())
    finally:
        filler.remove(force=True)
