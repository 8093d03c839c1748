"""Settings of the swarm backend and the pure translation of a deployment into a Swarm service spec.

Settings come from ``STOKER_SWARM_*`` variables (the image-related ones, base image, registry, default memory, pids,
tmpfs size, are the docker backend's ``STOKER_DOCKER_*``). The spec is decided here with no Engine calls, so what a
function runs with can be read in one place: the docker backend's hardening (non-root, read-only root filesystem
with a tmpfs ``/tmp``, every capability dropped, memory/CPU/pids limits, no host path or socket mounted) expressed
in Swarm terms, Docker secrets as files under ``/var/openfaas/secrets/``, start-first rolling updates that roll
back on failure, and labels holding the whole deployment, so any gateway rebuilds everything from the engine.

Routing (``STOKER_SWARM_ROUTE``, decided at start by :mod:`.route`):

- ``auto`` (default): ``overlay`` when the gateway runs in a container on the functions' network, else
  ``published``.
- ``overlay``: the gateway runs on the functions' attachable overlay network (the ``deploy/swarm``
  stack) and sends requests to each task's address on it.
- ``published``: each task also publishes port 8080 in *host* mode on a port the engine picks; the gateway sends
  requests to ``node address:that port``. For a gateway that is not on the overlay (run on a host, as ``stoker up
  --backend swarm`` is): overlay addresses are not reachable from a host, so ``overlay`` there fails at start. It
  exposes replicas on the nodes' interfaces, so firewall those ports or use ``overlay`` in production.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.backends.containers import (
    CREATED,
    DEPLOYMENT,
    FUNCTION,
    NAMESPACE,
    POOL,
    VERSION,
    DockerSettings,
    function_memory,
    memory_bytes,
    nano_cpus,
)
from runtime.backends.swarm.route import AUTO, ROUTES
from runtime.contract import (
    DIR_VAR,
    HEALTH_PATH,
    KEY_FILE_VAR,
    POOL_VAR,
    PORT,
    RUNTIME_USER,
    SECRETS_DIR,
    function_environment,
)
from stoker.envsettings import from_environ
from stoker.errors import ConfigError
from stoker.spec import FunctionDeployment

PLATFORM = "com.stoker.platform"  # which stoker platform owns a service or secret (several may share a swarm)
# Values of the POOL label on a warm pool replica's service: waiting, serving a function, stopped (kept for its logs).
POOL_GENERIC, POOL_CLAIMED, POOL_RETIRED = "generic", "claimed", "retired"
READY_PATH = "com.stoker.ready-path"  # on a service of a classic-watchdog image: /_/health (readiness.ready_path)
CODE = "com.stoker.code"  # on a service: the config holding its code (code.py); on such a config: "1"
STOKER_IMAGE = "com.stoker.base"  # set on the base image, inherited by every function image the builder makes
_SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# For images built on stoker's base: delay SIGTERM by STOKER_STOP_DELAY_S so every gateway sees the task leave
# (it polls the tasks) before the replica stops accepting; the replica then drains its own calls. Swarm has no
# preStop hook; this is the Kubernetes backend's preStop sleep, done by the replica's shell.
_DELAYED_STOP = (
    'python3 -m runtime & pid=$!; trap \'sleep "$STOKER_STOP_DELAY_S"; kill -TERM "$pid"\' TERM; '
    'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done; exit "$status"'
)


@dataclass(frozen=True)
class SwarmSettings:
    """``STOKER_SWARM_*`` settings of the swarm backend."""

    platform: str = "stoker"  # owner label value and service-name prefix
    network: str = "stoker-swarm-functions"  # attachable overlay network shared by functions and gateways
    route: str = AUTO  # auto | overlay | published (see the module docstring)
    stop_delay_s: float = 3.0  # how long a stopping task keeps accepting calls before it drains
    poll_s: float = 0.5  # how often the gateway reads services and tasks
    deploy_timeout_s: float = 120.0  # how long a deploy waits for a ready task
    docker: DockerSettings = field(default_factory=DockerSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> SwarmSettings:
        values = from_environ(cls, environ, "STOKER_SWARM_", skip=("docker",))
        settings = cls(**values, docker=DockerSettings.from_env(environ))
        for name in ("stop_delay_s", "poll_s", "deploy_timeout_s"):
            value = getattr(settings, name)
            if value < 0 or (name != "stop_delay_s" and value == 0):
                raise ConfigError(f"STOKER_SWARM_{name.upper()}: must be greater than zero, got {value:g}")
        if settings.route not in ROUTES:
            raise ConfigError(f"STOKER_SWARM_ROUTE: {settings.route!r} is not one of {', '.join(ROUTES)}")
        if not _SERVICE_NAME.match(settings.platform) or len(settings.platform) > 20:
            raise ConfigError(f"STOKER_SWARM_PLATFORM: {settings.platform!r} is not a DNS label of at most 20 chars")
        return settings


class MountedCode(Protocol):
    """Code mounted from a Swarm config (:class:`runtime.backends.swarm.code.SwarmCode`), as a service spec uses it."""

    @property
    def config(self) -> str: ...

    def reference(self, uid: str, gid: str) -> dict[str, Any]: ...

    def service_env(self) -> dict[str, str]: ...


def service_name(settings: SwarmSettings, dep_name: str, namespace: str) -> str:
    """The Swarm service of one function: ``<platform>-<name>`` (``-<namespace>`` outside the default one)."""
    import hashlib

    name = f"{settings.platform}-{dep_name}"
    if namespace != "openfaas-fn":
        name += f"-{namespace}"
    if len(name) > 63:  # Swarm's limit: keep it unique with a digest of the full name
        name = f"{name[:50]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
    return name


def service_labels(dep: FunctionDeployment, settings: SwarmSettings, version: str, created: float) -> dict[str, str]:
    """The function's own labels, then stoker's (which win): what a gateway needs to rebuild the function."""
    return {
        **dep.labels,
        PLATFORM: settings.platform,
        FUNCTION: dep.service,
        NAMESPACE: dep.namespace,
        VERSION: version,
        CREATED: f"{created:.6f}",
        DEPLOYMENT: json.dumps(dep.to_stored(), sort_keys=True),
    }


def replica_environment(dep: FunctionDeployment, settings: SwarmSettings) -> dict[str, str]:
    """The variables of a function's replica on Swarm, whether its service starts it or a pool replica becomes it."""
    return {**function_environment(dep), "port": str(PORT), "STOKER_STOP_DELAY_S": f"{settings.stop_delay_s:g}"}


