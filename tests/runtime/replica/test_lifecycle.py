"""In-flight limit and SIGTERM drain."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest

from tests.runtime.replica.conftest import StartReplica
from tests.runtime.replica.replica_process import WAIT_FOR_FILE

SLOW = (
    WAIT_FOR_FILE
    + """
def handle(event, context):
    if event.path == "/slow":
        context.logger.info("started")
        return "released" if wait_for_file("release") else "timed out waiting"
    return "quick"
"""
)


async def test_in_flight_limit_answers_429(start_replica: StartReplica) -> None:
    replica = start_replica(SLOW, env={"max_inflight": "1"})
    async with replica.async_client() as client:
        slow = asyncio.create_task(client.get("/slow", headers={"X-Call-Id": "slow-1"}))
        await asyncio.to_thread(replica.wait_for, "call_id=slow-1 level=INFO started")

        refused = await client.get("/quick")
        assert refused.status_code == 429
        assert refused.text == "function echo is at its in-flight limit (1 calls); retry later"
        assert (await client.get("/_/ready")).status_code == 429
        assert (await client.get("/_/health")).status_code == 200

        replica.release()
        assert (await slow).text == "released"
        assert (await client.get("/_/ready")).status_code == 200
        assert (await client.get("/quick")).text == "quick"
    replica.wait_for("method=GET path=/quick status=429")


async def test_sigterm_finishes_the_call_in_flight_then_exits_0(start_replica: StartReplica) -> None:
    replica = start_replica(SLOW)
    async with replica.async_client() as client:
        slow = asyncio.create_task(client.get("/slow", headers={"X-Call-Id": "slow-1"}))
        await asyncio.to_thread(replica.wait_for, "call_id=slow-1 level=INFO started")
        replica.proc.send_signal(signal.SIGTERM)

        # It stops accepting connections at once ...
        async with replica.async_client() as fresh:
            deadline = time.monotonic() + 10  # "at once" is while the call is still in flight; room for a loaded box
            while True:
                try:
                    await fresh.get("/_/health")
                except httpx.TransportError:  # refused, or reset while still in the closed listen queue
                    break
                if time.monotonic() > deadline:
                    pytest.fail("the replica still accepts connections after SIGTERM")
                await asyncio.sleep(0.02)
        assert replica.proc.poll() is None  # ... but waits for the call in flight
        replica.release()
        response = await slow
    assert (response.status_code, response.text) == (200, "released")
    assert await asyncio.to_thread(replica.wait_exit) == 0


async def test_sigterm_when_idle_exits_0_quickly(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(event, context):\n    return 'x'\n")
    async with replica.async_client() as client:
        assert (await client.get("/")).status_code == 200
    replica.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(replica.wait_exit, 4.0) == 0  # not the drain timeout (5 s here) waited out


async def test_drain_timeout_bounds_the_wait(start_replica: StartReplica) -> None:
    replica = start_replica(SLOW, env={"STOKER_DRAIN_TIMEOUT": "300ms"})
    async with replica.async_client() as client:
        slow = asyncio.create_task(client.get("/slow", headers={"X-Call-Id": "slow-1"}))
        await asyncio.to_thread(replica.wait_for, "call_id=slow-1 level=INFO started")
        replica.proc.send_signal(signal.SIGTERM)
        # Well before the handler's own end (it gives up waiting after 5 s), with room for a loaded box.
        assert await asyncio.to_thread(replica.wait_exit, 4.5) == 0
        response = await slow
    assert response.status_code == 503
    assert response.text == "function echo: the replica shut down before the call finished"
