"""Orchestrator backends behind one interface (:class:`runtime.backends.base.Backend`).

The shared modules sit here (interface, slots, pool, secrets, logs, readiness, restarts, containers); each
orchestrator is a folder of its own (``local/``, ``docker/``, ``swarm/``, ``kubernetes/``) that imports only these,
never another family. A family is imported by name from :data:`BACKENDS` when it is chosen, so the gateway loads
only the one it runs (and its client library).
"""

from __future__ import annotations

import importlib

from runtime.backends.base import Backend
from stoker.config import Config

BACKENDS = {
    "local": "runtime.backends.local.backend:LocalBackend",
    "docker": "runtime.backends.docker.backend:DockerBackend",
    "swarm": "runtime.backends.swarm.backend:SwarmBackend",
    "kubernetes": "runtime.backends.kubernetes.backend:KubernetesBackend",
}


def create_backend(config: Config, key: bytes) -> Backend:
    """The backend named by ``config.backend`` (validated by :class:`Config`: one of :data:`BACKENDS`)."""
    module, _, name = BACKENDS[config.backend].partition(":")
    backend: Backend = getattr(importlib.import_module(module), name)(config, key)
    return backend
