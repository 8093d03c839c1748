"""Calls over the wire: one call (``.remote()``), or a chunk of ``.map()``'s items in one request.

A chunk is a batch body (:mod:`.serialization`): each item's own call body, as ``.remote()`` would send it, and the
replica answers with each item's own reply, so an item's value, its exception (with the replica's traceback) and a
refusal (400: arguments that do not fit) are exactly what a call of that item alone gives. What can go wrong with
the request as a whole:

- no answer, or 429/502/503 (and 504 for a single item): the chunk is sent again after a backoff, up to ``retries``
  times, then each of its items fails with that :class:`CallFailed` (at least once, as for single calls: a replica
  that died after some items ran runs them again);
- 413 (over the gateway's body limit, set lower than :data:`~stoker.sdk.chunking.ChunkPolicy.max_bytes`): the chunk
  is split in halves, and later chunks stay under half the refused size; an item alone over the limit fails with
  the 413 as a single call does;
- 504 for several items (the chunk passed the exec timeout): each item is sent alone, so only an item that is slow
  by itself fails with the timeout;
- 400 for the batch (a runtime older than batches answers so, not knowing the body): this chunk's items and every
  later chunk go one call per item.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stoker.sdk import serialization
from stoker.sdk.calls import decode_reply
from stoker.sdk.chunking import ChunkSizer
from stoker.sdk.errors import CallFailed
from stoker.sdk.mapping import Failed, with_retries
from stoker.sdk.shim import TOKEN_HEADER
from stoker.sdk.transport import Transport, Unreachable

Encoded = tuple[bytes, bool]  # a call body, and whether it holds pickles (it then needs the function's token)


class Caller:
    """Sends call bodies to one function through the gateway."""

    def __init__(
        self, name: str, path: str, transport: Transport, gateway: str, timeout_s: float, token: Callable[[], str]
    ) -> None:
        self.name = name
        self.path = path
        self.transport = transport
        self.gateway = gateway
        self.timeout_s = timeout_s
        self.token = token

    def post(self, body: bytes, pickled: bool) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": serialization.MSGPACK, "Accept": serialization.MSGPACK}
        if pickled:
            headers[TOKEN_HEADER] = self.token()
        try:
            return self.transport.post(self.path, body, headers, timeout=self.timeout_s)
        except Unreachable as exc:
            raise CallFailed(f"{self.name}: cannot reach the gateway at {self.gateway}: {exc}",
                             0, retryable=True) from None  # fmt: skip

    def one(self, body: bytes, pickled: bool) -> Any:
        """The result of one call (or its exception, raised)."""
        status, headers, data = self.post(body, pickled)
        msgpack = headers.get("content-type", "").startswith(serialization.MSGPACK)
        return decode_reply(self.name, status, data, msgpack)

    def batch(self, calls: list[bytes], pickled: bool) -> tuple[list[Any], float, float, int]:
        """Each call's result (a :class:`Failed` in place of an exception), the replica's time on them, the round
        trip and the reply's size. Raises :class:`CallFailed` when the batch as a whole failed (as a call of each
        item alone would have), :class:`Refused` when it was answered 400, or 413 or 504 for several items."""
        body = serialization.encode_batch(calls)
        started = time.perf_counter()
        status, headers, data = self.post(body, pickled)
        round_trip_s = time.perf_counter() - started
        msgpack = headers.get("content-type", "").startswith(serialization.MSGPACK)
        if status == 200 and msgpack:
            try:
                replies, seconds = serialization.decode_batch_reply(data, len(calls))
            except serialization.MalformedPayload as exc:
                raise CallFailed(f"{self.name}: the reply to a batch is not valid ({exc})", status) from None
            return [self.outcome(s, b) for s, b in replies], seconds, round_trip_s, len(data)
        if status == 400 or (status in (413, 504) and len(calls) > 1):
            raise Refused(status, len(body))
        decode_reply(self.name, status, data, msgpack)  # raises what a single call would
        raise CallFailed(f"{self.name}: a batch was answered {status} without a batch reply", status)

    def outcome(self, status: int, body: bytes) -> Any:
        try:
            return decode_reply(self.name, status, body, msgpack=True)
        except Exception as exc:
            return Failed(exc)


class Refused(Exception):
    """A batch answered 400, 413 or 504: not the items' fault, and not something sending it again fixes."""

    def __init__(self, status: int, request_bytes: int) -> None:
        super().__init__(status)
        self.status = status
        self.request_bytes = request_bytes


