"""The Kubernetes Lease elector against an in-memory fake of the three Lease calls it makes (no cluster runs here),
and against the controller's manifests: the calls it makes are the verbs its Role grants, its settings are read."""

from __future__ import annotations

import yaml

from autoscaler.leader import KubeLease
from stoker.config import Config
from tests.deploy.test_manifests import K8S, find, granted
from tests.fakes.kubernetes import FakeLeases

_VERBS = {"read_namespaced_lease": "get", "create_namespaced_lease": "create", "replace_namespaced_lease": "update"}


def _lease(api: FakeLeases, holder: str) -> KubeLease:
    return KubeLease(api, lambda o: o, "stoker-controller", "stoker", holder, 15.0)


async def test_one_holder_renews_and_a_standby_takes_over_once_it_expires() -> None:
    api = FakeLeases()
    a, b = _lease(api, "pod-a"), _lease(api, "pod-b")
    t = 1_000_000.0
    assert await a.tick(t) and not await b.tick(t + 1)
    assert await a.tick(t + 5) and not await b.tick(t + 19)  # renewed at t+5: valid until t+20
    assert await b.tick(t + 21)  # a stopped renewing
    spec = api.leases[("stoker", "stoker-controller")]["spec"]
    assert spec["holderIdentity"] == "pod-b" and spec["leaseTransitions"] == 1 and spec["leaseDurationSeconds"] == 15
    assert not await a.tick(t + 22)
    await b.release()  # a clean stop: a takes over on its next tick
    assert await a.tick(t + 23)


async def test_the_lease_calls_are_what_the_role_grants_and_the_manifest_configures_it() -> None:
    api = FakeLeases()
    a = _lease(api, "pod-a")
    await a.tick(1000.0)
    await a.tick(1001.0)
    await a.release()
    used = {("coordination.k8s.io", "leases", _VERBS[c]) for c in api.calls}
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
