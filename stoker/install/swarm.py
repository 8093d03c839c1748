"""The platform as a Docker Swarm stack (``docker stack deploy -c - <name>``).

Everything is named after the install: the stack, the platform (``STOKER_SWARM_PLATFORM``, which scopes every
function service, pool replica, secret and code config the gateways and the controller create or clean up), the
functions network ``<name>-functions`` and the secrets ``<name>-platform-key``, ``<name>-admin-password`` and
``<name>-redis-password`` (made by ``stoker install swarm --apply``, or by hand: docs/install.md). Secrets reach the
processes as files, read into their environment by the entrypoint, never in a service spec. Overlay networks are
encrypted. Redis has a password and a memory bound.

Entrypoint (``--entrypoint``): ``mesh`` publishes the gateway's port through the routing mesh (any node, any number
of gateways, start-first updates); it needs IPVS in the kernel. ``host`` (the default; no IPVS needed, like our CI
machines) runs ``stoker edge`` (gateway/edge.py) on every manager, publishing the port in host mode (a fixed port on
every manager), in front of ``--gateway-replicas`` gateways that publish nothing: the edge finds them by name
(``endpoint_mode: dnsrr``: the name resolves to every task), sends calls to the ready ones, sends again what never
reached one, and holds calls while none is ready. Gateways update start-first (no host port to share), and a stopping
one turns unready and serves on for ``STOKER_SHUTDOWN_DELAY_S``, so an upgrade costs no call; a killed one costs at
most its calls in flight that are not GET or HEAD.
"""

from __future__ import annotations

from typing import Any

from runtime.backends.swarm.config import PLATFORM
from stoker.install.compose import SHUTDOWN_DELAY_S, edge_service, healthcheck, redis_command
from stoker.install.values import Values

SECRETS_DIR = "/run/secrets"


def secret_names(values: Values) -> dict[str, str]:
    """The install's Docker secrets by role (the Redis password only when the install runs its own Redis)."""
    names = {"platform-key": f"{values.name}-platform-key", "admin-password": f"{values.name}-admin-password"}
    if not values.redis_url:
        names["redis-password"] = f"{values.name}-redis-password"
    return names


def _entry(values: Values, args: str) -> list[str]:
    """Read the secrets into the environment, then become the stoker process (signals reach it directly)."""
    redis = (
        f'STOKER_REDIS_URL="redis://:$$(cat {SECRETS_DIR}/redis-password)@redis:6379/0"'
        if not values.redis_url
        else f"STOKER_REDIS_URL={values.redis_url!r}"
    )
    return ["/bin/sh", "-c", f"export {redis}; exec python3 -m stoker {args}"]


def _common_env(values: Values) -> dict[str, str]:
    return {
        "STOKER_HOME": "/tmp/stoker",
        "STOKER_SWARM_PLATFORM": values.name,
        "STOKER_SWARM_NETWORK": f"{values.name}-functions",
        "STOKER_SWARM_ROUTE": "overlay",
        "STOKER_DOCKER_MEMORY": values.function_memory,
        "STOKER_DOCKER_BASE_IMAGE": values.runtime_image,
        "STOKER_PLATFORM_KEY_FILE": f"{SECRETS_DIR}/platform-key",
    }


def _secret_refs(values: Values, roles: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"source": role, "target": role, "uid": "10001", "mode": 0o400}
        for role in roles
        if role in secret_names(values)
    ]