@dataclass
class Chunk:
    """Consecutive items, encoded; or one item whose arguments could not be encoded (``error``)."""

    calls: list[bytes] = field(default_factory=list)
    pickled: bool = False
    error: Exception | None = None


def chunks(
    items: Iterable[Any],
    encode: Callable[[Any], Encoded],
    sizer: ChunkSizer,
    lock: threading.Lock,
    total: int | None = None,
) -> Iterator[Chunk]:
    """``items`` encoded and grouped into chunks, each sized by ``sizer`` when it is taken (so with the latest
    measurements) and never over ``sizer.max_bytes`` of calls unless it holds one item. Items are read only as
    chunks are taken: a long or endless iterable is never read ahead. An item whose arguments cannot be encoded
    becomes a chunk of its own that fails with that error."""
    source = iter(items)
    held: Encoded | Exception | None = None  # an item read but not yet in a chunk
    left = total
    while True:
        with lock:
            size, max_bytes = sizer.size(left), sizer.max_bytes
        calls: list[bytes] = []
        pickled = False
        nbytes = 0
        while len(calls) < size:
            if held is None:
                item = next(source, _END)
                if item is _END:
                    break
                try:
                    held = encode(item)
                except Exception as exc:  # the item's own failure, raised at its place in the results
                    held = exc
            if isinstance(held, Exception) or (calls and nbytes + len(held[0]) > max_bytes):
                break
            calls.append(held[0])
            pickled = pickled or held[1]
            nbytes += len(held[0])
            held = None
        if calls:
            left = None if left is None else left - len(calls)
            yield Chunk(calls, pickled)
        elif isinstance(held, Exception):
            left = None if left is None else left - 1
            yield Chunk(error=held)
            held = None
        else:
            return


_END: Any = object()


class ChunkRunner:
    """Runs chunks (from worker threads): results in order, per item, whatever happened to the request."""

    def __init__(
        self,
        caller: Caller,
        sizer: ChunkSizer,
        lock: threading.Lock,
        retries: int,
        batched: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.caller = caller
        self.sizer = sizer
        self.lock = lock
        self.retries = retries
        self.batched = batched  # False: one call per item (chunksize=1, or a runtime without batches)
        self.sleep = sleep

    def run(self, chunk: Chunk) -> list[Any]:
        if chunk.error is not None:
            return [Failed(chunk.error)]
        return self.calls(chunk.calls, chunk.pickled)

    def calls(self, calls: list[bytes], pickled: bool) -> list[Any]:
        if not self.batched:
            return [self.single(call, pickled) for call in calls]
        started = time.perf_counter()
        try:
            results: list[Any]
            results, work_s, round_trip_s, reply_bytes = with_retries(
                lambda: self.caller.batch(calls, pickled), self.retries, self.sleep
            )
        except Refused as refused:
            return self.refused(refused, calls, pickled, time.perf_counter() - started)
        except CallFailed as exc:  # each item fails as a call of it alone would have
            return [Failed(CallFailed(str(exc), exc.status, exc.retryable)) for _ in calls]
        with self.lock:
            self.sizer.record(len(calls), work_s, round_trip_s, reply_bytes)
        return results

    def refused(self, refused: Refused, calls: list[bytes], pickled: bool, elapsed_s: float) -> list[Any]:
        if refused.status == 400:  # a runtime that does not know batches
            self.batched = False
            return [self.single(call, pickled) for call in calls]
        with self.lock:
            if refused.status == 413:
                self.sizer.too_large(refused.request_bytes)
            else:
                self.sizer.timed_out(len(calls), elapsed_s)
        if refused.status == 413:
            half = len(calls) // 2
            return self.calls(calls[:half], pickled) + self.calls(calls[half:], pickled)
        return [result for call in calls for result in self.calls([call], pickled)]

    def single(self, call: bytes, pickled: bool) -> Any:
        try:
            result: Any = with_retries(lambda: self.caller.one(call, pickled), self.retries, self.sleep)
        except Exception as exc:
            return Failed(exc)
        return result
