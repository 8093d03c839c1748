"""Limits of an HTTP server that faces clients it cannot trust: the gateway, and every replica.

:class:`EdgeLimits` holds them; :class:`runtime.httpserver.CoalescingHttpToolsProtocol` enforces them. A request head
(request line and headers) must arrive within ``header_timeout_s`` of the connection opening or of its first byte,
and be at most ``max_header_bytes`` long (else 408 or 431, and the connection is closed); at most
``max_connections`` connections are open at once (beyond it the oldest connection that has no request running is
closed to make room, or the newcomer is answered 503).

The connection bound exists so the process never runs out of file descriptors: :func:`raise_open_files_limit` lifts
the soft ``RLIMIT_NOFILE`` to the hard limit at start, and :func:`default_max_connections` derives a bound that
leaves room for what else the process opens (one connection to a replica per call in flight, files, pipes).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# A replica's heads come from the gateway: the client's (at most the gateway's limit) plus the few headers the gateway
# adds. Its own limit leaves room for that, and for a gateway whose limit was raised somewhat.
DEFAULT_REPLICA_MAX_HEADER_BYTES = 256 * 1024
FD_RESERVE = 128  # descriptors kept for everything that is not a client connection (files, pipes, Redis, ...)
MAX_DEFAULT_CONNECTIONS = 10_000  # beyond this, memory rather than descriptors is the limit; set it explicitly


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_connections: int = MAX_DEFAULT_CONNECTIONS


def default_max_connections(open_files: int) -> int:
    """Connections a process with ``open_files`` descriptors can hold: each client connection may need a second
    one (to a replica), after a reserve; at least 16, at most :data:`MAX_DEFAULT_CONNECTIONS`."""
    return max(16, min(MAX_DEFAULT_CONNECTIONS, (open_files - FD_RESERVE) // 2))


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (allowed without privileges); return the soft limit in
    force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        # An infinite hard limit cannot be the soft one on Linux (the kernel caps it at fs.nr_open).
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def resolve(header_timeout_s: float, max_header_bytes: int, max_connections: int) -> EdgeLimits:
    """The limits to serve with; ``max_connections`` 0 means derived from the open-files limit (raised first)."""
    open_files = raise_open_files_limit()
    return EdgeLimits(header_timeout_s, max_header_bytes, max_connections or default_max_connections(open_files))
