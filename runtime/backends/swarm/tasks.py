"""Reading Swarm services and tasks (pure functions over the Engine API's JSON, no calls).

A task is a routing candidate when Swarm runs it and wants it running; its address is its IP on the functions'
overlay network (``overlay`` route) or its node's address and the port the engine published for it (``published``).
The gateway still confirms ``/_/ready`` itself before it routes to a candidate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runtime.backends.containers import CREATED, DEPLOYMENT, VERSION
from runtime.contract import LOAD_ERROR_PREFIX, PORT
from stoker.errors import StokerError
from stoker.spec import FunctionDeployment

_FAILED = ("failed", "rejected", "orphaned")


@dataclass(frozen=True)
class Candidate:
    """A running task of a function and where to reach it."""

    task: str
    version: str
    host: str
    port: int


def deployment_of(service: dict[str, Any]) -> tuple[FunctionDeployment, float, int] | None:
    """The deployment a service runs, its creation time and desired replicas; None for a foreign service."""
    labels = service.get("Spec", {}).get("Labels") or {}
    try:
        dep = FunctionDeployment.from_stored(json.loads(labels[DEPLOYMENT]))
    except (KeyError, ValueError, StokerError):
        return None
    replicas = int(((service["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 0))
    return dep, float(labels.get(CREATED, "0") or 0), replicas


def task_version(task: dict[str, Any]) -> str:
    return str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels", {}).get(VERSION, ""))


def candidate(task: dict[str, Any], route: str, network: str, nodes: dict[str, str]) -> Candidate | None:
    """Where to reach a task Swarm runs and wants running, or None."""
    status = task.get("Status") or {}
    if task.get("DesiredState") != "running" or status.get("State") != "running":
        return None
    if route == "published":
        ports = (status.get("PortStatus") or {}).get("Ports") or []
        port = next((p.get("PublishedPort") for p in ports if p.get("TargetPort") == PORT), None)
        host = nodes.get(task.get("NodeID", ""), "")
        if not port or not host:
            return None
        return Candidate(task["ID"], task_version(task), host, int(port))
    for attachment in task.get("NetworksAttachments") or []:
        spec = (attachment.get("Network") or {}).get("Spec") or {}
        if spec.get("Name") == network and attachment.get("Addresses"):
            return Candidate(task["ID"], task_version(task), attachment["Addresses"][0].split("/")[0], PORT)
    return None


def node_address(node: dict[str, Any]) -> str:
    """How a gateway reaches a node's published ports (the local node's may be reported as 0.0.0.0)."""
    addr = str((node.get("Status") or {}).get("Addr") or "")
    return "127.0.0.1" if addr in ("", "0.0.0.0") else addr


def failure(task: dict[str, Any]) -> str:
    """Why a task failed ("" when it did not): Swarm's error and the container's exit code."""
    status = task.get("Status") or {}
    state = status.get("State", "")
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if state not in _FAILED and not (state in ("complete", "shutdown") and code not in (None, 0, 143)):
        return ""
    if state in ("shutdown", "complete") and task.get("DesiredState") != "running":
        return ""  # stopped on purpose (scale-down, update)
    text = status.get("Err") or status.get("Message") or state
    return f"{text} (exit code {code})" if code not in (None, 0) else str(text)


def load_error(log_lines: list[str]) -> str:
    """The import error a replica printed before it exited (file and line of the handler), or ""."""
    for line in reversed(log_lines):
        _, found, rest = line.partition(LOAD_ERROR_PREFIX)
        if found:
            return rest.strip() or "the handler could not be loaded"
    return ""
