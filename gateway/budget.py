"""How many bytes of request bodies the gateway holds in memory at once, across every call.

Each body is counted as it arrives and given back once its call no longer needs it (the replica's answer has begun,
or the queue has stored the call). A body that does not fit is refused with 503 and ``Retry-After`` rather than let
the process grow: forty 19 MiB bodies at once are 760 MiB, which no single-body limit prevents.
"""

from __future__ import annotations


class BodyBudget:
    """A counter with a ceiling; the gateway's one instance lives on its app (``STOKER_MAX_INFLIGHT_BODY_BYTES``)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        """Count ``n`` more bytes; False (and nothing counted) when they would go over the ceiling."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        """Give back ``n`` bytes taken before."""
        self.used -= n
