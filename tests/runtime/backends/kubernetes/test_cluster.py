"""The Kubernetes backend against a real cluster (opt-in; docs/kubernetes.md shows how to run it with kind).

Runs only when ``KUBECONFIG`` is set: the image case when ``STOKER_K8S_IMAGE`` names a function image the cluster can
pull (for example one built with ``stoker build functions/hello`` and loaded with ``kind load docker-image``), the
source and warm pool case when ``STOKER_K8S_RUNTIME_IMAGE`` names the runtime image (``stoker base-image``). The
namespace (``STOKER_K8S_TEST_NAMESPACE``, default ``stoker-test``) must exist; the tests create and delete their
functions (and pool pods) in it. The backend calls pod IPs directly (as the gateway does), so the test process must
reach the pod network: with kind on Linux, a route to the pod CIDR through the node's address does it
(docs/kubernetes.md).
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from stoker import bundle
from stoker.config import Config
from stoker.errors import DeployFailed
from stoker.spec import FunctionDeployment

IMAGE = os.environ.get("STOKER_K8S_IMAGE", "")
RUNTIME_IMAGE = os.environ.get("STOKER_K8S_RUNTIME_IMAGE", "")
NAMESPACE = os.environ.get("STOKER_K8S_TEST_NAMESPACE", "stoker-test")
pytestmark = [
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="needs KUBECONFIG (a real cluster)"),
    pytest.mark.timeout(600),
]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[KubernetesBackend]:
    config = Config.from_env({}, home=tmp_path, k8s_namespace=NAMESPACE, k8s_deploy_timeout_s=180.0)
    b = KubernetesBackend(config, b"k")
    await b.start()
    yield b
    for record in b.functions():
        await b.remove(record.deployment.service, NAMESPACE)
    await b.close()


def call(host: str, port: int, body: bytes) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/", data=body), timeout=10) as r:
        return bytes(r.read())


@pytest.mark.skipif(not IMAGE, reason="needs STOKER_K8S_IMAGE (a function image the cluster pulls)")
async def test_deploy_call_scale_update_and_remove_on_a_real_cluster(backend: KubernetesBackend) -> None:
    name = f"k8s-it-{int(time.time()) % 100000}"
    dep = FunctionDeployment.from_json({"service": name, "namespace": NAMESPACE, "image": IMAGE})
    await backend.deploy(dep, None)
    record = backend.get(name, NAMESPACE)
    assert record is not None and record.endpoints
    endpoint = record.endpoints[0]
    assert await asyncio.to_thread(call, endpoint.host, endpoint.port, b"k8s")

    await backend.scale(name, NAMESPACE, 2)
    deadline = time.monotonic() + 180
    while len(record.endpoints) < 2:
        assert time.monotonic() < deadline, "the second replica never became ready"
        await asyncio.sleep(0.5)

    bad = FunctionDeployment.from_json({"service": name, "namespace": NAMESPACE, "image": IMAGE + "-does-not-exist"})
    backend.deploy_timeout_s = 60
    with pytest.raises(DeployFailed, match="previous version keeps serving"):
        await backend.deploy(bad, None)
    assert record.endpoints and record.deployment.image == IMAGE

    lines = [line async for line in backend.logs(name, NAMESPACE, 50, None, False)]
    assert lines

    await backend.remove(name, NAMESPACE)
    assert backend.get(name, NAMESPACE) is None


async def wait_for(check: Callable[[], object], what: str, tend: KubernetesBackend | None = None) -> None:
    deadline = time.monotonic() + 180
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within 180 s"
        if tend is not None:
            await tend.tend_pool()
        await asyncio.sleep(1)


@pytest.mark.skipif(not RUNTIME_IMAGE, reason="needs STOKER_K8S_RUNTIME_IMAGE (the runtime image the cluster pulls)")
async def test_a_source_function_scaled_from_zero_is_served_by_a_pool_pod_on_a_real_cluster(tmp_path: Path) -> None:
    config = Config.from_env({}, home=tmp_path, k8s_namespace=NAMESPACE, k8s_deploy_timeout_s=180.0, pool_size=1)
    b = KubernetesBackend(
        config, b"cluster-test-platform-key-32bytes", settings=KubeSettings(runtime_image=RUNTIME_IMAGE)
    )
    await b.start()
    name = f"k8s-pool-{int(time.time()) % 100000}"
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "handler.py").write_text("def handle(event, context):\n    return 'from ' + context.function_name\n")
    try:
        dep = FunctionDeployment.from_json({"service": name, "namespace": NAMESPACE}, require_code=False)
        await b.deploy(dep, bundle.pack(folder))  # the runtime image, its code from a ConfigMap
        record = b.get(name, NAMESPACE)
        assert record is not None
        await b.scale(name, NAMESPACE, 0)
        await wait_for(lambda: not record.endpoints, "scale to zero")
        await wait_for(lambda: b.warm_replicas() >= 1, "a started pool pod", tend=b)

        await b.scale(name, NAMESPACE, 1)
        assert b.pool.claimed == 1 and record.endpoints, "no pool pod was claimed"
        (bridge,) = b.pool.bridges(name)
        endpoint = next(e for e in record.endpoints if e.instance == bridge)
        assert await asyncio.to_thread(call, endpoint.host, endpoint.port, b"") == f"from {name}".encode()

        await wait_for(lambda: not b.pool.bridges(name), "the bridge retired", tend=b)  # its own pod is ready
        assert record.endpoints and all(e.instance != bridge for e in record.endpoints)
    finally:
        if b.get(name, NAMESPACE) is not None:
            await b.remove(name, NAMESPACE)
        for pod in list(b.pool.pods):
            await b.pool.delete(pod)
        await b.close()
