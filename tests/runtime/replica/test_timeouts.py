"""Exec timeout: 504 at the deadline, the handler stopped, a replica whose handler cannot stop replaced."""

from __future__ import annotations

import asyncio
import time

from tests.runtime.replica.conftest import StartReplica
from tests.runtime.replica.replica_process import WAIT_FOR_FILE, ReplicaProcess


def _wait_until_ready(replica: ReplicaProcess, timeout: float = 20.0) -> int:
    with replica.client() as client:
        deadline = time.monotonic() + timeout
        while (status := client.get("/_/ready").status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
    return status


def test_busy_loop_is_stopped_and_the_replica_keeps_serving(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        def handle(event, context):
            if event.path == "/spin":
                n = 0
                while True:
                    n += 1
            return "fine"
        """,
        # max_inflight=1: the ready probe only says 200 again once the spinning thread has really ended
        env={"exec_timeout": "500ms", "max_inflight": "1"},
    )
    assert _wait_until_ready(replica) == 200  # the process start is not part of what is timed
    with replica.client() as client:
        started = time.monotonic()
        response = client.get("/spin")
        took = time.monotonic() - started
        assert response.status_code == 504
        assert response.text == "function echo timed out after 0.5s"
        # Not before the timeout; and well before the 5 s a replica would take by default, with room for a loaded
        # 2-core machine (the message above already says which timeout fired).
        assert 0.45 < took < 4.0, took
        assert _wait_until_ready(replica) == 200
        assert client.get("/next").text == "fine"
    assert replica.proc.poll() is None
    assert not any("did not stop" in line for line in replica.stderr)


def test_async_handler_is_cancelled_at_the_timeout(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        import asyncio

        async def handle(event, context):
            if event.path == "/slow":
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    context.logger.info("cancelled")
                    raise
            return "fine"
        """,
        env={"exec_timeout": "300ms", "max_inflight": "1"},
    )
    with replica.client() as client:
        assert client.get("/slow", headers={"X-Call-Id": "slow-1"}).status_code == 504
        replica.wait_for("call_id=slow-1 level=INFO cancelled")
        assert _wait_until_ready(replica) == 200
        assert client.get("/").text == "fine"


def test_handler_blocked_in_c_makes_the_replica_exit_4_after_its_other_calls(
    start_replica: StartReplica,
) -> None:
    replica = start_replica(
        WAIT_FOR_FILE
        + """
def handle(event, context):
    if event.path == "/hang":
        time.sleep(3600)
    return "finished" if wait_for_file("release") else "not released"
""",
        env={"exec_timeout": "1.5s", "STOKER_DRAIN_TIMEOUT": "5s"},
    )

    async def scenario() -> None:
        async with replica.async_client() as client:
            hang = await client.get("/hang")
            assert hang.status_code == 504
            assert hang.text == "function echo timed out after 1.5s"
            # A call in flight when the replica declares itself broken (1 s after the timeout) still ends.
            other = asyncio.create_task(client.get("/other"))
            await asyncio.to_thread(replica.wait_for, "stoker: replica broken", "stderr")
            replica.release()
            response = await other
            assert (response.status_code, response.text) == (200, "finished")

    asyncio.run(scenario())
    assert replica.wait_exit() == 4
    stuck = "".join(replica.stderr)
    assert "did not stop 1s after its exec timeout" in stuck
    assert "time.sleep(3600)" in stuck  # where the handler is stuck, so the user can fix it
