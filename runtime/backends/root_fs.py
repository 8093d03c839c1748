"""Whether a function's replicas have a read-only root filesystem, as its status reports it (never merely what the
deployment asked for).

The container backends (Docker, Swarm, Kubernetes) give every replica a read-only root with a writable ``/tmp``
unless the deployment says ``readOnlyRootFilesystem: false``; a deployment that does not say is read-only. Local
replicas are processes of this machine with no root filesystem of their own: never read-only, whatever is asked.
"""

from __future__ import annotations

from stoker.spec import FunctionDeployment

READ_ONLY_ROOTS = frozenset({"docker", "swarm", "kubernetes"})


def read_only_root(dep: FunctionDeployment, backend: str) -> bool:
    """What ``readOnlyRootFilesystem`` the status of ``dep`` on ``backend`` reports."""
    return backend in READ_ONLY_ROOTS and dep.read_only_root


def root_note(dep: FunctionDeployment, backend: str) -> str:
    """For the status message: a read-only root asked for where the backend cannot give one (empty otherwise)."""
    if dep.readOnlyRootFilesystem and backend not in READ_ONLY_ROOTS:
        return f"readOnlyRootFilesystem: the {backend} backend runs replicas without a root filesystem of their own"
    return ""
