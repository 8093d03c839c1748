"""The Kubernetes backend against the API server's own semantics, as the fake (tests/fakes/kubernetes.py) models
them: status written after the write, conditions, watches as seen through a selector, Status errors, server-side
validation and immutable fields, rollouts with terminating pods, image pulls that fail and recover."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from stoker.config import Config
from stoker.errors import BackendUnavailable, Conflict, DeployFailed, InvalidRequest
from tests.fakes.kubernetes import FakeCluster, is_ready, parse_selector, selector_matches
from tests.runtime.backends.kubernetes.test_backend import NS, addresses, pod_ips, spec, until
from tests.runtime.backends.kubernetes.test_source import KEY, RUNTIME, configmaps, dep, source

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def backend(cluster: FakeCluster, tmp_path: Path) -> AsyncIterator[KubernetesBackend]:
    config = Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=4.0, drain_timeout_s=5.0)
    b = KubernetesBackend(config, KEY, cluster.clients(), poll_s=0.02, settings=KubeSettings(runtime_image=RUNTIME))
    await b.start()
    yield b
    await b.close()


def status_of(exc: ApiException) -> dict[str, object]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == exc.status
    return body  # type: ignore[no-any-return]


# --- status is the controller's, written after the write --------------------------------------------------------
async def test_a_stale_status_after_a_replace_is_not_taken_for_a_finished_rollout(
    backend: KubernetesBackend, cluster: FakeCluster, tmp_path: Path
) -> None:
    first = source(tmp_path)
    await backend.deploy(dep(), first)
    # The replace's answer (generation 2, the status of generation 1) arrives after the watch delivered the
    # controller's status for generation 2: the answer must not overwrite it.
    cluster.answer_late("replace_namespaced_deployment", 0.5)
    second = source(tmp_path, "def handle(event, context):\n    return 'v2'\n")
    await backend.deploy(dep(), second)
    answer = cluster.called("replace_namespaced_deployment")[-1]
    assert "status" not in answer[2]  # the status the client sends is ignored either way
    deployed = cluster.objects["deployments"]["hello"]
    assert deployed["metadata"]["generation"] == 2
    # the old code goes once the rollout is complete (the mirror saw observedGeneration catch up)
    await until(lambda: list(configmaps(cluster).values()) == [second], timeout=10)


async def test_the_deployment_status_carries_generation_conditions_and_available_replicas(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(labels={"com.openfaas.scale.min": "2"}), None)
    await asyncio.to_thread(cluster.settle)
    status = cluster.objects["deployments"]["hello"]["status"]
    assert status["observedGeneration"] == 1 and status["availableReplicas"] == status["readyReplicas"] == 2
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }


async def test_a_quota_that_refuses_pods_fails_the_deploy_at_once_with_its_message(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    cluster.quota_pods = 0
    with pytest.raises(DeployFailed, match="exceeded quota") as failed:
        await backend.deploy(spec(), None)
    assert "no replica became ready" not in str(failed.value)  # said why, without waiting for the timeout
    assert cluster.objects["deployments"] == {} and cluster.objects["services"] == {}


async def test_a_rollout_past_its_progress_deadline_is_reported_on_the_function(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    cluster.progress_deadline_s = 0.3
    cluster.behaviour["registry.example/hello:1"] = "manual"  # pods that never become ready from now on
    await backend.scale("hello", NS, 2)
    record = backend.get("hello", NS)
    assert record is not None
    await until(lambda: "timed out progressing" in record.message, timeout=10)
    assert len(addresses(backend)) == 1  # the ready one keeps serving


# --- watches as seen through a selector -------------------------------------------------------------------------
async def test_a_deployment_that_leaves_the_function_selector_is_forgotten_and_comes_back(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    cluster.relabel("deployments", "hello", {"faas_function": None})  # someone took the label off: DELETED
    await until(lambda: backend.get("hello", NS) is None)
    cluster.relabel("deployments", "hello", {"faas_function": "hello"})  # and put it back: ADDED
    await until(lambda: backend.get("hello", NS) is not None and addresses(backend) == pod_ips(cluster))


async def test_watches_recover_from_an_error_event_in_the_stream(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    lists = len(cluster.called("list_namespaced_deployment"))
    cluster.break_watches("deployments", 500)
    await until(lambda: len(cluster.called("list_namespaced_deployment")) > lists, timeout=10)
    await backend.scale("hello", NS, 2)
    await until(lambda: len(addresses(backend)) == 2, timeout=10)


def test_the_watch_stream_follows_the_api_semantics(cluster: FakeCluster) -> None:
    """ADDED/MODIFIED/DELETED as an object enters, changes in and leaves the selector; BOOKMARK when asked for;
    ERROR 410 for a compacted resourceVersion (raised by the client's own Watch)."""
    core = cluster.clients().core
    listed = core.list_namespaced_config_map(NS, label_selector="team in (a,b)")
    rv = listed.metadata.resource_version
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS, "labels": {}}}
    core.create_namespaced_config_map(NS, body)
    cluster.relabel("configmaps", "c", {"team": "a"})
    cluster.relabel("configmaps", "c", {"team": "b"})
    cluster.relabel("configmaps", "c", {"team": "z"})
    watch = cluster.clients().watch()
    seen = [
        (e["type"], e["raw_object"]["metadata"].get("labels", {}).get("team"))
        for e in watch.stream(
            core.list_namespaced_config_map,
            NS,
            label_selector="team in (a,b)",
            resource_version=rv,
            timeout_seconds=1,
            allow_watch_bookmarks=True,
        )
    ]
    assert seen == [("ADDED", "a"), ("MODIFIED", "b"), ("DELETED", "b"), ("BOOKMARK", None)]
    cluster.expire_watches()
    with pytest.raises(ApiException) as gone:
        list(
            cluster.clients()
            .watch()
            .stream(core.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1)
        )
    assert gone.value.status == 410


