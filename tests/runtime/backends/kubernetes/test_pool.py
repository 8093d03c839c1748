"""The Kubernetes warm pool against the fake cluster: generic pool pods (real replica processes where a test
specialises them), claims, bridges and tending."""

from __future__ import annotations

import asyncio
import base64
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime.backends.kubernetes import pool as k8s_pool
from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from runtime.backends.pool import replica_key
from stoker import bundle
from stoker.config import Config
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import FakeCluster, validate
from tests.runtime.backends.kubernetes.test_backend import NS, until

KEY = b"p" * 32
RUNTIME = "registry.example/stoker-runtime:7"
HANDLER = (
    "import os\ndef handle(event, context):\n    return f'{context.function_name} says {os.environ[\"GREETING\"]}'\n"
)
pytestmark = pytest.mark.timeout(120)


def code(tmp_path: Path, text: str = HANDLER) -> bytes:
    folder = tmp_path / f"code-{bundle.digest(text.encode())}"
    folder.mkdir(exist_ok=True)
    (folder / "handler.py").write_text(text)
    return bundle.pack(folder)


def dep(name: str, **fields: object) -> FunctionDeployment:
    return FunctionDeployment.from_json(
        {"service": name, "envVars": {"GREETING": "hello"}, **fields}, require_code=False
    )


def make_backend(cluster: FakeCluster, tmp_path: Path, pool_size: int) -> KubernetesBackend:
    config = Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=5.0, drain_timeout_s=5.0, pool_size=pool_size)
    b = KubernetesBackend(config, KEY, cluster.clients(), poll_s=0.02, settings=KubeSettings(runtime_image=RUNTIME))
    b.replica_port = cluster.pool_port
    return b


@pytest.fixture
async def backend(cluster: FakeCluster, tmp_path: Path) -> AsyncIterator[KubernetesBackend]:
    b = make_backend(cluster, tmp_path, 2)
    await b.start()
    yield b
    await b.close()