def _constraints(dep: FunctionDeployment) -> list[str]:
    # OpenFaaS stack files write Swarm constraints already (node.role == worker, node.labels.x == y); Kubernetes
    # style "key=value" becomes a node label match.
    out = []
    for c in dep.constraints:
        if "==" in c or "!=" in c:
            out.append(c)
        elif "=" in c:
            key, _, value = c.partition("=")
            out.append(f"node.labels.{key.strip()} == {value.strip()}")
        else:
            out.append(c)
    return out


def service_spec(
    dep: FunctionDeployment,
    settings: SwarmSettings,
    *,
    version: str,
    created: float,
    replicas: int,
    stoker_image: bool,
    image_user: str,
    secrets: list[dict[str, Any]],
    code: MountedCode | None = None,
    ready_path: str = "/_/ready",
) -> dict[str, Any]:
    """Keyword arguments of ``APIClient.create_service`` for one function (pure: same input, same spec).

    ``secrets``: Swarm secret references (``{"SecretID", "SecretName"}``); their files are placed here. ``code``:
    the config holding the function's bundle when ``dep.image`` is the plain runtime image (code.py)."""
    fn = dep.settings
    labels = service_labels(dep, settings, version, created)
    env = {**replica_environment(dep, settings), **(code.service_env() if code else {})}
    if code:
        labels[CODE] = code.config
    if ready_path != "/_/ready":
        labels[READY_PATH] = ready_path
    user = image_user if image_user and image_user.split(":")[0] not in ("root", "0") else RUNTIME_USER
    uid, _, gid = user.partition(":")
    memory = function_memory(dep.limits.get("memory") or settings.docker.memory, "limits.memory")
    limits: dict[str, Any] = {"MemoryBytes": memory, "Pids": settings.docker.pids}
    if dep.limits.get("cpu"):
        limits["NanoCPUs"] = nano_cpus(dep.limits["cpu"], "limits.cpu")
    reservations: dict[str, Any] = {}
    if dep.requests.get("memory"):
        reservations["MemoryBytes"] = min(memory, function_memory(dep.requests["memory"], "requests.memory"))
    if dep.requests.get("cpu"):
        reservations["NanoCPUs"] = nano_cpus(dep.requests["cpu"], "requests.cpu")
    container = _container(dep.image, env, labels, user, settings, grace_s=settings.stop_delay_s + fn.timeout_s + 5)
    container["ReadOnly"] = dep.read_only_root  # writable only when the deployment says false; the rest stays hardened
    container["Secrets"] = [
        {**ref, "File": {"Name": f"{SECRETS_DIR}/{name}", "UID": uid, "GID": gid or uid, "Mode": 0o400}}
        for name, ref in zip(dep.secrets, secrets, strict=True)
    ]
    container["Configs"] = [code.reference(uid, gid or uid)] if code else []
    if stoker_image:
        _runtime_command(container)
    return {
        "name": service_name(settings, dep.service, dep.namespace),
        "labels": labels,
        "task_template": {
            "ContainerSpec": container,
            "Resources": {"Limits": limits, "Reservations": reservations},
            # Restarts of a crashing replica back off (Swarm's delay), so a crash loop does not burn the node.
            "RestartPolicy": {"Condition": "any", "Delay": int(2e9), "MaxAttempts": 0},
            "Placement": {"Constraints": _constraints(dep)},
            "Networks": [{"Target": settings.network}],
        },
        "mode": {"Replicated": {"Replicas": replicas}},
        "update_config": {
            "Parallelism": 1,
            "Delay": 0,
            "FailureAction": "rollback",
            "Monitor": int(5e9),
            "MaxFailureRatio": 0,
            "Order": "start-first",
        },
        "rollback_config": {"Parallelism": 1, "Delay": 0, "FailureAction": "pause", "Order": "start-first"},
        "endpoint_spec": _endpoint_spec(settings),
    }


