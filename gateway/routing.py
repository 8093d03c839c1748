"""Routing choice, kept pure: which ready replica gets the next request."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.backends.base import Endpoint


def choose(endpoints: Sequence[Endpoint], start: int, limit: int = 0) -> Endpoint | None:
    """The endpoint with the fewest requests in flight; ties go to the first one at or after ``start`` (a rotating
    offset, so equal replicas share the load). With ``limit`` > 0, endpoints already at that many in-flight
    requests are skipped; None means no endpoint can take a request now."""
    n = len(endpoints)
    best: Endpoint | None = None
    for i in range(n):
        endpoint = endpoints[(start + i) % n]
        if limit and endpoint.inflight >= limit:
            continue
        if best is None or endpoint.inflight < best.inflight:
            best = endpoint
            if best.inflight == 0:
                break
    return best
