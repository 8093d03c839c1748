"""Which way this gateway reaches function tasks (``STOKER_SWARM_ROUTE``), decided once at start.

Overlay addresses are reachable only from a container attached to the functions' overlay network; a gateway run on
a host (``stoker up --backend swarm``) must use the ports the tasks publish. The gateway finds out which it is: the
container it runs in (its id is in the source paths of the files Docker mounts on ``/etc/hostname`` and the like, listed
in ``/proc/self/mountinfo``; the hostname Docker gives a container is the fallback) and whether the
engine lists that container on the network. :func:`choose` decides from that, with no I/O.
"""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path
from typing import Any

from stoker.errors import ConfigError

logger = logging.getLogger(__name__)

AUTO, OVERLAY, PUBLISHED = "auto", "overlay", "published"
ROUTES = (AUTO, OVERLAY, PUBLISHED)
_CONTAINER_PATH = re.compile(r"/containers/([0-9a-f]{64})/")
_OWN_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
_SHORT_ID = re.compile(r"[0-9a-f]{12,64}")  # the hostname Docker gives a container: the start of its id


def container_ids(mountinfo: str) -> list[str]:
    """The ids of the containers whose own files are mounted on this process's ``/etc/hostname``, ``/etc/hosts``
    or ``/etc/resolv.conf`` (Docker bind-mounts them from ``.../containers/<id>/``). Only those mount points: a
    host's mount table lists every running container's ``.../containers/<id>/mounts/shm`` too."""
    found: list[str] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[4] not in _OWN_FILES:
            continue
        match = _CONTAINER_PATH.search(fields[3])
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def choose(requested: str, network: str, attached: bool) -> str:
    """The route to use: ``auto`` picks ``overlay`` when this gateway is on the functions' network and ``published``
    otherwise; ``overlay`` off that network is refused (no task address would ever answer)."""
    if requested == AUTO:
        return OVERLAY if attached else PUBLISHED
    if requested == OVERLAY and not attached:
        raise ConfigError(
            f"STOKER_SWARM_ROUTE=overlay: this gateway is not attached to the functions' overlay network {network!r} "
            "(it runs on a host, or in a container not on that network), so it cannot reach the replicas there; "
            "unset STOKER_SWARM_ROUTE (auto: published ports from a host) or set STOKER_SWARM_ROUTE=published, "
            "or run the gateway on that network (deploy/swarm)"
        )
    return requested


def attached(client: Any, network: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> bool:
    """Whether the container this process runs in is on ``network`` of this engine (False on a host)."""
    import docker.errors

    try:
        candidates = container_ids(mountinfo.read_text(errors="replace"))
    except OSError:
        candidates = []
    hostname = socket.gethostname()
    for ident in [*candidates, *([hostname] if _SHORT_ID.fullmatch(hostname) else [])]:
        try:
            container = client.containers.get(ident)
        except (docker.errors.NotFound, docker.errors.InvalidArgument, docker.errors.APIError):
            continue  # not a container of this engine (a host name, a nested engine's container)
        if not str(container.id).startswith(ident):
            continue  # a container *named* like that, not this one
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        return network in networks
    return False


def resolve(client: Any, requested: str, network: str) -> str:
    """:func:`choose` for this process; says which route it took and why."""
    if requested == PUBLISHED:
        return PUBLISHED  # nothing to find out: published ports are reachable from anywhere that reaches the nodes
    on_network = attached(client, network)
    route = choose(requested, network, on_network)
    where = f"on the overlay network {network!r}" if on_network else f"not on the overlay network {network!r}"
    logger.info("swarm route: %s (this gateway is %s; STOKER_SWARM_ROUTE=%s)", route, where, requested)
    if route == PUBLISHED:
        logger.info("swarm route: each replica publishes its port on its node's interfaces: firewall those ports")
    return route
