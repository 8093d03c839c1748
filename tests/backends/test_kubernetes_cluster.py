"""The Kubernetes backend against a real cluster (opt-in; docs/kubernetes.md shows how to run it with kind).

Runs only when ``KUBECONFIG`` is set and ``STOKER_K8S_IMAGE`` names a function image the cluster can pull (for
example one built with ``stoker build functions/hello`` and loaded with ``kind load docker-image``). The namespace
(``STOKER_K8S_TEST_NAMESPACE``, default ``stoker-test``) must exist; the tests create and delete their functions in
it. The backend calls pod IPs directly (as the gateway does), so the test process must reach the pod network: with
kind on Linux, a route to the pod CIDR through the node's address does it (docs/kubernetes.md).
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.backends.kubernetes import KubernetesBackend
from stoker.config import Config
from stoker.errors import DeployFailed
from stoker.spec import FunctionDeployment

IMAGE = os.environ.get("STOKER_K8S_IMAGE", "")
NAMESPACE = os.environ.get("STOKER_K8S_TEST_NAMESPACE", "stoker-test")
pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("KUBECONFIG") and IMAGE), reason="needs KUBECONFIG and STOKER_K8S_IMAGE (a real cluster)"
    ),
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
