"""The docker backend's network: one bridge per platform, on which function containers cannot reach one another.

Every platform (every ``STOKER_HOME``) gets its own user-defined bridge, ``stoker-fn-<owner>``, created with
inter-container communication off (``com.docker.network.bridge.enable_icc=false``): the Engine then drops traffic
between two containers of that bridge, so a function cannot call another function's container (or a warm-pool
container) directly, bypassing the gateway. The gateway runs on the host and reaches every container's address
through the bridge: that traffic is the host's own, which ``enable_icc`` does not touch. The bridge's Linux interface
is named ``stk-<owner>`` (the first 11 characters), so an operator can write firewall rules for it (docs/docker.md).

``STOKER_DOCKER_NETWORK`` names a network instead (deploy/compose sets one it declares itself, because its gateway
is a container that must reach the functions across the bridge, which ``enable_icc=false`` would forbid). A named
network that does not exist is created like the default one; one that exists is used as it is, with a warning when
its containers can reach one another.

What ``enable_icc`` does not block: the host's own services listening on all interfaces (0.0.0.0), reachable at the
bridge's gateway address, and whatever the host routes to (the internet, the host's networks). See docs/docker.md.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

logger = logging.getLogger(__name__)

ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"
NETWORK_LABEL = "com.stoker.network"
OWNER_LABEL = "com.stoker.owner"


def default_name(owner: str) -> str:
    """The network of the platform whose owner id (hash of its STOKER_HOME) is ``owner``."""
    return f"stoker-fn-{owner}"


def bridge_name(owner: str) -> str:
    """The Linux interface of that network (interface names have at most 15 characters)."""
    return f"stk-{owner[:11]}"


def create_options(owner: str) -> dict[str, Any]:
    """Keyword arguments of ``networks.create`` for an isolated bridge."""
    return {
        "driver": "bridge",
        "options": {ICC_OPTION: "false", BRIDGE_NAME_OPTION: bridge_name(owner)},
        "labels": {NETWORK_LABEL: "1", OWNER_LABEL: owner},
    }


def isolation_problem(attrs: dict[str, Any]) -> str:
    """Why containers of this (existing) network can reach one another, or "" when they cannot."""
    if attrs.get("Driver") != "bridge":
        return f"it is a {attrs.get('Driver')!r} network, not a bridge with inter-container traffic off"
    if (attrs.get("Options") or {}).get(ICC_OPTION) != "false":
        return f"it was created without {ICC_OPTION}=false, so function containers can reach one another"
    return ""


def ensure(client: Any, name: str, owner: str) -> bool:
    """Make sure network ``name`` exists; return True when this call created it."""
    import docker.errors

    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            client.networks.create(name, **create_options(owner))
            return True
        except docker.errors.APIError as exc:
            if getattr(exc, "status_code", 0) != 409:  # 409: another gateway created it meanwhile
                raise
            network = client.networks.get(name)
    problem = isolation_problem(network.attrs)
    if problem:
        logger.warning("stoker: docker network %s: %s (see docs/docker.md)", name, problem)
    return False


def remove_if_ours(client: Any, name: str, owner: str) -> None:
    """Remove the network when this platform created it and nothing is attached any more (else leave it)."""
    import docker.errors

    with contextlib.suppress(docker.errors.DockerException):
        network = client.networks.get(name)
        labels = network.attrs.get("Labels") or {}
        if labels.get(OWNER_LABEL) == owner and not network.attrs.get("Containers"):
            network.remove()
