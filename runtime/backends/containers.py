"""What the container orchestrators (Docker, Swarm, Kubernetes) share: labels, the bundle mount, resource units,
the ``STOKER_DOCKER_*`` settings (Swarm reads them too) and whether a source bundle needs an image of its own.

Labels say what a restarted platform needs to adopt its containers and services without any other state; the
bundle mount is where a replica of the plain base image finds its signed code (:mod:`runtime.codesign`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.base import pinned_requirements
from runtime.backends.memory_floor import DOCKER_MIN_MEMORY, at_least
from runtime.backends.quantities import memory_size
from stoker.envsettings import from_environ
from stoker.errors import ConfigError, InvalidRequest
from stoker.spec import FunctionDeployment

# Container labels: what a restarted platform needs to adopt its containers without any other state.
OWNER = "com.stoker.owner"  # the platform's owner id (owner_id): containers, volumes and network carry it
FUNCTION = "com.stoker.function"
NAMESPACE = "com.stoker.namespace"
VERSION = "com.stoker.version"
DEPLOYMENT = "com.stoker.deployment"
CREATED = "com.stoker.created"
REPLICAS = "com.stoker.replicas"
POOL = "com.stoker.pool"  # a generic container of the warm pool (runtime/backends/docker/pool.py)
BUNDLE_DIR = "/var/stoker/bundle"  # the signed code bundle, from a read-only volume (runtime/codesign.py)
BUNDLE_FILE = "bundle.tar.gz"


@dataclass(frozen=True)
class DockerSettings:
    """``STOKER_DOCKER_*`` settings of the docker backend."""

    base_image: str = "stoker/runtime"  # repository (tag derived from the runtime) or a pinned name:tag
    network: str = ""  # bridge network of the replicas; empty: the platform's own (docker/network.py)
    on_shutdown: str = "remove"  # remove | leave: what platform shutdown does with the replicas
    registry: str = ""  # push built images here (empty: no push)
    memory: str = "512Mi"  # memory limit when a function sets none
    pids: int = 512  # process/thread limit per replica
    tmpfs_size: str = "64m"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DockerSettings:
        settings = cls(**from_environ(cls, environ, "STOKER_DOCKER_"))
        if settings.pids < 16:
            raise ConfigError(f"STOKER_DOCKER_PIDS: must be at least 16, got {settings.pids}")
        if settings.on_shutdown not in ("remove", "leave"):
            raise ConfigError(f"STOKER_DOCKER_ON_SHUTDOWN: {settings.on_shutdown!r} is not 'remove' or 'leave'")
        try:
            memory_bytes(settings.memory, "STOKER_DOCKER_MEMORY")
        except InvalidRequest as exc:
            raise ConfigError(str(exc)) from None
        return settings


def memory_bytes(value: str, what: str) -> int:
    """A memory size the Docker Engine accepts (see :func:`runtime.backends.quantities.memory_size`)."""
    n = memory_size(value, what)
    if n < DOCKER_MIN_MEMORY:
        raise InvalidRequest(f"{what}: {value!r} is below the 6 MiB the Docker Engine allows")
    return n


def nano_cpus(value: str, what: str) -> int:
    """Docker NanoCPUs from ``0.5``, ``2`` or millicores (``500m``)."""
    raw = str(value).strip()
    try:
        cpus = float(raw[:-1]) / 1000 if raw.endswith("m") else float(raw)
    except ValueError:
        raise InvalidRequest(f"{what}: {value!r} is not a CPU amount (examples: 0.5, 2, 500m)") from None
    if not 0 < cpus <= 1024:
        raise InvalidRequest(f"{what}: {value!r} must be above zero")
    return int(cpus * 1e9)


def function_memory(value: str, what: str) -> int:
    """A function's memory limit or request in bytes: below the Engine's 6 MiB, raised to it (OpenFaaS accepts
    ``5Mi``; the status message says it was raised: :mod:`runtime.backends.memory_floor`)."""
    return at_least(value, what, DOCKER_MIN_MEMORY)


def check_resources(dep: FunctionDeployment) -> None:
    """Raise :class:`InvalidRequest` for a limit or request Docker could not apply (before anything starts)."""
    for field_name, values in (("limits", dep.limits), ("requests", dep.requests)):
        if values.get("memory"):
            function_memory(values["memory"], f"{field_name}.memory")
        if values.get("cpu"):
            nano_cpus(values["cpu"], f"{field_name}.cpu")


def labels(dep: FunctionDeployment, owner: str, version: str, created_at: float, replicas: int) -> dict[str, str]:
    return {
        OWNER: owner,
        FUNCTION: dep.service,
        NAMESPACE: dep.namespace,
        VERSION: version,
        CREATED: f"{created_at:.6f}",
        REPLICAS: str(replicas),
        DEPLOYMENT: json.dumps(dep.to_stored(), sort_keys=True),
    }


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


def owner_id(home: Path) -> str:
    """The owner id of the platform of ``home`` on a Docker Engine: a hash of its resolved ``STOKER_HOME``, so
    platforms of other homes on the same engine are never adopted nor touched."""
    return hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
