"""The platform on one machine with Docker Compose, as Debian's ``docker-compose`` 1.29 reads it (no top-level
``name:``; the project name is the install's name, given with ``-p``).

The gateway runs functions as containers through the Docker backend, so it alone gets the Docker socket (a local Unix
socket, never the API over TCP). Its state lives under ``/var/lib/stoker/<name>`` on a volume the platform image
creates owned by uid 10001 (so a new volume is writable by the gateway), and that path is also what tells its
containers and volumes from another install's on the same engine. Redis runs with a password (so not in protected
mode) and a memory bound. Passwords come from the environment (``.env`` beside the file with ``--apply``).

Clients reach the platform through ``edge`` (``stoker edge``, gateway/edge.py), the one published port, never the
gateway itself: when the gateway is replaced (an upgrade recreates it), the edge holds calls until the new one answers
``/readyz`` instead of letting them fail. There is one gateway: with the docker backend it owns its function
containers and its state (one writer at a time), so two could not share them. A stopping gateway turns unready and
serves on for ``STOKER_SHUTDOWN_DELAY_S`` (longer than the edge's check interval), so the edge has stopped sending to
it before it stops accepting.
"""

from __future__ import annotations

from typing import Any

from stoker.install.values import Values

HEALTHCHECK = "import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)"
# The edge is alive while it accepts connections; its /healthz says whether a gateway is ready, which is not the
# edge's fault (restarting it would not help and would drop connections).
EDGE_HEALTHCHECK = "import socket; socket.create_connection(('127.0.0.1', {port}), 3).close()"
SHUTDOWN_DELAY_S = "2"  # gateways serve on this long once told to stop; well above the edge's 0.5 s checks
EDGE_CHECK_INTERVAL_S = "0.5"


def healthcheck(port: int, interval: str, timeout: str) -> dict[str, Any]:
    """A Compose/stack healthcheck that asks a platform process's /healthz (the images have python3, not curl)."""
    return {
        "test": ["CMD", "python3", "-c", HEALTHCHECK.format(port=port)],
        "interval": interval,
        "timeout": timeout,
        "retries": 3,
        "start_period": "30s",
    }


def edge_healthcheck(port: int) -> dict[str, Any]:
    return {
        "test": ["CMD", "python3", "-c", EDGE_HEALTHCHECK.format(port=port)],
        "interval": "10s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "10s",
    }


def edge_service(values: Values, upstream: str) -> dict[str, Any]:
    """``stoker edge`` in front of the gateways at ``upstream`` (host:port, resolved to every gateway)."""
    return {
        "image": values.edge,
        "entrypoint": ["python3", "-m", "stoker"],
        "command": ["edge", "--upstream", upstream, "--host", "0.0.0.0", "--port", "8080"],
        "environment": {"STOKER_EDGE_CHECK_INTERVAL_S": EDGE_CHECK_INTERVAL_S, "STOKER_EDGE_HOLD_S": "60"},
        "healthcheck": edge_healthcheck(8080),
        "stop_grace_period": "70s",  # answers in flight finish
    }


def redis_url(values: Values, host: str, password: str) -> str:
    return values.redis_url or f"redis://:{password}@{host}:6379/0"


def redis_command(values: Values, password_expr: str) -> list[str]:
    """redis-server with a password (never protected-mode refusals), append-only persistence and a memory bound
    with no eviction (queued calls are never dropped silently: a full Redis refuses new ones)."""
    script = (
        f'exec redis-server --requirepass "{password_expr}" --appendonly yes --save "" --dir /data '
        f"--maxmemory {values.redis_maxmemory} --maxmemory-policy noeviction"
    )
    return ["/bin/sh", "-c", script]


def render(values: Values) -> dict[str, Any]:
    need = "set {} (see docs/install.md)"
    env: dict[str, str] = {
        "STOKER_HOME": f"/var/lib/stoker/{values.name}",
        "STOKER_REDIS_URL": redis_url(
            values, "redis", "${STOKER_REDIS_PASSWORD:?" + need.format("STOKER_REDIS_PASSWORD") + "}"
        ),
        "STOKER_DOCKER_NETWORK": f"{values.name}-functions",
        "STOKER_DOCKER_MEMORY": values.function_memory,
        "STOKER_DOCKER_BASE_IMAGE": values.runtime_image,
        "STOKER_POOL_SIZE": str(values.pool_size),
        "STOKER_ADMIN_PASSWORD": "${STOKER_ADMIN_PASSWORD:?" + need.format("STOKER_ADMIN_PASSWORD") + "}",
        "STOKER_SHUTDOWN_DELAY_S": SHUTDOWN_DELAY_S,
    }
    gateway: dict[str, Any] = {
        "image": values.platform_image,
        "entrypoint": ["python3", "-m", "stoker"],
        "command": ["up", "--backend", "docker", "--host", "0.0.0.0", "--port", "8080"],
        "environment": env,
        # The image runs as uid 10001; the socket's group is what lets it start containers (stat -c %g the socket).
        "group_add": [values.docker_gid],
        "volumes": ["/var/run/docker.sock:/var/run/docker.sock", "home:/var/lib/stoker"],
        "networks": ["platform", "functions"],
        "healthcheck": healthcheck(8080, "10s", "5s"),
        "stop_grace_period": "45s",  # unready, then in-flight calls drain (STOKER_DRAIN_TIMEOUT_S), then replicas go
        "restart": "unless-stopped",
    }
    edge = {
        **edge_service(values, "gateway:8080"),
        "ports": [f"{values.bind}:{values.port}:8080"],
        "networks": ["platform"],
        "restart": "unless-stopped",
    }
    services: dict[str, Any] = {"edge": edge, "gateway": gateway}
    volumes: dict[str, Any] = {"home": {}}
    if not values.redis_url:
        gateway["depends_on"] = ["redis"]
        services["redis"] = {
            "image": values.redis_image,
            "command": redis_command(values, "$$STOKER_REDIS_PASSWORD"),
            "environment": {
                "STOKER_REDIS_PASSWORD": "${STOKER_REDIS_PASSWORD:?" + need.format("STOKER_REDIS_PASSWORD") + "}"
            },
            "volumes": ["redis-data:/data"],
            "networks": ["platform"],
            "restart": "unless-stopped",
        }
        volumes["redis-data"] = {}
    return {
        "version": "2.4",
        "services": services,
        "networks": {
            "platform": {},
            "functions": {"name": f"{values.name}-functions", "labels": {"com.stoker.network": "1"}},
        },
        "volumes": volumes,
    }


HEADER = """\
stoker on one machine with Docker Compose (docs/install.md), generated by:  stoker install compose{flags}
Works with Debian's docker-compose 1.29 and with `docker compose`:
  export STOKER_ADMIN_PASSWORD=... STOKER_REDIS_PASSWORD=... DOCKER_GID=$(stat -c %g /var/run/docker.sock)
  docker-compose -p {name} -f THIS_FILE up -d
The port (the edge, in front of the gateway) is published on {bind} only: put a TLS proxy in front to serve other
machines (docs/security.md). Upgrade: the same command with the new images (docs/install.md)."""
