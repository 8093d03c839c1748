"""The warm pool on a real swarm: code as configs, generic replicas claimed by one gateway only, bridges retired.

Like test_swarm_backend, the backends run in the test process and reach tasks through the ``published`` route.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.base import FunctionRecord
from runtime.backends.swarm.backend import SwarmBackend
from runtime.backends.swarm.config import CODE, PLATFORM, POOL_CLAIMED
from runtime.backends.swarm.pool import role
from stoker import bundle
from stoker.spec import FunctionDeployment
from tests.platform_fixture import write_handler

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HANDLER = """\
import os

def handle(event, context):
    nnp = [line.split()[1] for line in open('/proc/self/status') if line.startswith('NoNewPrivs')]
    return f"{os.environ.get('STOKER_INSTANCE', '-')} {nnp[0]} {os.getuid()}"
"""


@pytest.fixture(autouse=True)
def pool_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOKER_POOL_SIZE", "2")  # read when make_swarm_backend makes a backend


def _source(tmp_path: Path, name: str) -> bytes:
    folder = tmp_path / f"src-{name}"
    write_handler(folder, HANDLER)
    return bundle.pack(folder)


async def _call(record: FunctionRecord, i: int = 0) -> str:
    endpoint = record.endpoints[i % len(record.endpoints)]
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"http://{endpoint.host}:{endpoint.port}/")
    assert reply.status_code == 200, reply.text
    return reply.text


async def _tend_until(backend: SwarmBackend, predicate: Any, timeout: float = 180) -> None:
    """Tend the pool (as the autoscaling process does once a tick) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await backend.tend_pool()
        await asyncio.sleep(0.5)


def _claimed(backend: SwarmBackend) -> list[dict[str, Any]]:
    services = backend.api.services(filters={"label": f"{PLATFORM}={backend.settings.platform}"})
    return [s for s in services if role(s) == POOL_CLAIMED]


def test_a_cold_start_is_served_by_a_pool_replica_until_the_functions_own_replica_is_ready(
    make_swarm_backend: Any, tmp_path: Path
) -> None:
    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        try:
            # A plain source deploy needs no image: the runtime image runs the code from a Swarm config.
            await backend.deploy(FunctionDeployment("sw-warm"), _source(tmp_path, "warm"))
            record = backend.get("sw-warm", "openfaas-fn")
            assert record is not None
            (service,) = backend.api.services(filters={"name": f"{backend.settings.platform}-sw-warm"})
            container = service["Spec"]["TaskTemplate"]["ContainerSpec"]
            assert container["Image"].startswith("stoker/runtime:")
            assert [c["ConfigName"] for c in container["Configs"]] == [service["Spec"]["Labels"][CODE]]
            instance, no_new_privs, uid = (await _call(record)).split()
            assert no_new_privs == "1" and uid != "0"  # set by the replica itself: Swarm cannot set it here

            await _tend_until(backend, lambda: backend.warm_replicas() == 2)
            await backend.scale("sw-warm", "openfaas-fn", 0)
            await _tend_until(backend, lambda: record.available == 0)

            started = time.monotonic()
            await backend.scale("sw-warm", "openfaas-fn", 1)
            assert record.available == 1  # routed at once: a claimed pool replica, specialised
            bridge = record.endpoints[0].instance
            instance = (await _call(record)).split()[0]
            cold_ms = (time.monotonic() - started) * 1000
            assert instance.startswith(f"{backend.settings.platform}-pool-"), instance
            print(f"cold start through the pool: {cold_ms:.0f} ms")  # measured properly in bench/coldstart.py

            # Calls keep succeeding while the function's own replica starts and the bridge is retired.
            served: set[str] = set()
            calls = 0
            while _claimed(backend) or backend.warm_replicas() < 2:
                served.add((await _call(record, calls)).split()[0])
                calls += 1
                await backend.tend_pool()
                await asyncio.sleep(0.2)
                assert time.monotonic() - started < 180, "the bridge was not retired"
            await _tend_until(backend, lambda: record.available == 1)
            last = (await _call(record)).split()[0]
            assert not last.startswith(f"{backend.settings.platform}-pool-"), served

            # The retired bridge stays (with no task) so the function's logs still hold the calls it served.
            async def instances() -> set[str]:
                return {line.instance async for line in backend.logs("sw-warm", "openfaas-fn", None, None, False)}

            deadline = time.monotonic() + 30
            while bridge not in await instances():  # the engine hands logs over shortly after a task stops
                assert time.monotonic() < deadline, await instances()
                await asyncio.sleep(0.5)
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_two_gateways_scaling_at_once_never_claim_the_same_pool_replica(
    make_swarm_backend: Any, tmp_path: Path
) -> None:
    async def scenario() -> None:
        first, second = make_swarm_backend(), make_swarm_backend()
        await first.start()
        await second.start()
        try:
            for name in ("sw-pa", "sw-pb"):
                await first.deploy(FunctionDeployment(name), _source(tmp_path, name))
                await first.scale(name, "openfaas-fn", 0)
            await _tend_until(first, lambda: first.warm_replicas() == 2 and not _claimed(first))
            await second._poll()  # both gateways saw the same two generic replicas
            assert second.warm_replicas() == 2
            a, b = first.get("sw-pa", "openfaas-fn"), second.get("sw-pb", "openfaas-fn")
            assert a is not None and b is not None
            await _tend_until(first, lambda: a.available == 0 and b.available == 0)

            # Both ask for all of the pool at once: between them they get each replica exactly once.
            await asyncio.gather(first.scale("sw-pa", "openfaas-fn", 2), second.scale("sw-pb", "openfaas-fn", 2))
            mine = set(first._functions[("sw-pa", "openfaas-fn")].bridges)
            theirs = set(second._functions[("sw-pb", "openfaas-fn")].bridges)
            assert len(mine) + len(theirs) == 2 and not mine & theirs
            owners = sorted(s["Spec"]["Labels"]["com.stoker.function"] for s in _claimed(first))
            assert owners == sorted(["sw-pa"] * len(mine) + ["sw-pb"] * len(theirs))
            for record in (a, b):
                for i in range(record.available):
                    assert (await _call(record, i)).startswith(f"{first.settings.platform}-pool-")
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_a_pool_replica_that_dies_is_replaced(make_swarm_backend: Any) -> None:
    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        try:
            await _tend_until(backend, lambda: backend.warm_replicas() == 2)
            victim, _ = backend._generic[0]
            name = victim["Spec"]["Name"]
            (container,) = backend.client.containers.list(filters={"label": f"com.docker.swarm.service.name={name}"})
            container.kill()  # its task fails; the restart policy is none: the pool replaces it
            await _tend_until(backend, lambda: backend.pool.failures == 1)  # seen dead: refills back off first
            assert backend.pool.resume_at > time.time() - 1
            await _tend_until(
                backend,
                lambda: backend.warm_replicas() == 2 and name not in {s["Spec"]["Name"] for s, _ in backend._generic},
            )
            assert not backend.api.services(filters={"name": name})
        finally:
            await backend.close()

    asyncio.run(scenario())
