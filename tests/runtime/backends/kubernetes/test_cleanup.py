"""``stoker down`` on Kubernetes (runtime/backends/kubernetes/cleanup.py, issue 14 item 9) against the fake cluster:
what the backend made in its namespace (a source function's Deployment, Service and code ConfigMap, a function
secret) goes; objects stoker did not make stay, and no call goes to another namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.cleanup import tear_down
from runtime.backends.kubernetes.settings import KubeSettings
from stoker import bundle
from stoker.config import Config
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import FakeCluster

NS = "openfaas-fn"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=2.0, drain_timeout_s=5.0)


@pytest.fixture
async def backend(cluster: FakeCluster, config: Config) -> AsyncIterator[KubernetesBackend]:
    b = KubernetesBackend(config, b"k" * 32, cluster.clients(), poll_s=0.02, settings=KubeSettings(runtime_image="r:1"))
    await b.start()
    yield b
    await b.close()


async def test_down_removes_what_the_backend_made_in_its_namespace_only(
    backend: KubernetesBackend, cluster: FakeCluster, config: Config, tmp_path: Path
) -> None:
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text("def handle(event, context):\n    return 'hi'\n")
    backend.secrets.set("api-key", NS, b"s3cret", create=True)
    dep = FunctionDeployment.from_json({"service": "hello", "secrets": ["api-key"]}, require_code=False)
    await backend.deploy(dep, bundle.pack(folder))
    core = cluster.clients().core
    core.create_namespaced_config_map(
        NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours"}, "data": {"a": "b"}}
    )
    assert cluster.objects["deployments"] and cluster.objects["services"] and cluster.objects["secrets"]
    await backend.close()
    cluster.calls.clear()

    removed = tear_down(config, cluster.clients())

    assert cluster.objects["deployments"] == {} and cluster.objects["services"] == {}
    assert cluster.objects["secrets"] == {}
    assert list(cluster.objects["configmaps"]) == ["not-ours"]  # made by someone else: kept
    assert "removed deployment openfaas-fn/hello" in removed and "removed secret openfaas-fn/api-key" in removed
    assert {args[0 if method.startswith("list") else 1] for method, args in cluster.calls} == {NS}