def test_label_selectors_have_the_full_syntax() -> None:
    labels = {"app": "web", "tier": "front"}
    assert selector_matches(labels, "app=web,tier!=back")
    assert selector_matches(labels, "app==web") and not selector_matches(labels, "app=db")
    assert selector_matches(labels, "tier in (front, back),!missing")
    assert not selector_matches(labels, "tier notin (front)") and selector_matches(labels, "other notin (x)")
    assert selector_matches(labels, "app") and not selector_matches(labels, "!app")
    assert selector_matches(labels, "") and selector_matches(labels, None)
    with pytest.raises(ApiException) as bad:
        parse_selector("app in web")
    assert bad.value.status == 400


# --- errors with a Status body ----------------------------------------------------------------------------------
async def test_a_stale_replace_is_a_409_and_the_other_deploy_is_kept(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    other = cluster.clients("another gateway")

    def deploy_elsewhere(name: str) -> None:  # another gateway deploys image 3 between our read and our replace
        body = copy.deepcopy(cluster.objects["deployments"][name])
        body["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/hello:3"
        body["spec"]["template"]["metadata"]["labels"]["com.stoker.version"] = "other"
        other.apps.replace_namespaced_deployment(name, NS, body)

    cluster.before_next("replace_namespaced_deployment", deploy_elsewhere)
    with pytest.raises(Conflict, match="changed by someone else"):
        await backend.deploy(spec(image="registry.example/hello:2"), None)
    deployed = cluster.objects["deployments"]["hello"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert deployed == "registry.example/hello:3"  # not lost


async def test_a_status_change_between_read_and_replace_is_retried(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    cluster.before_next("replace_namespaced_deployment", lambda name: cluster.relabel("deployments", name, {"x": "1"}))
    await backend.deploy(spec(image="registry.example/hello:2"), None)
    replaces = cluster.called("replace_namespaced_deployment")
    # The first one got 409 Conflict (its resourceVersion was stale) and was retried; the fake's controllers update
    # status in their own thread, as a real one does, which may cost another retry (at most _REPLACE_TRIES in all).
    assert 2 <= len(replaces) <= 5, replaces
    image = cluster.objects["deployments"]["hello"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/hello:2"


async def test_an_object_the_api_server_refuses_is_a_400_with_its_message_and_leaves_nothing(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    huge = {f"note-{i}": "x" * 1000 for i in range(300)}  # over the 256 KiB the server allows in annotations
    with pytest.raises(InvalidRequest, match=r"kubernetes refused create deployment: .*Too long"):
        await backend.deploy(spec(annotations=huge), None)
    assert cluster.objects["deployments"] == {} and cluster.objects["services"] == {}
    wrong = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": NS}, "spec": 1}
    with pytest.raises(ApiException) as refused:
        cluster.clients().apps.create_namespaced_deployment(NS, wrong)
    body = status_of(refused.value)
    assert body["reason"] == "Invalid" and body["code"] == 422


async def test_rbac_refusals_are_a_503_naming_the_role_and_leave_nothing(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    cluster.deny("create_namespaced_deployment")
    with pytest.raises(BackendUnavailable, match=r"forbidden.*cannot create resource \"deployments\".*rbac.yaml"):
        await backend.deploy(spec(), None)
    assert cluster.objects["services"] == {}


async def test_function_names_kubernetes_cannot_serve_are_refused_before_any_change(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    with pytest.raises(InvalidRequest, match="must start with a letter"):
        await backend.deploy(spec(name="1hello"), None)
    assert cluster.writes() == []


# --- immutable fields -----------------------------------------------------------------------------------------
async def test_immutable_fields_are_refused_with_422(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    core, apps = cluster.clients().core, cluster.clients().apps
    # A Deployment made by other tooling, with another selector: ours cannot replace it.
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "legacy", "namespace": NS, "labels": {"faas_function": "legacy"}},
        "spec": {
            "selector": {"matchLabels": {"app": "legacy", "faas_function": "legacy"}},
            "template": {
                "metadata": {"labels": {"app": "legacy", "faas_function": "legacy"}},
                "spec": {"containers": [{"name": "legacy", "image": "registry.example/legacy:1"}]},
            },
        },
    }
    apps.create_namespaced_deployment(NS, body)
    await until(lambda: backend.get("legacy", NS) is not None)
    with pytest.raises(InvalidRequest, match=r"spec\.selector.*field is immutable"):
        await backend.deploy(spec(name="legacy", image="registry.example/legacy:2"), None)
    image = cluster.objects["deployments"]["legacy"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example/legacy:1"
    # An immutable ConfigMap (our code ConfigMaps are) cannot change; a Secret's type cannot either.
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": NS}, "immutable": True}
    core.create_namespaced_config_map(NS, {**cm, "data": {"a": "1"}})
    with pytest.raises(ApiException) as refused:
        core.replace_namespaced_config_map("c", NS, {**cm, "data": {"a": "2"}})
    assert refused.value.status == 422 and "immutable" in str(status_of(refused.value)["message"])
    tls = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api-key", "namespace": NS}}
    core.create_namespaced_secret(NS, {**tls, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})
    with pytest.raises(InvalidRequest, match=r"type.*field is immutable"):
        backend.secrets.set("api-key", NS, b"v", create=False)
    # and a ConfigMap over 1 MiB is refused
    with pytest.raises(ApiException) as large:
        core.create_namespaced_config_map(
            NS, {**cm, "metadata": {"name": "big", "namespace": NS}, "data": {"a": "x" * (1 << 20 + 1)}}
        )
    assert large.value.status == 422


# --- rollouts: terminating pods, image pulls --------------------------------------------------------------------
async def test_terminating_pods_leave_the_routing_table_while_their_endpoints_still_serve(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    await backend.deploy(spec(), None)
    (old,) = cluster.pods("hello")
    cluster.termination_s = 60.0  # the old pod's preStop: it keeps serving its calls in flight meanwhile
    await backend.deploy(spec(image="registry.example/hello:2"), None)
    await until(lambda: "deletionTimestamp" in cluster.objects["pods"][old["metadata"]["name"]]["metadata"])
    await until(lambda: old["status"]["podIP"] not in addresses(backend))
    endpoint_slice = cluster.slice_of("hello")
    assert endpoint_slice is not None
    (terminating,) = [e for e in endpoint_slice["endpoints"] if e["targetRef"]["name"] == old["metadata"]["name"]]
    assert terminating["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert addresses(backend) == pod_ips(cluster) and len(addresses(backend)) == 1
    cluster.finish_terminating()
    await until(lambda: old["metadata"]["name"] not in cluster.objects["pods"])


async def test_an_image_pull_that_fails_then_succeeds_deploys(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    cluster.pull_failures["registry.example/late:1"] = 2  # pushed a moment after the deploy
    cluster.pull_backoff_s = 0.2
    await backend.deploy(spec(image="registry.example/late:1"), None)
    (pod,) = cluster.pods("hello")
    assert is_ready(pod)
    seen = [
        e.obj["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
        for e in cluster.events
        if e.collection == "pods" and e.obj["metadata"]["name"] == pod["metadata"]["name"]
    ]
    assert seen[:4] == ["ContainerCreating", "ErrImagePull", "ImagePullBackOff", "ErrImagePull"]


async def test_an_image_that_never_pulls_fails_the_deploy_after_the_grace_period(
    backend: KubernetesBackend, cluster: FakeCluster
) -> None:
    cluster.behaviour["registry.example/typo:1"] = "pull"
    with pytest.raises(DeployFailed, match=r"(ErrImagePull|ImagePullBackOff)"):
        await backend.deploy(spec(image="registry.example/typo:1"), None)
    assert cluster.objects["deployments"] == {}


async def test_pod_logs_honour_container_and_previous(backend: KubernetesBackend, cluster: FakeCluster) -> None:
    await backend.deploy(spec(), None)
    (pod,) = cluster.pods("hello")
    core, name = cluster.clients().core, pod["metadata"]["name"]
    assert "started" in core.read_namespaced_pod_log(name, NS, container="hello")
    for kwargs in ({"container": "other"}, {"container": "hello", "previous": True}):
        with pytest.raises(ApiException) as refused:
            core.read_namespaced_pod_log(name, NS, **kwargs)
        assert refused.value.status == 400 and status_of(refused.value)["reason"] == "BadRequest"
