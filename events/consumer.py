"""Reading streams through a consumer group with bounded concurrency: the part every consumer of stoker's queue
shares (a function's worker, the callback outbox). Subclasses say what one message does (:meth:`handle`).

While a message is being handled its idle time is renewed, so no other consumer reclaims work that is still going on;
messages of a consumer that died are reclaimed (XAUTOCLAIM) once idle for ``claim_idle_s``. A message this consumer
still holds is never started twice here, even when a reclaim hands it back (after the queue was away for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from events.queue import Message, Queue, QueueUnavailable

logger = logging.getLogger(__name__)

# How long a busy consumer waits for more of its slots to free before reading for the few free now: long enough for
# the calls of one settled batch to finish together, short beside any call.
REFILL_WAIT_S = 0.005


def log(message: str) -> None:
    """A queue worker's trouble (being retried): a warning."""
    logger.warning("queue: %s", message)


class StreamConsumer:
    def __init__(
        self,
        queue: Queue,
        name: str,
        streams: list[str],
        group: str,
        consumer: str,
        concurrency: int,
        claim_idle_s: float,
        block_s: float,
    ) -> None:
        self.queue = queue
        self.name = name  # for log lines
        self.streams = streams
        self.group = group
        self.consumer = consumer
        self.concurrency = concurrency
        self.claim_idle_s = claim_idle_s
        self.block_s = block_s
        self.held: dict[str, str] = {}  # message id -> stream, for messages this consumer is working on
        self.inflight = 0
        self._freed = asyncio.Event()  # set whenever a slot frees (or the limit grows)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def from_start(self, stream: str) -> bool:
        """Whether a group this consumer creates on ``stream`` reads it from the start (else only new entries)."""
        return True

    async def handle(self, msg: Message) -> None:
        """Do what ``msg`` asks and settle it (ack, bury, finish); raise QueueUnavailable to leave it pending."""
        raise NotImplementedError

    async def run(self) -> None:
        """Read and handle until cancelled or stopped; survives the queue going away and coming back."""
        ready = False
        last_claim = 0.0
        renew = asyncio.create_task(self._renew_loop())
        try:
            while not self._stopping:
                try:
                    if not ready:
                        for stream in self.streams:
                            await self.queue.ensure_group(stream, self.group, from_start=self.from_start(stream))
                        ready = True
                    await self._room()
                    now = time.monotonic()
                    if now - last_claim >= self.claim_idle_s / 4:
                        last_claim = now
                        for stream in self.streams:
                            for msg in await self.queue.reclaim(
                                stream, self.group, self.consumer, self.claim_idle_s, self._slots()
                            ):
                                await self._start(msg)
                    free = self._slots()
                    if free == 0:
                        continue
                    for msg in await self.queue.read(self.streams, self.group, self.consumer, free, self.block_s):
                        await self._start(msg)
                except QueueUnavailable as exc:
                    log(f"{self.name}: {exc}; retrying in 1 s")
                    ready = False
                    await asyncio.sleep(1.0)
                except Exception as exc:  # a bug must not end the consumer for good: its messages would wait forever
                    log(f"{self.name}: {type(exc).__name__}: {exc}; retrying in 1 s")
                    ready = False
                    await asyncio.sleep(1.0)
        finally:
            renew.cancel()

    def resize(self, concurrency: int) -> None:
        """Run up to ``concurrency`` messages at once from now on (a function's replicas changed). Shrinking
        cancels nothing: no new message starts until fewer than the new limit run."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._freed.set()

    async def _slot(self) -> None:
        """Wait until fewer than ``concurrency`` messages run."""
        while self.inflight >= self.concurrency:
            self._freed.clear()
            await self._freed.wait()

    async def _room(self) -> None:
        """Wait for a free slot, then up to REFILL_WAIT_S for a quarter of them: messages are read (and their calls
        started, and settled) in groups, not one round trip each as single slots free up under load."""
        await self._slot()
        want = max(1, self.concurrency // 4)
        if self._slots() >= want:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REFILL_WAIT_S):
                while self._slots() < want:
                    self._freed.clear()
                    await self._freed.wait()

    def _slots(self) -> int:
        return max(0, self.concurrency - self.inflight)

    async def _start(self, msg: Message) -> None:
        if msg.id in self.held:  # still running here (its renewals failed while the queue was away): not twice
            return
        await self._slot()
        self.inflight += 1
        self.held[msg.id] = msg.stream
        task = asyncio.create_task(self._handle(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.inflight -= 1
        self._freed.set()

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages, let the running ones finish for up to ``grace_s``, then cancel them (they stay
        pending and are reclaimed later, so nothing is lost)."""
        self._stopping = True
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in running:
                task.cancel()

    async def _renew_loop(self) -> None:
        every = max(0.05, self.claim_idle_s / 3)
        while True:
            await asyncio.sleep(every)
            by_stream: dict[str, list[str]] = {}
            for msg_id, stream in list(self.held.items()):
                by_stream.setdefault(stream, []).append(msg_id)
            for stream, ids in by_stream.items():
                try:
                    await self.queue.renew(stream, self.group, self.consumer, ids)
                except QueueUnavailable:
                    pass  # renewed at the next turn, or reclaimed: at least once either way
                except Exception as exc:  # never ends the loop: held messages would be reclaimed while running
                    log(f"{self.name}: renewing {len(ids)} messages: {type(exc).__name__}: {exc}")

    async def _handle(self, msg: Message) -> None:
        try:
            await self.handle(msg)
        except QueueUnavailable as exc:
            # The message stays pending; it is reclaimed (and handled again) once the queue is back: at least once.
            log(f"{self.name}: message {msg.id} left pending: {exc}")
        except Exception as exc:  # a bug must not kill the consumer; the message stays pending and is reclaimed
            log(f"{self.name}: message {msg.id} left pending: {type(exc).__name__}: {exc}")
        finally:
            self.held.pop(msg.id, None)
