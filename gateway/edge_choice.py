"""What ``stoker edge`` decides, with no I/O: which gateway takes a request, and whether a failed one may be sent again.

The edge keeps one :class:`Gateway` per address its upstream name resolves to, marked ready by the last ``/readyz``
check. :func:`pick` chooses the ready gateway with the fewest requests in flight (ties in turn); when none is ready, a
stopping one that said it serves on for a while yet (``X-Stoker-Stops-In`` on its ``/readyz`` 503) rather than
none: a Compose install's one gateway keeps answering through its shutdown delay. :func:`may_resend`
is the at-most-once rule: a request that never reached a gateway (the connection was refused, or it broke before a
byte of the request was written) goes to another; one a gateway may have received is sent again only when its method
is safe to repeat (GET, HEAD), never a POST that may have run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SAFE_TO_REPEAT = frozenset(("GET", "HEAD"))


@dataclass(eq=False)
class Gateway:
    """One gateway address; ``ready`` as its last ``/readyz`` said (a refused connection unreadies it at once)."""

    host: str
    port: int
    ready: bool = False
    serving_until: float = 0.0  # stopping, but still serving until then (the edge's monotonic clock, margin taken)
    inflight: int = 0
    problem: str = "not checked yet"  # why it is not ready, for the edge's own /readyz and its log


def pick(gateways: Sequence[Gateway], turn: int, avoid: Sequence[Gateway] = (), now: float = 0.0) -> Gateway | None:
    """The ready gateway (not in ``avoid``) with the fewest requests in flight, ties broken by ``turn``; with none
    ready, a stopping one still serving at ``now``; None when there is neither."""
    candidates = [g for g in gateways if g.ready and g not in avoid]
    if not candidates:
        candidates = [g for g in gateways if g.serving_until > now and g not in avoid]
    if not candidates:
        return None
    fewest = min(g.inflight for g in candidates)
    least = [g for g in candidates if g.inflight == fewest]
    return least[turn % len(least)]


def may_resend(method: str, sent: bool) -> bool:
    """Whether a request that failed before any answer may go to another gateway: always when it was never sent,
    else only for methods that are safe to repeat."""
    return not sent or method in SAFE_TO_REPEAT
