"""The Kubernetes Lease elector against an in-memory fake of the three Lease calls it makes (no cluster runs here),
and against the controller's manifests: the calls it makes are the verbs its Role grants, its settings are read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from autoscaler.leader import KubeLease
from stoker.config import Config
from tests.deploy.test_manifests import K8S, find, granted
from tests.fakes.kubernetes import FakeCluster, FakeCoordination

_VERBS = {"read_namespaced_lease": "get", "create_namespaced_lease": "create", "replace_namespaced_lease": "update"}


@pytest.fixture
def api() -> Iterator[FakeCoordination]:
    """The Lease calls of the fake API server (tests/fakes/kubernetes.py): schema checks, resourceVersion
    preconditions, a Status body with every refusal."""
    cluster = FakeCluster()
    yield cluster.coordination()
    cluster.close()


def _leases(api: FakeCoordination) -> dict[str, Any]:
    return api.cluster.objects["leases"]


def _calls(api: FakeCoordination) -> list[str]:
    return [name for name, _ in api.cluster.calls]


def _lease(api: FakeCoordination, holder: str) -> KubeLease:
    to_dict = api.cluster.clients().to_dict
    return KubeLease(api, to_dict, "stoker-controller", "stoker", holder, 15.0)


async def test_one_holder_renews_and_a_standby_takes_over_once_it_expires(api: FakeCoordination) -> None:
    a, b = _lease(api, "pod-a"), _lease(api, "pod-b")
    t = 1_000_000.0
    assert await a.tick(t) and not await b.tick(t + 1)
    assert await a.tick(t + 5) and not await b.tick(t + 19)  # renewed at t+5: valid until t+20
    assert await b.tick(t + 21)  # a stopped renewing
    spec = _leases(api)["stoker-controller"]["spec"]
    assert spec["holderIdentity"] == "pod-b" and spec["leaseTransitions"] == 1 and spec["leaseDurationSeconds"] == 15
    assert not await a.tick(t + 22)
    await b.release()  # a clean stop: a takes over on its next tick
    assert await a.tick(t + 23)


async def test_the_lease_calls_are_what_the_role_grants_and_the_manifest_configures_it(api: FakeCoordination) -> None:
    a = _lease(api, "pod-a")
    await a.tick(1000.0)
    await a.tick(1001.0)
    await a.release()
    used = {("coordination.k8s.io", "leases", _VERBS[c]) for c in _calls(api)}
    assert used == granted(find("Role", "stoker-controller-lease", "stoker"))
    controller = find("Deployment", "controller", "stoker")
    container = controller["spec"]["template"]["spec"]["containers"][0]
    # A shell reads the Redis password from its mounted Secret into the URL, then execs the controller.
    shell, flag, script = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c") and "exec python3 -m stoker controller --backend kubernetes" in script
    assert 'export STOKER_REDIS_URL="redis://:$(cat /var/run/stoker/secrets/redis-password)@' in script
    env = {e["name"]: e.get("value", "from-field") for e in container["env"]}
    config = Config.from_env(env)
    assert config.lease_name == "stoker-controller" and config.lease_namespace and config.lease_holder
    gateway_env = {
        e["name"]: e.get("value")
        for e in find("Deployment", "gateway", "stoker")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert gateway_env["STOKER_AUTOSCALE"] == "false"
    assert "stoker.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_the_lease_api_refuses_as_the_server_does(api: FakeCoordination) -> None:
    with pytest.raises(ApiException) as missing:
        api.read_namespaced_lease("nope", "stoker")
    assert missing.value.status == 404 and "not found" in missing.value.body
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "stoker"}}
    with pytest.raises(ApiException) as gone:
        api.replace_namespaced_lease("l", "stoker", {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}})
    assert gone.value.status == 404  # not a KeyError
    with pytest.raises(ApiException) as wrong:
        api.create_namespaced_lease("stoker", {**body, "spec": {"leaseDurationSeconds": "long"}})
    assert wrong.value.status == 422  # the schema is checked