def render(values: Values) -> dict[str, Any]:
    user = f"10001:{values.docker_gid}"
    mesh = values.entrypoint == "mesh"
    admin = f'STOKER_ADMIN_PASSWORD="$$(cat {SECRETS_DIR}/admin-password)"'
    gateway_entry = _entry(values, "up --backend swarm --host 0.0.0.0 --port 8080")
    gateway_entry[-1] = f"export {admin}; " + gateway_entry[-1]
    gateway: dict[str, Any] = {
        "image": values.platform_image,
        "entrypoint": gateway_entry,
        "environment": {
            **_common_env(values),
            "STOKER_AUTOSCALE": "false",
            "STOKER_SHUTDOWN_DELAY_S": SHUTDOWN_DELAY_S,  # unready first, so the edge stops sending before it stops
        },
        "secrets": _secret_refs(values, ("platform-key", "admin-password", "redis-password")),
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock"],
        "user": user,
        "networks": ["platform", "functions"],
        "healthcheck": healthcheck(8080, "5s", "4s"),
        "stop_grace_period": "45s",
        "deploy": {
            "replicas": values.gateway_replicas,
            **({} if mesh else {"endpoint_mode": "dnsrr"}),  # "gateway" resolves to every task, for the edge
            "placement": {"constraints": ["node.role == manager"]},  # only managers can create services
            "update_config": {
                "order": "start-first",
                "failure_action": "rollback",
                "parallelism": 1,
                "monitor": "10s",
            },
            "restart_policy": {"condition": "any", "delay": "2s"},
            "resources": {"limits": {"memory": "512M"}},
        },
    }
    controller: dict[str, Any] = {
        "image": values.platform_image,
        "entrypoint": _entry(values, "controller --backend swarm --host 0.0.0.0 --port 8081"),
        "environment": {**_common_env(values), "STOKER_LEADER_TTL_S": "15", "STOKER_POOL_SIZE": str(values.pool_size)},
        "secrets": _secret_refs(values, ("platform-key", "redis-password")),
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock"],
        "user": user,
        "networks": ["platform", "functions"],
        "healthcheck": healthcheck(8081, "10s", "5s"),
        "deploy": {
            "replicas": values.controller_replicas,
            "endpoint_mode": "dnsrr",
            "placement": {"constraints": ["node.role == manager"]},
            "restart_policy": {"condition": "any", "delay": "2s"},
            "resources": {"limits": {"memory": "256M"}},
        },
    }
    services: dict[str, Any] = {"gateway": gateway, "controller": controller}
    if mesh:
        gateway["ports"] = [{"target": 8080, "published": values.port, "protocol": "tcp", "mode": "ingress"}]
    else:
        services = {"edge": _edge(values), **services}
    volumes: dict[str, Any] = {}
    if not values.redis_url:
        services["redis"] = {
            "image": values.redis_image,
            "entrypoint": redis_command(values, f"$$(cat {SECRETS_DIR}/redis-password)"),
            "secrets": _secret_refs(values, ("redis-password",)),
            "volumes": ["redis-data:/data"],
            "networks": ["platform"],
            "deploy": {
                "endpoint_mode": "dnsrr",  # "redis" resolves to the task itself: no virtual IP, no IPVS needed
                "replicas": 1,
                "restart_policy": {"condition": "any", "delay": "2s"},
            },
        }
        volumes["redis-data"] = {}
    encrypted = {"encrypted": ""}
    return {
        "version": "3.8",
        "services": services,
        "networks": {
            "platform": {"driver": "overlay", "driver_opts": encrypted},
            "functions": {
                "name": f"{values.name}-functions",  # the gateways attach function services to it by this name
                "driver": "overlay",
                "attachable": True,
                "driver_opts": encrypted,
                "labels": {PLATFORM: values.name},
            },
        },
        "volumes": volumes,
        "secrets": {role: {"external": True, "name": name} for role, name in secret_names(values).items()},
    }


def _edge(values: Values) -> dict[str, Any]:
    """``stoker edge`` on every manager, the install's fixed port on each (host mode), in front of the gateways."""
    return {
        **edge_service(values, "gateway:8080"),
        "ports": [{"target": 8080, "published": values.port, "protocol": "tcp", "mode": "host"}],
        "user": "10001",
        "networks": ["platform"],
        "deploy": {
            "mode": "global",
            "placement": {"constraints": ["node.role == manager"]},
            # Two tasks cannot hold one host port: the edge is replaced stop-first, which drops its connections,
            # so an upgrade keeps the running edge's image (--edge-image; docs/install.md).
            "update_config": {"order": "stop-first", "failure_action": "rollback", "parallelism": 1},
            "restart_policy": {"condition": "any", "delay": "1s"},
            "resources": {"limits": {"memory": "256M"}},
        },
    }


HEADER = """\
stoker as a Docker Swarm stack (docs/install.md), generated by:  stoker install swarm{flags}
Create the secrets first (or let `stoker install swarm --apply` do all of it):
{secrets}
  DOCKER_GID=$(stat -c %g /var/run/docker.sock) docker stack deploy --resolve-image never -c THIS_FILE {name}
Remove with `stoker uninstall swarm --name {name}` (`docker stack rm` leaves the function services it did not make)."""