POOL_KEY_FILE = "/run/secrets/stoker-pool-key"
POOL_WORKDIR = "/tmp/stoker-fn"
POOL_GRACE_S = 65.0  # a pool replica serves functions of any timeout: drain up to a minute


def pool_service_spec(settings: SwarmSettings, name: str, image: str, key_secret: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``create_service`` for one generic replica of the warm pool (runtime.replica.specialize):
    the runtime image in pool mode, hardened like any replica, its key (``key_secret``, a Swarm secret reference) as a
    file, one task that is not restarted (a dead pool replica is replaced by the pool, not revived generic).

    Limits are the default ones: only functions with those take pool replicas (pool.poolable)."""
    uid, _, gid = RUNTIME_USER.partition(":")
    env = {
        POOL_VAR: "1",
        KEY_FILE_VAR: POOL_KEY_FILE,
        DIR_VAR: POOL_WORKDIR,
        "STOKER_INSTANCE": name,
        "port": str(PORT),
        "STOKER_STOP_DELAY_S": f"{settings.stop_delay_s:g}",
    }
    labels = {PLATFORM: settings.platform, POOL: POOL_GENERIC}
    grace_s = settings.stop_delay_s + POOL_GRACE_S
    container = _container(image, env, labels, RUNTIME_USER, settings, grace_s)
    container["Secrets"] = [{**key_secret, "File": {"Name": POOL_KEY_FILE, "UID": uid, "GID": gid, "Mode": 0o400}}]
    _runtime_command(container)
    memory = memory_bytes(settings.docker.memory, "STOKER_DOCKER_MEMORY")
    return {
        "name": name,
        "labels": labels,
        "task_template": {
            "ContainerSpec": container,
            "Resources": {"Limits": {"MemoryBytes": memory, "Pids": settings.docker.pids}},
            "RestartPolicy": {"Condition": "none"},
            "Networks": [{"Target": settings.network}],
        },
        "mode": {"Replicated": {"Replicas": 1}},
        "endpoint_spec": _endpoint_spec(settings),
    }


def _container(
    image: str, env: dict[str, str], labels: dict[str, str], user: str, settings: SwarmSettings, grace_s: float
) -> dict[str, Any]:
    """The hardened ContainerSpec every replica gets: non-root, read-only root with a tmpfs /tmp, no capabilities."""
    return {
        "Image": image,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": labels,
        "User": user,
        "ReadOnly": True,
        "Mounts": [
            {
                "Type": "tmpfs",
                "Target": "/tmp",
                "TmpfsOptions": {"SizeBytes": memory_bytes(settings.docker.tmpfs_size, "tmpfs size"), "Mode": 0o1777},
            }
        ],
        "CapabilityDrop": ["ALL"],
        "Init": True,  # reaps zombies of handlers that spawn processes, forwards SIGTERM
        # Time to drain: the stop delay, then the calls in flight (each bounded by the function's timeout).
        "StopGracePeriod": int(grace_s * 1e9),
    }


def _runtime_command(container: dict[str, Any]) -> None:
    """For the runtime image (stoker's base): the delayed stop and a health check on /_/health."""
    container["Command"] = ["/bin/sh", "-c", _DELAYED_STOP]
    # Swarm counts a task as running (and an update proceeds) only once it is healthy: start-first then never
    # stops an old task before the new one listens. /_/health, not /_/ready: a busy replica (429) is healthy.
    probe = f"import urllib.request as u; u.urlopen('http://127.0.0.1:{PORT}{HEALTH_PATH}', timeout=2)"
    container["Healthcheck"] = {
        "Test": ["CMD", "python3", "-c", probe],
        "Interval": int(2e9),
        "Timeout": int(3e9),
        "Retries": 3,
        "StartPeriod": int(60e9),
    }


def _endpoint_spec(settings: SwarmSettings) -> dict[str, Any]:
    if settings.route == "published":
        # No published port given: the engine picks a free one per task (host mode), so replicas share a node.
        return {"Mode": "dnsrr", "Ports": [{"Protocol": "tcp", "TargetPort": PORT, "PublishMode": "host"}]}
    return {"Mode": "vip"}
