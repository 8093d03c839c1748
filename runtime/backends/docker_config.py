"""Settings of the docker backend and the pure translation of a deployment into a hardened container spec.

Settings come from ``STOKER_DOCKER_*`` variables (validated here, one message per bad value). The container spec is
decided here, with no Docker calls, so the hardening can be read and tested in one place:
non-root user, read-only root filesystem with a tmpfs ``/tmp``, every capability dropped, ``no-new-privileges``,
memory, CPU and pids limits, a dedicated network, and no host path or Docker socket mounted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.backends.memory_floor import DOCKER_MIN_MEMORY, at_least
from runtime.backends.quantities import memory_size
from runtime.config import function_environment
from stoker.config import ConfigError
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment

# Container labels: what a restarted platform needs to adopt its containers without any other state.
OWNER = "com.stoker.owner"
FUNCTION = "com.stoker.function"
NAMESPACE = "com.stoker.namespace"
VERSION = "com.stoker.version"
DEPLOYMENT = "com.stoker.deployment"
CREATED = "com.stoker.created"
REPLICAS = "com.stoker.replicas"
POOL = "com.stoker.pool"  # a generic container of the warm pool (runtime/backends/docker_pool.py)

REPLICA_PORT = 8080
SECRETS_DIR = "/var/openfaas/secrets"
BUNDLE_DIR = "/var/stoker/bundle"  # the signed code bundle, from a read-only volume (runtime/codesign.py)
BUNDLE_FILE = "bundle.tar.gz"
UNPRIVILEGED_USER = "10001:10001"


@dataclass(frozen=True)
class DockerSettings:
    """``STOKER_DOCKER_*`` settings of the docker backend."""

    base_image: str = "stoker/runtime"  # repository (tag derived from the runtime) or a pinned name:tag
    network: str = ""  # bridge network of the replicas; empty: the platform's own (docker_network.py)
    on_shutdown: str = "remove"  # remove | leave: what platform shutdown does with the replicas
    registry: str = ""  # push built images here (empty: no push)
    memory: str = "512Mi"  # memory limit when a function sets none
    pids: int = 512  # process/thread limit per replica
    tmpfs_size: str = "64m"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DockerSettings:
        values: dict[str, Any] = {}
        for name in ("base_image", "network", "on_shutdown", "registry", "memory", "tmpfs_size"):
            raw = environ.get(f"STOKER_DOCKER_{name.upper()}", "").strip()
            if raw:
                values[name] = raw
        pids = environ.get("STOKER_DOCKER_PIDS", "").strip()
        if pids:
            if not pids.isdigit() or int(pids) < 16:
                raise ConfigError(f"STOKER_DOCKER_PIDS: {pids!r} is not a whole number of at least 16")
            values["pids"] = int(pids)
        settings = cls(**values)
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
        DEPLOYMENT: json.dumps(dep.to_json(with_source=False), sort_keys=True),
    }


def container_spec(
    dep: FunctionDeployment,
    settings: DockerSettings,
    image_user: str,
    container_labels: dict[str, str],
    secrets_volume: str = "",
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one replica (pure: same input, same spec)."""
    env = {**function_environment(dep), "port": str(REPLICA_PORT)}
    user = image_user if image_user and image_user.split(":")[0] not in ("root", "0") else UNPRIVILEGED_USER
    memory = function_memory(dep.limits.get("memory") or settings.memory, "limits.memory")
    spec = _hardened(settings, dep.image, env, container_labels, user, memory)
    if dep.limits.get("cpu"):
        spec["nano_cpus"] = nano_cpus(dep.limits["cpu"], "limits.cpu")
    if dep.requests.get("memory"):
        spec["mem_reservation"] = min(memory, function_memory(dep.requests["memory"], "requests.memory"))
    if secrets_volume:
        spec["volumes"] = {secrets_volume: {"bind": SECRETS_DIR, "mode": "ro"}}
    return spec


def with_bundle(spec: dict[str, Any], volume: str, env: dict[str, str]) -> dict[str, Any]:
    """``spec`` plus the signed bundle: its volume read-only at :data:`BUNDLE_DIR` and the codesign variables."""
    if not volume:
        return spec
    return {
        **spec,
        "environment": {**spec["environment"], **env},
        # A mount, not ``volumes``: the Engine lists those under HostConfig.Binds, which is for host paths.
        "mounts": [
            *spec.get("mounts", []),
            {"Target": BUNDLE_DIR, "Source": volume, "Type": "volume", "ReadOnly": True},
        ],
    }


def generic_spec(settings: DockerSettings, image: str, owner: str, env: dict[str, str], memory: int) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for a generic container of the warm pool: hardened like a
    replica, with the pool's label instead of a function's, and no function variables."""
    env = {**env, "port": str(REPLICA_PORT), "PYTHONUNBUFFERED": "1"}
    return _hardened(settings, image, env, {OWNER: owner, POOL: "1"}, UNPRIVILEGED_USER, memory)


def limits_update(dep: FunctionDeployment, settings: DockerSettings, current_memory: int) -> dict[str, int]:
    """``docker update`` arguments that give a generic container ``dep``'s limits (empty when it has them)."""
    memory = function_memory(dep.limits.get("memory") or settings.memory, "limits.memory")
    update: dict[str, int] = {}
    if memory != current_memory:
        update |= {"mem_limit": memory, "memswap_limit": memory}
    if dep.limits.get("cpu"):
        period = 100_000
        update |= {"cpu_period": period, "cpu_quota": nano_cpus(dep.limits["cpu"], "limits.cpu") * period // 10**9}
    if dep.requests.get("memory"):
        update["mem_reservation"] = min(memory, function_memory(dep.requests["memory"], "requests.memory"))
    return update


def _hardened(
    settings: DockerSettings, image: str, env: dict[str, str], container_labels: dict[str, str], user: str, memory: int
) -> dict[str, Any]:
    return {
        "image": image,
        "environment": env,
        "labels": container_labels,
        "user": user,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={settings.tmpfs_size}"},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap beyond the limit: a leak ends in an OOM kill, seen and restarted
        "pids_limit": settings.pids,
        "network": settings.network,
        "restart_policy": {"Name": "no"},  # the backend restarts replicas itself, with backoff it can report
        "init": True,  # reaps zombies of handlers that spawn processes, forwards SIGTERM
        "detach": True,
    }
