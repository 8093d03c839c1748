"""The swarm backend against the local Docker Engine in swarm mode: deploy, route, scale, secrets, bad input, remove.

The backend runs in the test process on the host, where overlay addresses are not reachable, so it uses the
``published`` route (each task publishes 8080 in host mode on a port the engine picks); the stack test covers the
``overlay`` route with the gateway inside the swarm.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.base import FunctionRecord
from stoker import bundle
from stoker.errors import Conflict, DeployFailed, InvalidRequest, NotFound
from stoker.spec import FunctionDeployment
from tests.platform_fixture import write_handler
from tests.wait_support import wait_until_async

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HANDLER = """\
import os

def handle(event, context):
    path = '/var/openfaas/secrets/token'
    secret = open(path).read() if os.path.exists(path) else '-'
    return f'{VERSION} {secret} {os.getuid()}'
"""


def _source(tmp_path: Path, version: str, broken: bool = False) -> bytes:
    folder = tmp_path / f"src-{version}-{broken}"
    text = HANDLER.replace("{VERSION}", version) if not broken else "import no_such_module\n" + HANDLER
    write_handler(folder, text)
    return bundle.pack(folder)


async def _call(record: FunctionRecord) -> str:
    endpoint = record.endpoints[0]
    async with httpx.AsyncClient(timeout=30) as client:
        reply = await client.get(f"http://{endpoint.host}:{endpoint.port}/")
    assert reply.status_code == 200, reply.text
    return reply.text


async def _until_routed(backend: Any, record: FunctionRecord, n: int) -> None:
    """Wait until the backend routes to ``n`` replicas of the function and asks for ``n``; on time out, say what the
    swarm and the backend saw (a random-order run once timed out here with no trace)."""
    try:
        await wait_until_async(lambda: record.available == n and record.replicas == n, 120, f"{n} routed", poll_s=0.2)
    except AssertionError as exc:
        service, namespace = record.deployment.service, record.deployment.namespace
        tasks = backend.api.tasks(filters={"service": f"{backend.settings.platform}-{service}"})
        seen = [(t["ID"][:12], t["DesiredState"], t["Status"]["State"], t["Status"].get("Err", "")) for t in tasks]
        same = backend.get(service, namespace) is record
        raise AssertionError(
            f"{exc}: routed {record.available} of {record.replicas} (the record still the backend's: {same}); "
            f"the swarm's tasks: {seen}"
        ) from None


def test_deploy_scale_update_and_remove(make_swarm_backend: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        try:
            dep = FunctionDeployment("sw-echo", labels={"team": "a"}, limits={"memory": "128Mi", "cpu": "0.5"})
            await backend.deploy(dep, _source(tmp_path, "v1"))
            record = backend.get("sw-echo", "openfaas-fn")
            assert record is not None and record.available >= 1
            version, secret, uid = (await _call(record)).split()
            assert (version, secret) == ("v1", "-") and uid != "0"

            # The engine knows everything: a second gateway (fresh backend) sees the function and its replica.
            other = make_swarm_backend()
            await other.start()
            try:
                seen = other.get("sw-echo", "openfaas-fn")
                assert seen is not None and seen.deployment.labels == {"team": "a"}
                assert seen.deployment.limits == {"memory": "128Mi", "cpu": "0.5"}
                await wait_until_async(lambda: seen.available == 1, 120, poll_s=0.2)
            finally:
                await other.close()

            # The service carries the hardening and the resources.
            engine = backend.client.api
            (service,) = engine.services(filters={"name": f"{backend.settings.platform}-sw-echo"})
            spec = service["Spec"]["TaskTemplate"]
            container = spec["ContainerSpec"]
            assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
            assert container["User"] not in ("", "0", "root") and spec["Resources"]["Limits"]["NanoCPUs"] == 5e8
            assert service["Spec"]["UpdateConfig"]["Order"] == "start-first"
            assert service["Spec"]["UpdateConfig"]["FailureAction"] == "rollback"

            await backend.scale("sw-echo", "openfaas-fn", 3)
            await _until_routed(backend, record, 3)
            assert len({(e.host, e.port) for e in record.endpoints}) == 3
            await backend.scale("sw-echo", "openfaas-fn", 1)
            await _until_routed(backend, record, 1)

            await backend.deploy(dep, _source(tmp_path, "v2"))
            assert (await _call(record)).startswith("v2 ")

            await backend.remove("sw-echo", "openfaas-fn")
            assert backend.get("sw-echo", "openfaas-fn") is None
            assert not engine.services(filters={"name": f"{backend.settings.platform}-sw-echo"})
            with pytest.raises(NotFound):
                await backend.remove("sw-echo", "openfaas-fn")
            with pytest.raises(NotFound):
                await backend.scale("sw-echo", "openfaas-fn", 2)
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_bad_deploys_fail_with_the_reason_and_keep_the_old_version(make_swarm_backend: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        try:
            with pytest.raises(DeployFailed, match="no_such_module"):
                await backend.deploy(FunctionDeployment("sw-broken"), _source(tmp_path, "v1", broken=True))
            assert backend.get("sw-broken", "openfaas-fn") is None
            assert not backend.client.api.services(filters={"name": f"{backend.settings.platform}-sw-broken"})

            with pytest.raises(InvalidRequest, match="memory"):
                await backend.deploy(FunctionDeployment("sw-bad", limits={"memory": "lots"}), _source(tmp_path, "v1"))
            with pytest.raises(InvalidRequest, match="secret"):
                await backend.deploy(FunctionDeployment("sw-bad", secrets=["nope"]), _source(tmp_path, "v1"))

            dep = FunctionDeployment("sw-keep")
            await backend.deploy(dep, _source(tmp_path, "v1"))
            with pytest.raises(DeployFailed, match="previous version keeps serving"):
                await backend.deploy(dep, _source(tmp_path, "v2", broken=True))
            record = backend.get("sw-keep", "openfaas-fn")
            assert record is not None and record.available >= 1
            assert (await _call(record)).startswith("v1 ")
            await backend.remove("sw-keep", "openfaas-fn")
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_secrets_are_docker_secrets_mounted_as_files(make_swarm_backend: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        store = backend.secrets
        try:
            store.set("token", "openfaas-fn", b"s3cret", create=True)
            with pytest.raises(Conflict):
                store.set("token", "openfaas-fn", b"again", create=True)
            with pytest.raises(NotFound):
                store.set("other", "openfaas-fn", b"x", create=False)
            assert store.names("openfaas-fn") == ["token"] and store.missing(["token", "x"], "openfaas-fn") == ["x"]

            await backend.deploy(FunctionDeployment("sw-secret", secrets=["token"]), _source(tmp_path, "v1"))
            record = backend.get("sw-secret", "openfaas-fn")
            assert record is not None
            assert (await _call(record)).split()[1] == "s3cret"
            with pytest.raises(Conflict, match="used by a function"):
                store.delete("token", "openfaas-fn")

            # An update is a new version rolled into the functions that use it.
            store.set("token", "openfaas-fn", b"rotated", create=False)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while not record.endpoints or (await _call(record)).split()[1] != "rotated":
                assert loop.time() < deadline, "the rotated secret never reached the function"
                await asyncio.sleep(0.5)

            await backend.remove("sw-secret", "openfaas-fn")
            # The task stops after its stop delay; until then the secret is in use (409), then it is free.
            deadline = loop.time() + 60
            while True:
                try:
                    store.delete("token", "openfaas-fn")
                    break
                except Conflict:
                    assert loop.time() < deadline
                    await asyncio.sleep(0.5)
            assert store.names("openfaas-fn") == []
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_a_deploy_goes_on_when_another_function_is_removed_while_the_services_are_read(
    make_swarm_backend: Any, tmp_path: Path
) -> None:
    """The backend reads the platform's services, then their tasks by service id; a service another gateway removes in
    between made the engine answer 404 for the tasks, and the deploy waiting on that read failed (a 500)."""

    async def scenario() -> None:
        backend = make_swarm_backend()
        await backend.start()
        try:
            await backend.deploy(FunctionDeployment("sw-stays"), _source(tmp_path, "v1"))
            await backend.deploy(FunctionDeployment("sw-goes"), _source(tmp_path, "v1"))
            engine = backend.client.api
            (goes,) = engine.services(filters={"name": f"{backend.settings.platform}-sw-goes"})
            listed = backend.api.services
            removed: list[str] = []

            def services(*args: Any, **kwargs: Any) -> Any:
                found = listed(*args, **kwargs)
                if not removed and any(s["ID"] == goes["ID"] for s in found):
                    engine.remove_service(goes["ID"])  # gone after it was listed, before its tasks are read
                    removed.append(goes["ID"])
                return found

            backend.api.services = services
            await backend.deploy(FunctionDeployment("sw-stays"), _source(tmp_path, "v2"))
            assert removed, "the removal never fell between the two reads"
            record = backend.get("sw-stays", "openfaas-fn")
            assert record is not None and (await _call(record)).split()[0] == "v2"
        finally:
            await backend.close()

    asyncio.run(scenario())
