"""The one set of values every install target renders from, validated with a message naming the flag.

``name`` is the install's one name: the Compose project, the Swarm stack and platform (``STOKER_SWARM_PLATFORM``),
the Kubernetes namespace. Everything an install owns is named after it, so two installs on one engine or cluster
never touch each other's objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from stoker import __version__
from stoker.errors import ConfigError

TARGETS = ("compose", "swarm", "kubernetes")
ENTRYPOINTS = ("host", "mesh")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(@sha256:[0-9a-f]{64})?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
REDIS_VERSION = "7.0.15"  # the redis-server the offline Redis image carries (deploy/swarm/build-images.sh --redis)


@dataclass(frozen=True)
class Values:
    """What an install is made of. Images are pinned references (a tag or a digest, never ``latest``)."""

    target: str
    name: str = "stoker"
    platform_image: str = f"stoker/platform:{__version__}"
    runtime_image: str = f"stoker/runtime:{__version__}"  # what source deploys and the warm pool run
    redis_image: str = f"stoker/redis:{REDIS_VERSION}"
    # Compose, Swarm (host entrypoint): the image of `stoker edge`, the balancer in front of the gateways; empty: the
    # platform image. `--apply` keeps the running edge's image on an upgrade (its restart would drop connections).
    edge_image: str = ""
    redis_url: str = ""  # an external Redis (its password in the URL); empty: the install runs its own
    redis_maxmemory: str = "256mb"
    gateway_replicas: int = 2
    controller_replicas: int = 2
    pool_size: int = 2
    function_memory: str = "512Mi"  # the default limit of a function that sets none
    port: int = 8080  # where the gateway is published (Compose, Swarm)
    bind: str = "127.0.0.1"  # Compose: the address the port is published on
    entrypoint: str = "host"  # Swarm: host (a fixed port on every manager) or mesh (the routing mesh, needs IPVS)
    docker_gid: str = "${DOCKER_GID:-999}"  # Compose, Swarm: the group owning /var/run/docker.sock
    functions_namespace: str = ""  # Kubernetes; empty: openfaas-fn for the install "stoker", else <name>-fn
    ingress_host: str = ""  # Kubernetes: an Ingress with TLS (cert-manager) for this host; empty: none
    service_monitor: bool = False  # Kubernetes: a prometheus-operator ServiceMonitor for gateway and controller
    service_monitor_labels: str = ""  # Kubernetes: k=v,... on it, for a Prometheus that selects by label

    def __post_init__(self) -> None:
        if not self.functions_namespace:
            default = "openfaas-fn" if self.name == "stoker" else f"{self.name}-fn"
            object.__setattr__(self, "functions_namespace", default)
        self.validate()

    def validate(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target: {self.target!r} is not one of {', '.join(TARGETS)}")
        if not _NAME.match(self.name) or len(self.name) > 20:
            raise ConfigError(f"--name: {self.name!r} is not a DNS label of at most 20 characters")
        if not _NAME.match(self.functions_namespace) or len(self.functions_namespace) > 63:
            raise ConfigError(f"--functions-namespace: {self.functions_namespace!r} is not a namespace name")
        if self.functions_namespace == self.name:
            raise ConfigError("--functions-namespace: must differ from the platform's namespace (--name)")
        for flag in ("platform_image", "runtime_image", "redis_image", "edge_image"):
            ref = getattr(self, flag)
            if flag == "edge_image" and not ref:
                continue
            if not _IMAGE.match(ref) or ":" not in ref.rsplit("/", 1)[-1] or ref.endswith(":latest"):
                raise ConfigError(f"--{flag.replace('_', '-')}: {ref!r} is not a pinned image (name:tag or @sha256)")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://")):
            raise ConfigError(f"--redis-url: {self.redis_url!r} is not a redis:// URL")
        for flag in ("gateway_replicas", "controller_replicas"):
            if not 1 <= getattr(self, flag) <= 100:
                raise ConfigError(f"--{flag.replace('_', '-')}: must be 1 to 100, got {getattr(self, flag)}")
        if not 0 <= self.pool_size <= 100:
            raise ConfigError(f"--pool-size: must be 0 to 100, got {self.pool_size}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port: {self.port} is not a TCP port")
        if self.entrypoint not in ENTRYPOINTS:
            raise ConfigError(f"--entrypoint: {self.entrypoint!r} is not one of {', '.join(ENTRYPOINTS)}")
        if not re.match(r"^[0-9]+(mb|gb|kb)?$", self.redis_maxmemory):
            raise ConfigError(f"--redis-maxmemory: {self.redis_maxmemory!r} is not a Redis size (256mb, 1gb)")
        if not re.match(r"^[0-9]+(Ki|Mi|Gi)$", self.function_memory):
            raise ConfigError(f"--function-memory: {self.function_memory!r} is not a size like 512Mi")
        if self.ingress_host and not re.match(r"^[a-z0-9.-]+$", self.ingress_host):
            raise ConfigError(f"--ingress-host: {self.ingress_host!r} is not a host name")
        self.monitor_labels()

    def monitor_labels(self) -> dict[str, str]:
        """``--service-monitor-labels`` as a dict (Kubernetes label keys and values, else a ConfigError)."""
        labels: dict[str, str] = {}
        for item in filter(None, self.service_monitor_labels.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value) or len(value) > 63:
                raise ConfigError(f"--service-monitor-labels: {item!r} is not a Kubernetes label key=value")
            labels[key] = value
        return labels

    @property
    def edge(self) -> str:
        """The edge's image."""
        return self.edge_image or self.platform_image

    @property
    def labels(self) -> dict[str, str]:
        """On every object the install creates itself (Swarm secrets, Kubernetes objects): what uninstall removes."""
        return {"app.kubernetes.io/part-of": "stoker", "app.kubernetes.io/instance": self.name}

    def with_(self, **changes: Any) -> Values:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if k in known and v is not None})


