"""``.map()``: many calls in parallel, results streamed in input order, transient failures retried.

Items go in chunks (many items per request, :mod:`.batching`, sized by :mod:`.chunking`). A bounded window of
chunks runs on a thread pool; the caller gets results in order as soon as the head of the window is done, so
memory stays bounded however long the input is. A call that fails in a way another try may fix
(the replica died mid-call: 502; no replica ready: 503; busy: 429; timed out at the gateway: 504; no answer) is
sent again after a short backoff, up to ``retries`` times. That makes delivery *at least once*: a function killed
after it did its work but before it answered runs again. An exception raised by the function itself is not retried;
it is raised in the caller at that item's place (or returned there, with ``return_exceptions``).
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO, TypeVar

from stoker.sdk.errors import CallFailed

B = TypeVar("B")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0


def backoff(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Delay before retry ``attempt`` (1-based): 0.1 s doubling to 2 s, with up to 50% jitter so that the calls
    a dead replica failed together do not come back together."""
    base = min(BACKOFF_FIRST_S * 2 ** (attempt - 1), BACKOFF_MAX_S)
    return float(base * (0.5 + rand() / 2))


def with_retries(call: Callable[[], Any], retries: int, sleep: Callable[[float], None] = time.sleep) -> Any:
    """``call()``, tried again on a retryable :class:`CallFailed` up to ``retries`` more times."""
    attempt = 0
    while True:
        try:
            return call()
        except CallFailed as exc:
            attempt += 1
            if not exc.retryable or attempt > retries:
                raise
            sleep(backoff(attempt))


class Failed:
    """An item's exception, in its place among the results of a chunk."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def ordered_map(
    run: Callable[[B], list[Any]],
    chunks: Iterable[B],
    concurrency: int,
    return_exceptions: bool = False,
    progress: Progress | None = None,
    probe: bool = False,
) -> Iterator[Any]:
    """The results of ``run(chunk)`` for each chunk, item by item, in order, ``concurrency`` chunks at a time.

    ``run`` gives one result per item of its chunk, a :class:`Failed` where the item raised. At most
    ``2 * concurrency`` chunks are taken from ``chunks`` and not yet consumed; with ``probe``, the first chunk is
    taken alone and the next ones only once it is done (so that they are sized with what it measured)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="stoker-map")
    window: deque[Future[list[Any]]] = deque()
    source = iter(chunks)
    limit = concurrency * 2  # twice the workers: the pool never idles while the caller consumes the head

    def fill(most: int) -> None:
        while len(window) < most:
            chunk = next(source, _END)
            if chunk is _END:
                return
            window.append(pool.submit(run, chunk))

    try:
        fill(1 if probe else limit)
        while window:
            results = window.popleft().result()
            fill(limit)
            for result in results:
                if type(result) is Failed:
                    if not return_exceptions:
                        raise result.exc
                    result = result.exc
                if progress is not None:
                    progress.advance()
                yield result
    finally:
        # The caller stopped early or an item raised: do not start the rest; wait for the chunks in flight.
        pool.shutdown(wait=True, cancel_futures=True)
        if progress is not None:
            progress.close()


_END: Any = object()


class Progress:
    """A one-line progress bar on stderr (no dependency): ``name  512/1000  51%  830.2/s``."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None, interval_s: float = 0.1) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.started = time.monotonic()
        self._drawn = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._drawn >= self.interval_s or self.done == self.total:
            self._drawn = now
            self._draw(now)

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            width = 30
            filled = int(width * self.done / self.total)
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {100 * self.done // self.total}%"
        else:
            bar = f"{self.done}"
        self.stream.write(f"\r{self.label} {bar} {rate:.1f}/s")
        self.stream.flush()
