"""The replica's one configuration object, read from the environment the backend gives it.

Variables (of-watchdog names where OpenFaaS has one, so OpenFaaS images and stack files work unchanged):

- ``STOKER_FUNCTION_DIR``: folder holding ``handler.py``; first on ``sys.path`` (default: working directory).
- ``STOKER_ENTRYPOINT``: ``module:function`` (default ``handler:handle``).
- ``STOKER_FUNCTION_NAME``, ``STOKER_NAMESPACE``: for the context and log lines (default: folder name, "").
- ``exec_timeout``: seconds or a duration (``10s``, ``500ms``, ``2m``); default 60s.
- ``max_inflight``: calls allowed at once, 0 = unlimited (default 0).
- ``STOKER_LISTEN_FD``: an inherited, bound and listening TCP socket; else ``port`` (default 8080) on
  ``STOKER_HOST`` (default 0.0.0.0).
- ``STOKER_SECRETS_DIR``: default ``/var/openfaas/secrets``.
- ``STOKER_DRAIN_TIMEOUT``: how long in-flight calls may take to finish after SIGTERM (default: exec_timeout).
- ``STOKER_HEADER_TIMEOUT_S``, ``STOKER_MAX_HEADER_BYTES``, ``STOKER_MAX_CONNECTIONS``: the limits of the replica's
  HTTP server, as for the gateway (:mod:`runtime.edgelimits`; defaults 10 s, 256 KiB: room for the gateway's 64 KiB
  and the headers it adds, and derived from the open-files limit).

:meth:`ReplicaConfig.from_env` has no side effects; it raises :class:`ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.contract import PORT, SECRETS_DIR
from runtime.edgelimits import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_REPLICA_MAX_HEADER_BYTES
from stoker.errors import ConfigError, InvalidRequest
from stoker.names import InvalidName, validate_name
from stoker.spec import parse_duration

DEFAULT_ENTRYPOINT = "handler:handle"
DEFAULT_EXEC_TIMEOUT_S = 60.0
DEFAULT_SECRETS_DIR = SECRETS_DIR
DEFAULT_PORT = PORT
DEFAULT_THREADS = 64  # sync handler threads when max_inflight is unlimited


@dataclass(frozen=True)
class ReplicaConfig:
    """Every setting of one replica process."""

    function_dir: Path
    entrypoint: str = DEFAULT_ENTRYPOINT
    function_name: str = "function"
    namespace: str = ""
    exec_timeout_s: float = DEFAULT_EXEC_TIMEOUT_S
    max_inflight: int = 0
    listen_fd: int | None = None
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    secrets_dir: Path = Path(DEFAULT_SECRETS_DIR)
    drain_timeout_s: float = DEFAULT_EXEC_TIMEOUT_S
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_header_bytes: int = DEFAULT_REPLICA_MAX_HEADER_BYTES
    max_connections: int = 0  # 0: derived from the open-files limit

    @property
    def module_name(self) -> str:
        return self.entrypoint.partition(":")[0]

    @property
    def function_attr(self) -> str:
        return self.entrypoint.partition(":")[2]

    @property
    def threads(self) -> int:
        """Threads for sync handlers: one per allowed call, so an admitted call never waits for a thread."""
        return self.max_inflight or DEFAULT_THREADS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ReplicaConfig:
        """Read and validate the environment; raise :class:`ConfigError` on the first bad value."""

        def get(name: str) -> str:
            return environ.get(name, "").strip()

        function_dir = Path(get("STOKER_FUNCTION_DIR") or os.getcwd()).absolute()
        entrypoint = get("STOKER_ENTRYPOINT") or DEFAULT_ENTRYPOINT
        module, _, attr = entrypoint.partition(":")
        if not attr or not all(part.isidentifier() for part in [*module.split("."), attr]):
            raise ConfigError(f"STOKER_ENTRYPOINT: {entrypoint!r} is not of the form module:function")
        name = get("STOKER_FUNCTION_NAME")
        namespace = get("STOKER_NAMESPACE")
        try:
            if name:
                validate_name(name)
            if namespace:
                validate_name(namespace, "namespace")
        except InvalidName as exc:
            raise ConfigError(f"STOKER_FUNCTION_NAME/STOKER_NAMESPACE: {exc}") from None
        exec_timeout = _duration("exec_timeout", get("exec_timeout"), DEFAULT_EXEC_TIMEOUT_S)
        fd_text = get("STOKER_LISTEN_FD")
        return cls(
            function_dir=function_dir,
            entrypoint=entrypoint,
            function_name=name or function_dir.name or "function",
            namespace=namespace,
            exec_timeout_s=exec_timeout,
            max_inflight=_int("max_inflight", get("max_inflight"), 0, 0, None),
            listen_fd=_int("STOKER_LISTEN_FD", fd_text, 0, 0, None) if fd_text else None,
            host=get("STOKER_HOST") or "0.0.0.0",
            port=_int("port", get("port"), DEFAULT_PORT, 1, 65535),
            secrets_dir=Path(get("STOKER_SECRETS_DIR") or DEFAULT_SECRETS_DIR),
            drain_timeout_s=_duration("STOKER_DRAIN_TIMEOUT", get("STOKER_DRAIN_TIMEOUT"), exec_timeout),
            header_timeout_s=_duration(
                "STOKER_HEADER_TIMEOUT_S", get("STOKER_HEADER_TIMEOUT_S"), DEFAULT_HEADER_TIMEOUT_S
            ),
            max_header_bytes=_int(
                "STOKER_MAX_HEADER_BYTES", get("STOKER_MAX_HEADER_BYTES"), DEFAULT_REPLICA_MAX_HEADER_BYTES, 1024, None
            ),
            max_connections=_int("STOKER_MAX_CONNECTIONS", get("STOKER_MAX_CONNECTIONS"), 0, 0, None),
        )


def _duration(var: str, raw: str, default: float) -> float:
    if not raw:
        return default
    try:
        return parse_duration(raw, var)
    except InvalidRequest as exc:
        raise ConfigError(str(exc)) from None


def _int(var: str, raw: str, default: int, minimum: int, maximum: int | None) -> int:
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{var}: {raw!r} is not a whole number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{var}: must be {bound}, got {value}")
    return value
