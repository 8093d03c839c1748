"""How many items ``.map()`` sends in one request: a pure policy fed with what each chunk measured.

Every request pays a fixed *overhead* (the HTTP round trip through the gateway, the replica's bookkeeping: about a
millisecond) besides the time its items take on the replica. A chunk of ``n`` items of ``t`` seconds each costs
``overhead + n * t``, so the share of the overhead falls as ``n`` grows, while a longer chunk delays its first
result, redoes more work when a replica dies and risks the exec timeout. :meth:`ChunkSizer.size` aims at chunks
that run :attr:`ChunkPolicy.overhead_factor` times the measured overhead (the overhead is then at most a tenth of
the time), which for a trivial function is thousands of items and for a 10 ms function one item (what ``.map()``
sent before it had chunks), within these bounds:

- at most :attr:`~ChunkPolicy.max_items` items, and the replies at most :attr:`~ChunkPolicy.max_bytes` on the
  measured average (the request is held to that bound exactly, where the chunk is built);
- at most :attr:`~ChunkPolicy.max_seconds` of measured work, and a tenth of the function's exec timeout;
- when the number of items left is known, at most ``left / (2 * workers)`` (rounded up), so every worker has a
  chunk until the end instead of a few large chunks finishing alone (OpenMP's "guided" schedule), but not below
  the size whose work equals the overhead (smaller chunks would spend more time on overhead than on items);
- one item until the first chunk has been measured (the caller sends that probe alone).

Measurements are exponentially weighted sums (:attr:`~ChunkPolicy.decay`): the time per item is the weighted work
over the weighted items, so large chunks count for what they measured, and a change in the items' cost shows within
a few chunks. A fixed ``chunksize`` bypasses all of it except the byte bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkPolicy:
    """The sizer's tuning (the defaults are what ``.map()`` uses)."""

    overhead_factor: float = 10.0  # a chunk's work aims at this many times the per-request overhead
    max_items: int = 4096
    max_bytes: int = 256 * 1024  # a request's calls, and (on average) its replies
    max_seconds: float = 0.25  # of measured work in one chunk
    min_overhead_s: float = 0.0002  # a floor for the measured overhead (a clock's granularity, not a real cost)
    decay: float = 0.7  # the weight the past keeps at each new measurement

    def __post_init__(self) -> None:
        if self.overhead_factor <= 0 or self.max_seconds <= 0 or self.min_overhead_s <= 0:
            raise ValueError("overhead_factor, max_seconds and min_overhead_s must be > 0")
        if self.max_items < 1 or self.max_bytes < 1 or not 0 <= self.decay < 1:
            raise ValueError("need max_items >= 1, max_bytes >= 1 and 0 <= decay < 1")


class ChunkSizer:
    """Chooses each chunk's size from the measurements of the chunks before it (not thread-safe: the caller
    holds a lock when several threads record)."""

    def __init__(
        self, workers: int, timeout_s: float, fixed: int | None = None, policy: ChunkPolicy | None = None
    ) -> None:
        self.policy = policy or ChunkPolicy()
        self.workers = max(1, workers)
        self.fixed = fixed
        self.max_bytes = self.policy.max_bytes  # lowered when the gateway refuses a chunk as too large
        self._max_seconds = min(self.policy.max_seconds, timeout_s / 10)
        self._items = 0.0  # weighted sums over the chunks measured
        self._work_s = 0.0
        self._reply_bytes = 0.0
        self._overhead_s = 0.0  # weighted mean per request
        self._chunks = 0

    @property
    def measured(self) -> bool:
        """Whether a chunk has been measured yet (before that, only a probe of one item should be in flight)."""
        return self.fixed is not None or self._chunks > 0

    def record(self, items: int, work_s: float, round_trip_s: float, reply_bytes: int) -> None:
        """What one chunk of ``items`` measured: the replica's time on its items, the whole round trip seen by
        the caller, and the size of the reply."""
        if items < 1:
            return
        d = self.policy.decay
        self._items = d * self._items + items
        self._work_s = d * self._work_s + max(0.0, work_s)
        self._reply_bytes = d * self._reply_bytes + reply_bytes
        overhead = max(0.0, round_trip_s - work_s)
        self._overhead_s = overhead if self._chunks == 0 else d * self._overhead_s + (1 - d) * overhead
        self._chunks += 1

    def timed_out(self, items: int, timeout_s: float) -> None:
        """A chunk of ``items`` passed the exec timeout: its items took at least that long."""
        self.record(items, timeout_s, timeout_s, 0)

    def too_large(self, request_bytes: int) -> None:
        """The gateway refused a request of ``request_bytes`` as too large: stay under half of it from now on."""
        self.max_bytes = max(1, min(self.max_bytes, request_bytes // 2))

    def size(self, left: int | None = None) -> int:
        """How many items the next chunk should hold; ``left`` is how many remain when that is known."""
        if self.fixed is not None:
            return self.fixed
        if not self._chunks:
            return 1
        p = self.policy
        item_s = self._work_s / self._items
        overhead_s = max(self._overhead_s, p.min_overhead_s)
        n = p.max_items if item_s <= 0 else math.ceil(p.overhead_factor * overhead_s / item_s)
        if item_s > 0:
            n = min(n, int(self._max_seconds / item_s))
        reply_bytes = self._reply_bytes / self._items
        if reply_bytes > 0:
            n = min(n, int(self.max_bytes / reply_bytes))
        if left is not None:
            # Guided, but never down to chunks whose work is less than the overhead they pay.
            floor = 1 if item_s <= 0 else math.ceil(overhead_s / item_s)
            n = min(n, max(math.ceil(left / (2 * self.workers)), floor), left)
        return max(1, min(n, p.max_items))