def call(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as response:
        return bytes(response.read()).decode()


async def at_zero(b: KubernetesBackend, cluster: FakeCluster, name: str, data: bytes) -> None:
    """A source function deployed and scaled to zero; its own pods will start but never become ready."""
    await b.deploy(dep(name), data)
    await b.scale(name, NS, 0)
    await until(lambda: cluster.pods(name) == [])
    cluster.behaviour[RUNTIME] = "manual"


async def test_tend_pool_fills_the_pool_with_hardened_pods_each_with_its_own_key(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.tend_pool()
    pods = cluster.pool_pods()
    assert len(pods) == 2
    for pod in pods:
        name = pod["metadata"]["name"]
        assert name.startswith("stoker-pool-") and pod["metadata"]["labels"]["stoker.dev/pool"] == "generic"
        validate({k: v for k, v in pod.items() if k != "status"})  # (the fake validates every write too)
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["image"] == RUNTIME and container["readinessProbe"]["httpGet"]["path"] == "/_/ready"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["STOKER_POOL"] == "1" and env["STOKER_POOL_DIR"] == "/tmp/stoker-fn"
        assert env["STOKER_POOL_KEY_FILE"] == "/var/stoker/pool/key"
        assert {"name": "pool-key", "mountPath": "/var/stoker/pool", "readOnly": True} in container["volumeMounts"]
        secret = cluster.secrets[name]
        validate(secret)
        assert base64.b64decode(secret["data"]["key"]) == replica_key(KEY, name) != KEY
    await until(lambda: backend.warm_replicas() == 2)
    await backend.tend_pool()
    assert len(cluster.pool_pods()) == 2  # full: nothing more
    assert backend.secrets.names(NS) == []  # pool keys are not function secrets


async def test_a_pool_pod_that_fails_is_replaced_with_its_key(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2)
    failed = cluster.pool_pods()[0]["metadata"]["name"]
    cluster.fail_pod(failed)
    await until(lambda: backend.warm_replicas() == 1)
    await backend.tend_pool()
    assert failed not in {p["metadata"]["name"] for p in cluster.pool_pods()} and failed not in cluster.secrets
    await until(lambda: backend.warm_replicas() == 2)
    assert len(cluster.secrets) == 2


async def test_orphaned_pool_keys_are_deleted_after_a_grace_period(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    cluster.clients().core.create_namespaced_secret(NS, k8s_pool.secret("stoker-pool-gone", NS, b"x" * 32))
    await backend.tend_pool()
    assert "stoker-pool-gone" in cluster.secrets  # its pod may be being created
    await backend.tend_pool(now=time.time() + 120)
    assert "stoker-pool-gone" not in cluster.secrets and len(cluster.secrets) == 2


async def test_a_failed_specialisation_deletes_the_pod_and_the_deployment_scales_as_usual(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    await at_zero(backend, cluster, "hello", code(tmp_path))
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2)
    await backend.scale("hello", NS, 1)  # nothing listens in the simulated pool pods: the claim fails
    assert len(cluster.called("patch_namespaced_pod")) == 1
    assert len(cluster.called("delete_namespaced_pod")) == 1 and len(cluster.pool_pods()) == 1
    assert cluster.objects["deployments"]["hello"]["spec"]["replicas"] == 1
    record = backend.get("hello", NS)
    assert record is not None and record.endpoints == []


async def test_functions_a_pool_pod_cannot_run_are_not_claimed(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    backend.secrets.set("token", NS, b"1", create=True)
    await backend.deploy(dep("secretive", secrets=["token"]), code(tmp_path))
    await backend.deploy(dep("imaged", image="registry.example/imaged:1"), None)
    await backend.deploy(dep("limited", limits={"memory": "1Gi"}), code(tmp_path))
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2)
    for name in ("secretive", "imaged", "limited"):
        await backend.scale(name, NS, 0)
        await backend.scale(name, NS, 1)
    assert cluster.called("patch_namespaced_pod") == []


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [True], indirect=True)
async def test_scaling_from_zero_claims_a_pool_pod_that_answers_at_once_then_retires_it(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    await at_zero(backend, cluster, "hello", code(tmp_path))
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2, timeout=30)
    record = backend.get("hello", NS)
    assert record is not None and record.endpoints == []

    await backend.scale("hello", NS, 1)
    (endpoint,) = record.endpoints  # routed to at once: the Deployment's own pod is not ready
    assert await asyncio.to_thread(call, endpoint.host, endpoint.port) == "hello says hello"
    bridge = cluster.objects["pods"][endpoint.instance]
    labels = bridge["metadata"]["labels"]
    assert labels["faas_function"] == "hello" and labels["stoker.dev/pool"] == "claimed"
    assert "pod-template-hash" not in labels  # the ReplicaSet does not adopt it
    assert (
        labels["com.stoker.version"]
        == cluster.objects["deployments"]["hello"]["spec"]["template"]["metadata"]["labels"]["com.stoker.version"]
    )
    assert cluster.objects["deployments"]["hello"]["spec"]["replicas"] == 1  # the bridge is only a bridge
    assert backend.warm_replicas() == 1
    # Its readiness probe passes: the Service's EndpointSlice lists it too (other gateways route to it).
    await until(lambda: endpoint.instance in str((cluster.slice_of("hello") or {}).get("endpoints")), timeout=10)
    await backend.tend_pool()
    assert endpoint.instance in cluster.objects["pods"]  # still bridging
    assert len(cluster.pool_pods("generic")) == 2  # refilled

    cluster.make_ready("hello")  # the Deployment's own pod is ready: the bridge goes, drained
    deadline = time.monotonic() + 15
    while backend.pool.bridges("hello"):  # tended once a tick, as the autoscaler does
        assert time.monotonic() < deadline, "the bridge was not retired"
        await backend.tend_pool()
        await asyncio.sleep(0.05)
    await until(lambda: endpoint.instance not in cluster.objects["pods"], timeout=15)
    assert endpoint.instance not in cluster.secrets
    assert len(cluster.pool_pods("generic")) == 2 and len(cluster.pool_pods()) == 2  # the pool is full again
    await until(
        lambda: [e.instance for e in record.endpoints] == [p["metadata"]["name"] for p in cluster.pods("hello")]
    )


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [True], indirect=True)
async def test_two_gateways_claiming_at_once_never_get_the_same_pod(cluster: FakeCluster, tmp_path: Path) -> None:
    a, b = make_backend(cluster, tmp_path, 2), make_backend(cluster, tmp_path, 2)
    await a.start()
    await b.start()
    try:
        await at_zero(a, cluster, "one", code(tmp_path))
        cluster.behaviour.pop(RUNTIME)
        await at_zero(a, cluster, "two", code(tmp_path))
        await a.tend_pool()
        await until(lambda: a.warm_replicas() == 2 and b.warm_replicas() == 2, timeout=30)
        await until(lambda: b.get("one", NS) is not None and b.get("two", NS) is not None)
        await asyncio.gather(a.scale("one", NS, 1), b.scale("two", NS, 1))
        one, two = a.get("one", NS), b.get("two", NS)
        assert one is not None and two is not None
        assert len(one.endpoints) == 1 and len(two.endpoints) == 1
        assert one.endpoints[0].instance != two.endpoints[0].instance
        assert await asyncio.to_thread(call, one.endpoints[0].host, one.endpoints[0].port) == "one says hello"
        assert await asyncio.to_thread(call, two.endpoints[0].host, two.endpoints[0].port) == "two says hello"
    finally:
        await a.close()
        await b.close()


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [True], indirect=True)
async def test_a_claim_that_loses_the_race_for_a_pod_takes_the_next(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    await at_zero(backend, cluster, "hello", code(tmp_path))
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2, timeout=30)
    taken: list[str] = []

    def another_gateway_claims(pod: str) -> None:
        taken.append(pod)
        cluster.relabel("pods", pod, {"stoker.dev/pool": "claimed", "faas_function": "other"})

    cluster.before_next_pod_patch(another_gateway_claims)
    await backend.scale("hello", NS, 1)
    (first, second) = cluster.called("patch_namespaced_pod")
    assert first[0] == taken[0] and second[0] != taken[0]  # 409 Conflict on the first; the second one taken
    record = backend.get("hello", NS)
    assert record is not None and [e.instance for e in record.endpoints] == [second[0]]
    assert cluster.objects["pods"][taken[0]]["metadata"]["labels"]["faas_function"] == "other"
    assert await asyncio.to_thread(call, record.endpoints[0].host, record.endpoints[0].port) == "hello says hello"


@pytest.mark.slow
@pytest.mark.parametrize("cluster", [True], indirect=True)
async def test_removing_a_function_deletes_its_bridges(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    await at_zero(backend, cluster, "hello", code(tmp_path))
    await backend.tend_pool()
    await until(lambda: backend.warm_replicas() == 2, timeout=30)
    await backend.scale("hello", NS, 1)
    (bridge,) = backend.pool.bridges("hello")
    await backend.remove("hello", NS)
    await until(lambda: bridge not in cluster.objects["pods"], timeout=15)
    assert bridge not in cluster.secrets
