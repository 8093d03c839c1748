"""The Kubernetes backend's logic against the in-memory fake cluster (tests/fakes/kubernetes.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from runtime.backends.kubernetes.backend import KubernetesBackend
from stoker.config import Config
from stoker.errors import DeployFailed, InvalidRequest, NotFound
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import FakeCluster, is_ready

NS = "openfaas-fn"
pytestmark = pytest.mark.timeout(60)


def spec(name: str = "hello", image: str = "registry.example/hello:1", **fields: object) -> FunctionDeployment:
    return FunctionDeployment.from_json({"service": name, "image": image, **fields})


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def looked_again(cluster: FakeCluster, task: asyncio.Task[None], times: int = 2) -> None:
    """Wait until the deploy ``task`` has listed the pods ``times`` more times (it saw the state as it is now, and
    went on waiting), or has ended."""
    seen = len(cluster.called("list_namespaced_pod"))
    await until(lambda: task.done() or len(cluster.called("list_namespaced_pod")) >= seen + times)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=2.0, drain_timeout_s=5.0)


@pytest.fixture
async def backend(cluster: FakeCluster, config: Config) -> AsyncIterator[KubernetesBackend]:
    b = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    await b.start()
    yield b
    await b.close()


def addresses(b: KubernetesBackend, name: str = "hello") -> set[str]:
    record = b.get(name, NS)
    assert record is not None
    return {e.host for e in record.endpoints}


def pod_ips(cluster: FakeCluster, name: str = "hello", ready_only: bool = True) -> set[str]:
    return {
        p["status"]["podIP"]
        for p in cluster.pods(name)
        if (not ready_only or is_ready(p)) and "deletionTimestamp" not in p["metadata"]
    }


async def test_deploy_creates_deployment_and_service_and_routes_to_the_ready_pod(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(labels={"com.openfaas.scale.min": "2"}), None)
    record = backend.get("hello", NS)
    assert record is not None and record.replicas == 2
    assert {(e.host, e.port) for e in record.endpoints} == {(ip, 8080) for ip in pod_ips(cluster)}
    assert len(record.endpoints) == 2
    dep = cluster.objects["deployments"]["hello"]
    assert dep["metadata"]["labels"]["faas_function"] == "hello"
    assert json.loads(dep["metadata"]["annotations"]["com.stoker.deployment"])["image"] == "registry.example/hello:1"
    assert cluster.objects["services"]["hello"]["spec"]["selector"] == {"faas_function": "hello"}
    assert backend.functions() == [record] and backend.namespaces() == [NS]


async def test_deploy_waits_for_the_first_ready_replica(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    cluster.behaviour["registry.example/slow:1"] = "manual"
    task = asyncio.create_task(backend.deploy(spec(image="registry.example/slow:1"), None))
    await until(lambda: cluster.pods("hello"))
    await cluster.quiesced()  # the pod is as it will stay: started, not ready
    await looked_again(cluster, task)
    assert not task.done()
    record = backend.get("hello", NS)
    assert record is not None and record.endpoints == []  # known (calls wait for it) but nothing to route to yet
    cluster.make_ready("hello")
    await asyncio.wait_for(task, 5)
    assert addresses(backend) == pod_ips(cluster)


async def test_a_crashing_function_fails_the_deploy_with_its_log_and_leaves_nothing(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    cluster.behaviour["registry.example/broken:1"] = "crash"
    with pytest.raises(DeployFailed) as failed:
        await backend.deploy(spec(image="registry.example/broken:1"), None)
    assert "CrashLoopBackOff" in str(failed.value)
    assert "No module named 'missing'" in str(failed.value)  # the container's last words
    assert backend.get("hello", NS) is None
    assert cluster.objects["deployments"] == {} and cluster.objects["services"] == {}
    await until(lambda: cluster.pods("hello") == [])  # the garbage collector deletes its pods after it


async def test_no_ready_pod_in_time_fails_the_deploy(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    cluster.behaviour["registry.example/never:1"] = "manual"
    with pytest.raises(DeployFailed, match="no replica became ready within 2s"):
        await backend.deploy(spec(image="registry.example/never:1"), None)
    assert cluster.objects["deployments"] == {}


async def test_update_rolls_without_losing_capacity_and_keeps_the_replica_count(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    await backend.scale("hello", NS, 3)
    await until(lambda: len(addresses(backend)) == 3)
    old = addresses(backend)
    cluster.behaviour["registry.example/hello:2"] = "manual"
    task = asyncio.create_task(backend.deploy(spec(image="registry.example/hello:2"), None))
    await until(lambda: len(cluster.pods("hello")) == 4)  # maxSurge 1: one new pod beside the three old ones
    await cluster.quiesced()  # no fifth pod, no old one going: the rollout waits for the new pod
    await looked_again(cluster, task)
    assert not task.done() and addresses(backend) == old  # the old version serves until the new one is ready
    assert len(cluster.pods("hello")) == 4
    surge = 0
    while not (addresses(backend) == pod_ips(cluster) and len(pod_ips(cluster)) == 3 and not pod_ips(cluster) & old):
        cluster.make_ready("hello")  # each new pod as it starts
        running = [p for p in cluster.pods("hello") if "deletionTimestamp" not in p["metadata"]]
        surge = max(surge, len(running))
        ready = [p for p in running if is_ready(p)]
        assert len(ready) >= 3, "maxUnavailable 0: never fewer ready pods than replicas"
        await asyncio.sleep(0.01)
    await asyncio.wait_for(task, 5)
    assert surge == 4  # never more than one pod over the replica count
    assert len(addresses(backend)) == 3 and not addresses(backend) & old
    record = backend.get("hello", NS)
    assert record is not None and record.replicas == 3 and record.deployment.image == "registry.example/hello:2"
    strategy = cluster.objects["deployments"]["hello"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}


async def test_a_failed_update_rolls_back_and_the_old_version_keeps_serving(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    old = addresses(backend)
    cluster.behaviour["registry.example/hello:bad"] = "pull"
    with pytest.raises(DeployFailed, match=r"previous version keeps serving.*(ErrImagePull|ImagePullBackOff)"):
        await backend.deploy(spec(image="registry.example/hello:bad"), None)
    deployed = cluster.objects["deployments"]["hello"]
    assert deployed["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/hello:1"
    await until(lambda: len(cluster.pods("hello")) == 1)
    assert addresses(backend) == old
    record = backend.get("hello", NS)
    assert record is not None and record.deployment.image == "registry.example/hello:1"


async def test_scale_uses_the_scale_subresource(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.deploy(spec(), None)
    await backend.scale("hello", NS, 3)
    assert cluster.called("patch_namespaced_deployment_scale") == [("hello", NS, {"spec": {"replicas": 3}})]
    await until(lambda: len(addresses(backend)) == 3)
    await backend.scale("hello", NS, 0)
    await until(lambda: addresses(backend) == set())
    record = backend.get("hello", NS)
    assert record is not None and record.replicas == 0
    assert not cluster.called("replace_namespaced_deployment")
    with pytest.raises(NotFound):
        await backend.scale("nope", NS, 1)


async def test_endpoints_follow_the_slices_and_keep_their_in_flight_counts(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(labels={"com.openfaas.scale.min": "2"}), None)
    record = backend.get("hello", NS)
    assert record is not None
    first, second = record.endpoints
    first.inflight = 7  # as the gateway counts
    pod = next(p for p in cluster.pods("hello") if p["status"]["podIP"] == second.host)
    cluster.set_ready(pod["metadata"]["name"], False)
    await until(lambda: len(record.endpoints) == 1)
    assert record.endpoints[0] is first and first.inflight == 7
    cluster.set_ready(pod["metadata"]["name"], True)
    await until(lambda: len(record.endpoints) == 2)
    assert first in record.endpoints


async def test_remove_drains_calls_in_flight_then_deletes(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.deploy(spec(), None)
    record = backend.get("hello", NS)
    assert record is not None
    endpoint = record.endpoints[0]
    endpoint.inflight = 1
    task = asyncio.create_task(backend.remove("hello", NS))
    await until(lambda: backend.get("hello", NS) is None)  # no new calls
    await cluster.quiesced()  # had it deleted anything, the cluster would have seen it
    assert not task.done() and "hello" in cluster.objects["deployments"]  # the call in flight still has its pod
    endpoint.inflight = 0
    await asyncio.wait_for(task, 5)
    assert cluster.objects["deployments"] == {} and cluster.objects["services"] == {}
    await cluster.quiesced()  # every watch event of the deletion heard
    assert backend.get("hello", NS) is None  # and they do not bring it back
    with pytest.raises(NotFound):
        await backend.remove("hello", NS)


async def test_a_restarted_gateway_rebuilds_everything_from_the_api(cluster: FakeCluster, config: Config) -> None:
    first = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    await first.start()
    first.secrets.set("api-key", NS, b"s3cret", create=True)
    dep = spec(
        envVars={"MODE": "fast"},
        labels={"com.openfaas.scale.min": "2", "team": "web"},
        annotations={"com.stoker.timeout": "5s", "note": "free text: anything"},
        secrets=["api-key"],
        limits={"memory": "128Mi"},
        envProcess="python index.py",
    )
    await first.deploy(dep, None)
    original = first.get("hello", NS)
    assert original is not None
    await first.close()

    second = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    await second.start()
    try:
        record = second.get("hello", NS)
        assert record is not None
        assert record.deployment == dep and record.deployment.settings.timeout_s == 5
        assert record.replicas == 2 and abs(record.created_at - original.created_at) < 1
        assert {e.host for e in record.endpoints} == pod_ips(cluster)
        assert second.secrets.names(NS) == ["api-key"]
    finally:
        await second.close()


async def test_every_gateway_sees_what_another_one_deploys(cluster: FakeCluster, config: Config) -> None:
    a = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    b = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    await a.start()
    await b.start()
    try:
        await a.deploy(spec(), None)
        await until(lambda: b.get("hello", NS) is not None and b.get("hello", NS).endpoints)  # type: ignore[union-attr]
        await a.scale("hello", NS, 2)
        await until(lambda: len(addresses(b)) == 2)
        await a.remove("hello", NS)
        await until(lambda: b.get("hello", NS) is None)
    finally:
        await a.close()
        await b.close()


async def test_watches_recover_from_expiry_by_listing_again(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.deploy(spec(), None)
    cluster.expire_watches()
    await backend.scale("hello", NS, 2)  # a change made while the watches start over
    await until(lambda: len(addresses(backend)) == 2)
    assert len(cluster.called("list_namespaced_endpoint_slice")) >= 2  # listed again after 410 Gone


async def test_requests_kubernetes_cannot_run_are_refused_before_any_change(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    with pytest.raises(InvalidRequest, match="bad code bundle"):
        await backend.deploy(FunctionDeployment(service="hello"), b"bundle bytes")  # as the gateway passes it
    with pytest.raises(InvalidRequest, match="stoker build"):
        await backend.deploy(FunctionDeployment(service="hello", source="eA=="), None)
    with pytest.raises(InvalidRequest, match="namespace 'openfaas-fn' only"):
        await backend.deploy(spec(namespace="other"), None)
    with pytest.raises(InvalidRequest, match="label"):
        await backend.deploy(spec(labels={"team": "not a valid value"}), None)
    with pytest.raises(InvalidRequest, match="quantity"):
        await backend.deploy(spec(limits={"memory": "lots"}), None)
    with pytest.raises(InvalidRequest, match="api-key"):
        await backend.deploy(spec(secrets=["api-key"]), None)
    writes = cluster.writes()
    assert writes == []


async def test_logs_merge_the_pods_in_time_order(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.deploy(spec(labels={"com.openfaas.scale.min": "2"}), None)
    one, two = sorted(p["metadata"]["name"] for p in cluster.pods("hello"))
    cluster.logs[one] = "2030-01-01T00:00:01Z call a\n2030-01-01T00:00:03Z call c\n"
    cluster.logs[two] = "2030-01-01T00:00:02Z call b\n"
    lines = [line async for line in backend.logs("hello", NS, None, None, False)]
    assert [(line.instance, line.text) for line in lines] == [(one, "call a"), (two, "call b"), (one, "call c")]
    lines = [line async for line in backend.logs("hello", NS, 2, None, False)]
    assert [line.text for line in lines] == ["call b", "call c"]
    with pytest.raises(NotFound):
        [line async for line in backend.logs("nope", NS, None, None, False)]


async def test_secrets_are_kubernetes_secrets_mounted_read_only(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    backend.secrets.set("api-key", NS, b"v1", create=True)
    backend.secrets.set("api-key", NS, b"v2", create=False)
    assert cluster.secrets["api-key"]["data"] == {"api-key": "djI="}
    await backend.deploy(spec(secrets=["api-key"]), None)
    pod_spec = cluster.objects["deployments"]["hello"]["spec"]["template"]["spec"]
    mount = next(m for m in pod_spec["containers"][0]["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/var/openfaas/secrets", "readOnly": True}
    volume = next(v for v in pod_spec["volumes"] if v["name"] == "secrets")
    assert volume["projected"]["sources"] == [{"secret": {"name": "api-key"}}]
    backend.secrets.delete("api-key", NS)
    assert backend.secrets.names(NS) == []
    with pytest.raises(NotFound):
        backend.secrets.delete("api-key", NS)


def test_the_backend_is_chosen_by_config_and_its_namespace_checked(tmp_path: Path) -> None:
    from runtime.backends import create_backend
    from stoker.config import ConfigError

    with pytest.raises(ConfigError, match="STOKER_K8S_NAMESPACE"):
        Config.from_env({"STOKER_K8S_NAMESPACE": "Not_A_Namespace"}, home=tmp_path)
    config = Config.from_env({"STOKER_K8S_NAMESPACE": "fns"}, home=tmp_path, backend="kubernetes")
    backend = create_backend(config, b"k")  # no connection before start()
    assert isinstance(backend, KubernetesBackend) and backend.namespaces() == ["fns"]