INSTALL_LABEL = "com.stoker.install"  # Swarm: on the secrets `stoker install swarm --apply` creates


# The values a command line can set, with what each means (``stoker install --NAME``; rendered headers repeat them).
FLAGS: dict[str, tuple[type, str]] = {
    "name": (str, "the install's name: Compose project, Swarm stack and platform, Kubernetes namespace (stoker)"),
    "platform_image": (str, "gateway and controller image, pinned"),
    "runtime_image": (str, "the runtime image source deploys and the warm pool run, pinned"),
    "redis_image": (str, "the Redis image, pinned"),
    "edge_image": (str, "Compose, Swarm: the edge's image (default: the platform image; --apply keeps a running one)"),
    "redis_url": (str, "use this Redis (password in the URL) instead of running one"),
    "redis_maxmemory": (str, "Redis memory bound (256mb)"),
    "gateway_replicas": (int, "gateways (Kubernetes, Swarm)"),
    "controller_replicas": (int, "controllers: one leads, the others stand by"),
    "pool_size": (int, "warm generic replicas"),
    "function_memory": (str, "default memory limit of a function (512Mi)"),
    "port": (int, "published gateway port (Compose, Swarm)"),
    "bind": (str, "Compose: address the port is published on (127.0.0.1)"),
    "entrypoint": (str, "Swarm: host (a fixed port on each manager) or mesh (routing mesh, needs IPVS)"),
    "docker_gid": (str, "group of /var/run/docker.sock (default: $DOCKER_GID at deploy time)"),
    "functions_namespace": (str, "Kubernetes: namespace of the functions"),
    "ingress_host": (str, "Kubernetes: an Ingress with TLS for this host"),
    "service_monitor": (bool, "Kubernetes: a prometheus-operator ServiceMonitor scraping gateway and controller"),
    "service_monitor_labels": (str, "Kubernetes: labels on the ServiceMonitor, k=v,... (release=prometheus)"),
}
