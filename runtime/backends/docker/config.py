"""The docker backend's pure translation of a deployment into a hardened container spec.

The settings are :class:`runtime.backends.containers.DockerSettings` (``STOKER_DOCKER_*``). The container spec is
decided here, with no Docker calls, so the hardening can be read and tested in one place:
non-root user, read-only root filesystem (unless the deployment says ``readOnlyRootFilesystem: false``) with a tmpfs
``/tmp``, every capability dropped, ``no-new-privileges``,
memory, CPU and pids limits, a dedicated network, and no host path or Docker socket mounted.
"""

from __future__ import annotations

from typing import Any

from runtime.backends.containers import (
    BUNDLE_DIR,
    OWNER,
    POOL,
    DockerSettings,
    function_memory,
    nano_cpus,
)
from runtime.contract import PORT, RUNTIME_USER, SECRETS_DIR, function_environment
from stoker.spec import FunctionDeployment


def container_spec(
    dep: FunctionDeployment,
    settings: DockerSettings,
    image_user: str,
    container_labels: dict[str, str],
    secrets_volume: str = "",
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for one replica (pure: same input, same spec)."""
    env = {**function_environment(dep), "port": str(PORT)}
    user = image_user if image_user and image_user.split(":")[0] not in ("root", "0") else RUNTIME_USER
    memory = function_memory(dep.limits.get("memory") or settings.memory, "limits.memory")
    spec = _hardened(settings, dep.image, env, container_labels, user, memory)
    spec["read_only"] = dep.read_only_root  # writable only when the deployment says false; the rest stays hardened
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
    env = {**env, "port": str(PORT), "PYTHONUNBUFFERED": "1"}
    return _hardened(settings, image, env, {OWNER: owner, POOL: "1"}, RUNTIME_USER, memory)


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
