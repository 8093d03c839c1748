"""The callback outbox against both real queues and a real HTTP receiver: a finished call's callback is stored with
its result, POSTed, then deleted; one whose sender died is reclaimed and sent by another; one that cannot be
delivered is noted on its call."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from events.messages import Callback, Invocation, Result
from events.outbox import CallbackOutbox
from events.queue import CALLBACK_GROUP, CALLBACK_STREAM, CallRecord, Queue, async_stream
from events.retry import RetryPolicy
from events.worker import FunctionWorker, WorkerSettings
from stoker.callback_policy import CallbackPolicy
from tests.wait_support import wait_until_async

LOOPBACK = CallbackPolicy.parse("127.0.0.1")  # the receiver runs here; internal addresses are refused by default


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status(self.path))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def status(self, path: str) -> int:
        """/refuse: 400; /down: 500 always; /flaky-N: 503 to the first N posts; else 200."""
        if path == "/refuse":
            return 400
        if path == "/down":
            return 500
        if path.startswith("/flaky-"):
            with self.lock:
                self.seen[path] = self.seen.get(path, 0) + 1
                return 503 if self.seen[path] <= int(path.rsplit("-", 1)[1]) else 200
        return 200

    def calls(self, call_id: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in self.got if h.get("x-call-id") == call_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


async def _pending_callbacks(queue: Queue) -> int:
    return (await queue.info(CALLBACK_STREAM, CALLBACK_GROUP)).pending


async def test_a_finished_calls_callback_is_delivered_from_the_outbox_then_deleted(
    queue: Queue, name: str, receiver: Receiver
) -> None:
    async def invoke(inv: Invocation) -> Result:
        return Result(200, [("content-type", "text/plain")], b"answer " + inv.body, 0.01, name)

    settings = WorkerSettings(4, RetryPolicy(3, 0.01, 0.05), claim_idle_s=5.0, block_s=0.1)
    worker = FunctionWorker(queue, name, [async_stream(name)], invoke, settings, "w")
    outbox = CallbackOutbox(queue, "o", 4, 5.0, 0.1, LOOPBACK)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(outbox.run())]
    call_id = f"c-{name}"
    inv = Invocation(name, body=b"x", call_id=call_id, callback_url=receiver.url + "/done")
    try:
        await queue.enqueue_call(async_stream(name), inv.encode(), call_id, 60)
        await wait_until_async(lambda: receiver.calls(call_id) != [], 20)
        ((headers, body),) = receiver.calls(call_id)
        assert body == b"answer x" and headers["x-function-status"] == "200"
        assert headers["x-function-name"] == name and headers["content-type"] == "text/plain"
        record = await queue.get_call(call_id)
        assert record is not None and record.status == "done" and record.callback_error == ""
        await wait_until_async(lambda: outbox.inflight == 0, 20)
        entries = await queue.entries(CALLBACK_STREAM, 100_000)
        assert not [m for m in entries if call_id.encode() in m.fields[b"m"]]  # delivered entries are deleted
    finally:
        await worker.stop(1)
        await outbox.stop(1)
        for t in tasks:
            t.cancel()


async def test_a_callback_whose_sender_died_is_reclaimed_and_delivered(
    queue: Queue, name: str, receiver: Receiver
) -> None:
    call_id = f"c-{name}"
    await queue.ensure_group(CALLBACK_STREAM, CALLBACK_GROUP, from_start=True)
    await queue.add(CALLBACK_STREAM, {"m": Callback(receiver.url, call_id, Result(200, [], b"r", 0.1, name)).encode()})
    # A sender takes the entry and dies before delivering it (a SIGKILLed platform): it stays pending.
    taken = await queue.read([CALLBACK_STREAM], CALLBACK_GROUP, f"dead-{name}", 100_000, 0.1)
    assert any(call_id.encode() in m.fields[b"m"] for m in taken)
    # Whatever else it took (another test's or another run's callbacks on a shared redis-server) stays pending too:
    # the outbox below reclaims and delivers it like this one, as a platform would. (Acknowledging it would lose it.)
    outbox = CallbackOutbox(queue, f"alive-{name}", 4, 0.3, 0.1, LOOPBACK)
    task = asyncio.create_task(outbox.run())
    try:
        await wait_until_async(lambda: receiver.calls(call_id) != [], 20)
        await wait_until_async(lambda: outbox.inflight == 0, 20)
        assert len(receiver.calls(call_id)) == 1
    finally:
        await outbox.stop(1)
        task.cancel()


async def test_a_callback_that_cannot_be_delivered_is_noted_on_its_call(
    queue: Queue, name: str, receiver: Receiver
) -> None:
    call_id, record = await _delivery(queue, name, receiver, "/refuse")
    assert "400" in record.callback_error and record.status == "done"
    assert len(receiver.calls(call_id)) == 1  # a 4xx is the receiver's answer: not retried


async def _delivery(queue: Queue, name: str, receiver: Receiver, path: str) -> tuple[str, CallRecord]:
    call_id = f"c-{name}"
    await queue.set_call(call_id, "done", Result(200, [], b"r", 0.1, name).encode(), 60)
    await queue.ensure_group(CALLBACK_STREAM, CALLBACK_GROUP, from_start=True)
    await queue.add(
        CALLBACK_STREAM, {"m": Callback(receiver.url + path, call_id, Result(200, [], b"r", 0.1, name)).encode()}
    )
    outbox = CallbackOutbox(queue, f"o-{name}", 4, 5.0, 0.1, LOOPBACK)
    task = asyncio.create_task(outbox.run())
    try:
        await wait_until_async(lambda: receiver.calls(call_id) != [], 20)
        await wait_until_async(lambda: outbox.inflight == 0, 20)
        record = await queue.get_call(call_id)
        assert record is not None
        return call_id, record
    finally:
        await outbox.stop(1)
        task.cancel()


async def test_a_callback_answered_503_is_retried_until_it_is_delivered(
    queue: Queue, name: str, receiver: Receiver
) -> None:
    call_id, record = await _delivery(queue, name, receiver, "/flaky-2")
    assert len(receiver.calls(call_id)) == 3  # two 503s, then the 200
    assert record.callback_error == ""


async def test_a_callback_that_keeps_failing_is_tried_three_times_then_noted_at_once(
    queue: Queue, name: str, receiver: Receiver
) -> None:
    delivery = asyncio.create_task(_delivery(queue, name, receiver, "/down"))
    call_id = f"c-{name}"
    await wait_until_async(lambda: len(receiver.calls(call_id)) == 3, 20)
    third = time.monotonic()
    _, record = await delivery
    # Noted as soon as the last try failed: no pause after it (the pauses are 0.5 s, then 1 s; a third, of 2 s, after
    # the last try held the outbox's slot for nothing).
    assert time.monotonic() - third < 1.5
    assert len(receiver.calls(call_id)) == 3
    assert record.callback_error.endswith("failed after 3 attempts: answered 500"), record.callback_error
    assert record.status == "done"  # the result stays fetchable
