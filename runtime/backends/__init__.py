"""Orchestrator backends behind one interface (:class:`runtime.backends.base.Backend`)."""

from __future__ import annotations

from runtime.backends.base import Backend
from stoker.config import Config, ConfigError


def create_backend(config: Config, key: bytes) -> Backend:
    """The backend named by ``config.backend``."""
    if config.backend == "local":
        from runtime.backends.local.backend import LocalBackend

        return LocalBackend(config, key)
    if config.backend == "kubernetes":
        from runtime.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(config, key)
    if config.backend == "docker":
        from runtime.backends.docker.backend import DockerBackend

        return DockerBackend(config, key)
    if config.backend == "swarm":
        from runtime.backends.swarm.backend import SwarmBackend

        return SwarmBackend(config, key)
    raise ConfigError(f"STOKER_BACKEND: the {config.backend!r} backend is not available in this version yet")
