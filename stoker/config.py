"""The platform's one configuration object, read from ``STOKER_*`` variables and CLI flags.

``Config.from_env(environ, **overrides)`` validates every value and raises :class:`ConfigError` naming the variable
and what is wrong. It has no side effects: creating folders and credentials happens in :mod:`stoker.credentials`
at startup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoker.callback_policy import CallbackPolicy
from stoker.envsettings import from_environ
from stoker.errors import ConfigError
from stoker.forwarded import TrustedProxies
from stoker.logconfig import FORMATS

BACKENDS = ("local", "docker", "swarm", "kubernetes")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_GATEWAY = "http://127.0.0.1:8080"


def default_home(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get("STOKER_HOME") or Path.home() / ".stoker").expanduser()


def gateway_url(environ: Mapping[str, str] = os.environ, fallback: str = "") -> str:
    """Where the CLI and SDK find the gateway: ``STOKER_GATEWAY``, then ``OPENFAAS_URL``, then where a running
    ``stoker up`` recorded it in ``$STOKER_HOME``, then ``fallback`` (a stack file's ``provider.gateway``), then
    the default."""
    from stoker import gatewayrecord

    url = environ.get("STOKER_GATEWAY") or environ.get("OPENFAAS_URL") or gatewayrecord.read(default_home(environ))
    return (url or fallback or DEFAULT_GATEWAY).rstrip("/")


@dataclass(frozen=True)
class Config:
    home: Path
    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "local"
    admin_password: str = ""  # empty: read or generate $STOKER_HOME/credentials
    max_body_bytes: int = 20 * 1024 * 1024
    max_bundle_bytes: int = 50 * 1024 * 1024
    # JSON bodies of the management API (see docs/security.md): the whole body (a deployment may add its base64
    # source to this), and how deep arrays and objects may nest.
    max_json_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    max_bundle_files: int = 10_000  # members of a code bundle (413 beyond)
    # The public edge (docs/security.md, "Limits at the edge"); the replicas have the same limits, set apart.
    header_timeout_s: float = 10.0  # a request head must arrive within this (408, or closed when nothing came)
    max_header_bytes: int = 64 * 1024  # request line and headers (431 beyond)
    max_connections: int = 0  # client connections open at once; 0: derived from the open-files limit at start
    max_inflight_body_bytes: int = 256 * 1024 * 1024  # request bodies held in memory at once (503 beyond)
    # How long an idle keep-alive client connection stays open. Above Go's 90 s (IdleConnTimeout of its default
    # client, which faas-cli and the OpenFaaS certifier use) so that such clients close first and never reuse a
    # connection the gateway is closing; OpenFaaS's own gateway keeps 60 s. Idle connections still make room at
    # STOKER_MAX_CONNECTIONS (the oldest is closed first).
    keepalive_timeout_s: float = 120.0
    upstream_timeout_s: float = 300.0  # ceiling for one proxied call; each function's own timeout applies first
    ready_wait_s: float = 30.0  # how long an invocation waits for a ready replica before 503
    drain_timeout_s: float = 30.0  # how long a stopping replica may take to finish its work
    # On SIGTERM the gateway first answers /readyz 503 and keeps serving every request, old and new, for this long,
    # so a load balancer checking /readyz stops sending it calls before it stops accepting (docs/install.md).
    # 0 (the default, for `stoker up` on a laptop): stop accepting at once.
    shutdown_delay_s: float = 0.0
    log_lines: int = 2000  # log lines kept in memory per function
    python: str = ""  # interpreter for local replicas; empty: the one running stoker
    # The bundle-signing key, hex, from this file (a Docker or Kubernetes secret shared by every gateway replica);
    # empty: $STOKER_HOME/platform.key, created on first start.
    platform_key_file: str = ""
    log_format: str = "text"  # text | json: how diagnostics are written to stderr (stoker/logconfig.py)
    # Autoscaling (see docs/autoscaling.md); per-function target, bounds and scale to zero come from labels.
    autoscale: bool = True  # run the autoscaler loop (scale from zero on a request happens either way)
    autoscale_tick_s: float = 1.0  # how often the loop reads the counters and decides
    stable_window_s: float = 60.0  # averaging window for normal decisions (and the least time before scale-down)
    panic_window_s: float = 6.0  # short window that scales up fast when load reaches panic_threshold x target
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0  # at most this many times the ready replicas per decision
    max_scale_down_rate: float = 2.0  # at least ready / this many replicas per decision
    wait_queue_size: int = 1000  # requests that may wait per function for a replica before 503
    pool_size: int = 2  # warm generic replicas kept ready (0: no pool)
    # Kubernetes backend (see docs/kubernetes.md)
    k8s_namespace: str = "openfaas-fn"  # the one namespace functions live in (the gateway's Role is scoped to it)
    k8s_deploy_timeout_s: float = 120.0  # how long a deploy waits for a ready pod (image pulls included)
    # Queue (async calls, triggers, cron; see docs/queue.md). Empty redis_url: the embedded SQLite queue.
    redis_url: str = ""  # redis://host:port/db for Redis Streams
    queue_attempts: int = 5  # attempts per message (the first included) before it becomes a dead letter
    queue_backoff_s: float = 1.0  # wait before the first retry; doubles per retry
    queue_backoff_max_s: float = 60.0
    queue_claim_idle_s: float = 30.0  # a message pending this long without renewal belongs to a dead worker
    queue_concurrency: int = 256  # at most this many queued invocations in flight per function and process
    queue_drain_s: float = 10.0  # the autoscaler sizes a function to finish its queue backlog within this
    result_ttl_s: float = 3600.0  # how long async results can be fetched
    # Callbacks (X-Callback-Url) go only to globally routable addresses, except these hosts / CIDR blocks
    # (comma-separated; see stoker/callback_policy.py and docs/security.md).
    callback_allow: str = ""
    # Proxies in front of the gateway whose X-Forwarded-For/-Proto/-Host are kept (addresses / CIDR blocks,
    # comma-separated; see stoker/forwarded.py and docs/security.md). Empty: nobody's; the gateway sets them.
    trusted_proxies: str = ""
    # `stoker controller` (see docs/deployment.md): one active instance, elected through Redis or a Kubernetes Lease
    leader_ttl_s: float = 15.0  # a leader that has not renewed for this long is replaced by a standby
    lease_name: str = ""  # Kubernetes Lease to elect through (empty: the Redis lock)
    lease_namespace: str = ""
    lease_holder: str = ""  # this controller's identity (empty: hostname-pid)
    # The web console at /ui/ (docs/console.md)
    console_sample_s: float = 10.0  # how often the gateway samples its counters into each function's chart ring
    console_session_s: float = 43200.0  # how long a console login lasts (12 h: a working day)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Config:
        """Build from the environment, then apply non-None ``overrides`` (CLI flags), then validate."""
        values: dict[str, Any] = {"home": default_home(environ)}
        values |= from_environ(cls, environ, "STOKER_", skip=("home",), strip=False)
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"STOKER_BACKEND: {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.log_format not in FORMATS:
            raise ConfigError(f"STOKER_LOG_FORMAT: {self.log_format!r} is not one of {', '.join(FORMATS)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"STOKER_PORT: {self.port} is not a TCP port (0-65535)")
        for name in (
            "max_body_bytes",
            "max_bundle_bytes",
            "max_bundle_files",
            "max_json_bytes",
            "max_json_depth",
            "log_lines",
            "header_timeout_s",
            "keepalive_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"STOKER_{name.upper()}: must be greater than zero")
        if not 0 <= self.shutdown_delay_s <= 600:
            raise ConfigError(f"STOKER_SHUTDOWN_DELAY_S: must be 0 to 600 seconds, got {self.shutdown_delay_s:g}")
        if self.max_header_bytes < 1024:
            raise ConfigError(f"STOKER_MAX_HEADER_BYTES: must be at least 1024, got {self.max_header_bytes}")
        if self.max_connections < 0:
            raise ConfigError(f"STOKER_MAX_CONNECTIONS: must be 0 (derived) or more, got {self.max_connections}")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ConfigError(
                f"STOKER_MAX_INFLIGHT_BODY_BYTES: must be at least STOKER_MAX_BODY_BYTES ({self.max_body_bytes}), "
                f"got {self.max_inflight_body_bytes}"
            )
        for name in ("upstream_timeout_s", "ready_wait_s", "drain_timeout_s", "autoscale_tick_s", "wait_queue_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"STOKER_{name.upper()}: must be greater than zero")
        for name in ("queue_attempts", "queue_backoff_s", "queue_backoff_max_s", "queue_claim_idle_s",
                     "queue_concurrency", "queue_drain_s", "result_ttl_s"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"STOKER_{name.upper()}: must be greater than zero")
        try:
            CallbackPolicy.parse(self.callback_allow)
        except ValueError as exc:
            raise ConfigError(f"STOKER_CALLBACK_ALLOW: {exc}") from None
        try:
            TrustedProxies.parse(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"STOKER_TRUSTED_PROXIES: {exc}") from None
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "STOKER_REDIS_URL (or --redis): must be a redis://, rediss:// or unix:// URL, "
                f"got {self.redis_url.rpartition('@')[2]!r}"  # never the password
            )
        if not _DNS_LABEL.match(self.k8s_namespace) or len(self.k8s_namespace) > 63:
            raise ConfigError(f"STOKER_K8S_NAMESPACE: {self.k8s_namespace!r} is not a Kubernetes namespace name")
        if self.k8s_deploy_timeout_s <= 0:
            raise ConfigError("STOKER_K8S_DEPLOY_TIMEOUT_S: must be greater than zero")
        if self.leader_ttl_s <= 0:
            raise ConfigError("STOKER_LEADER_TTL_S: must be greater than zero")
        if self.lease_name and not self.lease_namespace:
            raise ConfigError("STOKER_LEASE_NAMESPACE: needed with STOKER_LEASE_NAME (the namespace of the Lease)")
        if not 0.1 <= self.console_sample_s <= 60:
            raise ConfigError(f"STOKER_CONSOLE_SAMPLE_S: must be 0.1 to 60 seconds, got {self.console_sample_s:g}")
        if self.console_session_s <= 0:
            raise ConfigError("STOKER_CONSOLE_SESSION_S: must be greater than zero")
        if self.pool_size < 0:
            raise ConfigError(f"STOKER_POOL_SIZE: must be 0 or more, got {self.pool_size}")
        # The same checks as the decider's own (autoscaler.decider.DeciderSpec), named by variable here.
        if self.panic_window_s <= 0 or self.stable_window_s < self.panic_window_s:
            raise ConfigError(
                f"STOKER_PANIC_WINDOW_S/STOKER_STABLE_WINDOW_S: need 0 < panic window ({self.panic_window_s:g}) "
                f"<= stable window ({self.stable_window_s:g})"
            )
        if self.panic_threshold <= 1:
            raise ConfigError(f"STOKER_PANIC_THRESHOLD: must be greater than 1, got {self.panic_threshold:g}")
        for name in ("max_scale_up_rate", "max_scale_down_rate"):
            if getattr(self, name) <= 1:
                raise ConfigError(f"STOKER_{name.upper()}: must be greater than 1, got {getattr(self, name):g}")
