"""Reading streams through a consumer group with bounded concurrency: the part every consumer of stoker's queue
shares (a function's worker, the callback outbox). Subclasses say what one message does (:meth:`handle`).

Messages are read ahead of the free slots (a *prefetch*, as Celery's workers do): up to ``prefetch_per_slot`` per
slot wait, read and not started, so a slot that frees starts the next message at once instead of waiting for a round
trip to the queue, and reads come in large groups. Read-ahead messages do not run: ``concurrency`` still bounds the
calls going on at once. They are pending on this consumer like running ones, and renewed with them; a stopping
consumer gives them back (:meth:`events.queue.Queue.release`: any consumer's next reclaim takes them, their attempt
not spent), and a killed one leaves them to be reclaimed after ``claim_idle_s`` like the messages it was running.

While a message is held its idle time is renewed, so no other consumer reclaims work that is still going on;
messages of a consumer that died are reclaimed (XAUTOCLAIM) once idle for ``claim_idle_s``. A message this consumer
still holds is never started twice here, even when a reclaim hands it back (after the queue was away for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque

from events.queue import Message, Queue, QueueUnavailable

logger = logging.getLogger(__name__)

# How long a consumer with little room waits for more before reading for the little there is: long enough for the
# calls of one settled batch to finish together, short beside any call.
REFILL_WAIT_S = 0.005
# Messages read ahead per slot at most (see the module's docstring).
PREFETCH_PER_SLOT = 1
# How much of the slots' work the read-ahead covers: enough messages for READ_AHEAD_S of calls at their measured
# duration (a read's round trip, many times over), at most PREFETCH_PER_SLOT per slot, at least 1. Short calls get
# the most; a one-second call gets one message ahead, so read-ahead messages (pending, not running) stay few where a
# backlog's calls are long and the autoscaler scales on them.
READ_AHEAD_S = 0.02
CALL_TIME_WEIGHT = 0.1  # of each new call's duration in the running mean
# A consumer looks for messages given back or left behind by others at least this often (and every claim_idle_s / 4
# when that is sooner): what a stopping consumer gives back runs elsewhere within about this long.
RECLAIM_EVERY_S = 1.0


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
        prefetch_per_slot: int = PREFETCH_PER_SLOT,
    ) -> None:
        self.queue = queue
        self.name = name  # for log lines
        self.streams = streams
        self.group = group
        self.consumer = consumer
        self.concurrency = concurrency
        self.claim_idle_s = claim_idle_s
        self.block_s = block_s
        self.prefetch_per_slot = prefetch_per_slot
        self.held: dict[str, str] = {}  # message id -> stream: every message held here (read ahead, started)
        self.ahead: deque[Message] = deque()  # read ahead, not started
        self.inflight = 0  # started and not yet settled
        self.calls = 0  # started and their call still going on (not yet only settling): what concurrency bounds
        self._calling: dict[str, float] = {}  # the ids counted in ``calls``: when each started (time.monotonic())
        self.call_s: float | None = None  # the calls' mean duration (None: none measured yet)
        self._room = asyncio.Event()  # set whenever a slot frees, the limit changes or the consumer stops
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._reading: asyncio.Event | None = None  # set once run() has ended (None: it never started)

    def from_start(self, stream: str) -> bool:
        """Whether a group this consumer creates on ``stream`` reads it from the start (else only new entries)."""
        return True

    async def handle(self, msg: Message) -> None:
        """Do what ``msg`` asks and settle it (ack, bury, finish); raise QueueUnavailable to leave it pending. May call
        :meth:`call_over` once only settling is left, so the next message starts meanwhile."""
        raise NotImplementedError

    async def run(self) -> None:
        """Read and handle until cancelled or stopped; survives the queue going away and coming back."""
        ready = False
        last_claim = -float("inf")
        self._reading = asyncio.Event()
        renew = asyncio.create_task(self._renew_loop())
        try:
            while not self._stopping:
                try:
                    if not ready:
                        for stream in self.streams:
                            await self.queue.ensure_group(stream, self.group, from_start=self.from_start(stream))
                        ready = True
                    free = await self._wait_room()
                    if self._stopping:
                        break
                    now = time.monotonic()
                    if now - last_claim >= min(RECLAIM_EVERY_S, self.claim_idle_s / 4):
                        last_claim = now
                        for stream in self.streams:
                            self._take(
                                await self.queue.reclaim(stream, self.group, self.consumer, self.claim_idle_s, free)
                            )
                            free = self._free()
                            if free == 0:
                                break
                        if free == 0:
                            continue
                    self._take(await self.queue.read(self.streams, self.group, self.consumer, free, self.block_s))
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
            self._reading.set()

    def resize(self, concurrency: int) -> None:
        """Run up to ``concurrency`` messages at once from now on (a function's replicas changed). Shrinking
        cancels nothing: no new message starts until fewer than the new limit run."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._dispatch()
        self._room.set()

    def call_over(self, msg: Message) -> None:
        """``msg``'s call has ended and only settling it is left: its slot goes to the next message now."""
        started = self._calling.pop(msg.id, None)
        if started is not None:
            took = time.monotonic() - started
            self.call_s = took if self.call_s is None else self.call_s + CALL_TIME_WEIGHT * (took - self.call_s)
            self.calls -= 1
            self._dispatch()
            self._room.set()

    def read_ahead(self) -> int:
        """How many messages to hold read and not started: READ_AHEAD_S of calls at their mean duration, at least
        1 and at most ``prefetch_per_slot`` per slot (1 until a call has been timed)."""
        most = self.concurrency * self.prefetch_per_slot
        if self.call_s is None or most <= 1:
            return min(1, most)
        return max(1, min(most, math.ceil(self.concurrency * READ_AHEAD_S / max(self.call_s, 1e-6))))

    def _capacity(self) -> int:
        return self.concurrency + self.read_ahead()

    def _free(self) -> int:
        """How many messages may be read now: room in the slots and the read-ahead together."""
        return max(0, self._capacity() - self.calls - len(self.ahead))

    async def _wait_room(self) -> int:
        """Wait for room to read into, then up to REFILL_WAIT_S for a quarter of it: messages are read (and their
        calls settled) in groups, not one round trip each as single slots free up under load."""
        while self._free() == 0 and not self._stopping:
            self._room.clear()
            await self._room.wait()
        want = max(1, self._capacity() // 4)
        if self._free() < want and not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REFILL_WAIT_S):
                    while self._free() < want and not self._stopping:
                        self._room.clear()
                        await self._room.wait()
        return self._free()

    def _take(self, msgs: list[Message]) -> None:
        """Hold what was read (or reclaimed) and start as much of it as the slots allow."""
        for msg in msgs:
            if msg.id in self.held:  # still held here (its renewals failed while the queue was away): not twice
                continue
            self.held[msg.id] = msg.stream
            self.ahead.append(msg)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start read-ahead messages while fewer than ``concurrency`` calls go on (none once stopping)."""
        while self.ahead and self.calls < self.concurrency and not self._stopping:
            msg = self.ahead.popleft()
            self.calls += 1
            self.inflight += 1
            self._calling[msg.id] = time.monotonic()
            task = asyncio.create_task(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, msg))

    def _done(self, msg: Message, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.inflight -= 1
        self.call_over(msg)
        self._room.set()

    async def stop(self, grace_s: float) -> None:
        """Stop taking messages and give back those read ahead (another consumer runs them at its next reclaim),
        let the running ones finish for up to ``grace_s``, then cancel them (they stay pending and are reclaimed
        later, so nothing is lost)."""
        self._stopping = True
        self._room.set()
        await self._give_back()
        if self._reading is not None:  # a read under way ends within block_s: what it brings is given back too
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.block_s + 1.0):
                    await self._reading.wait()
            await self._give_back()
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in running:
                task.cancel()

    async def _give_back(self) -> None:
        msgs, self.ahead = list(self.ahead), deque()
        by_stream: dict[str, list[Message]] = {}
        for msg in msgs:
            by_stream.setdefault(msg.stream, []).append(msg)
            self.held.pop(msg.id, None)  # first: a renewal after the release would hide them again
        for stream, batch in by_stream.items():
            try:
                await self.queue.release(stream, self.group, self.consumer, batch)
            except Exception as exc:  # still pending: reclaimed after claim_idle_s instead, as after a crash
                log(f"{self.name}: giving back {len(batch)} messages: {type(exc).__name__}: {exc}")

    async def _renew_loop(self) -> None:
        every = max(0.05, self.claim_idle_s / 3)
        while True:
            await asyncio.sleep(every)
            by_stream: dict[str, list[str]] = {}
            for msg_id, stream in list(self.held.items()):
                by_stream.setdefault(stream, []).append(msg_id)
            for stream, ids in by_stream.items():
                ids = [i for i in ids if i in self.held]  # not those given back meanwhile
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
