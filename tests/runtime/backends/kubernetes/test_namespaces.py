"""``/system/namespace/{name}`` on Kubernetes (issue 15, item 7): a gateway serves one namespace
(``STOKER_K8S_NAMESPACE``), which reads as a namespace; creating, changing or removing namespaces is 501."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import GatewayApp
from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from stoker.config import Config
from tests.fakes.kubernetes import FakeCluster
from tests.runtime.backends.kubernetes.test_source import KEY, RUNTIME

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def gateway(cluster: FakeCluster, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = Config.from_env({}, home=tmp_path, pool_size=0, autoscale=False)
    backend = KubernetesBackend(
        config, KEY, cluster.clients(), poll_s=0.02, settings=KubeSettings(runtime_image=RUNTIME)
    )
    await backend.start()
    app = GatewayApp(config, backend, "password")
    transport = httpx.ASGITransport(app=app.starlette)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", auth=("admin", "password")) as client:
        yield client
    await backend.close()


async def test_the_one_namespace_reads_and_nothing_changes(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/system/namespace/openfaas-fn")).json() == {
        "name": "openfaas-fn",
        "labels": {"openfaas": "1"},
    }
    assert (await gateway.get("/system/namespace/team-a")).status_code == 404
    for method, path in (("POST", "/system/namespace/"), ("PUT", "/system/namespace/openfaas-fn")):
        r = await gateway.request(method, path, json={"name": "team-a" if method == "POST" else "openfaas-fn"})
        assert r.status_code == 501, (method, r.text)
        assert "openfaas-fn" in r.json()["error"]
    r = await gateway.request("DELETE", "/system/namespace/team-a")
    assert r.status_code == 501
    assert (await gateway.get("/system/namespaces")).json() == ["openfaas-fn"]
