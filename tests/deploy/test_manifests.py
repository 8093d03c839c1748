"""The Kubernetes install (`stoker install kubernetes`, also deploy/kubernetes) validates against the official schemas
and grants exactly what the code calls; the compose file has the services and the one socket mount it should."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.backends.kubernetes import code as k8s_code
from runtime.backends.kubernetes.backend import KubernetesBackend
from runtime.backends.kubernetes.settings import KubeSettings
from stoker.bundle import pack
from stoker.config import Config
from stoker.install import compose, kubernetes
from stoker.install.values import Values
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import FakeCluster, validate
from tests.wait_support import wait_until_async

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"

# Which RBAC rule each client method of the backend needs: (apiGroup, resource, verb).
_RULES = {
    "list_namespaced_deployment": ("apps", "deployments", "list"),
    "read_namespaced_deployment": ("apps", "deployments", "get"),
    "create_namespaced_deployment": ("apps", "deployments", "create"),
    "replace_namespaced_deployment": ("apps", "deployments", "update"),
    "delete_namespaced_deployment": ("apps", "deployments", "delete"),
    "patch_namespaced_deployment_scale": ("apps", "deployments/scale", "patch"),
    "create_namespaced_service": ("", "services", "create"),
    "patch_namespaced_service": ("", "services", "patch"),
    "delete_namespaced_service": ("", "services", "delete"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
    "list_namespaced_secret": ("", "secrets", "list"),
    "create_namespaced_secret": ("", "secrets", "create"),
    "replace_namespaced_secret": ("", "secrets", "update"),
    "delete_namespaced_secret": ("", "secrets", "delete"),
    "list_namespaced_endpoint_slice": ("discovery.k8s.io", "endpointslices", "list"),
    "create_namespaced_pod": ("", "pods", "create"),
    "patch_namespaced_pod": ("", "pods", "patch"),
    "delete_namespaced_pod": ("", "pods", "delete"),
    "read_namespaced_config_map": ("", "configmaps", "get"),
    "list_namespaced_config_map": ("", "configmaps", "list"),
    "create_namespaced_config_map": ("", "configmaps", "create"),
    "delete_namespaced_config_map": ("", "configmaps", "delete"),
    "delete_collection_namespaced_config_map": ("", "configmaps", "deletecollection"),
    # watches (the client's Watch calls the list method with watch=True)
    "watch:list_namespaced_deployment": ("apps", "deployments", "watch"),
    "watch:list_namespaced_endpoint_slice": ("discovery.k8s.io", "endpointslices", "watch"),
    "watch:list_namespaced_pod": ("", "pods", "watch"),
}


def manifests() -> list[dict[str, Any]]:
    return kubernetes.render(Values(target="kubernetes"))


def find(kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for doc in manifests():
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and namespace in (None, meta.get("namespace")):
            return doc
    raise AssertionError(f"no {kind} {name}")


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = manifests()
    assert len(docs) >= 15
    for doc in docs:
        validate(doc)


def test_kustomization_applies_the_rendered_install() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["stoker.yaml"]
    assert {i["name"] for i in kustomization["images"]} == {"stoker/platform", "stoker/redis"}


async def test_the_roles_grant_exactly_what_the_gateway_and_the_controller_call(tmp_path: Path) -> None:
    cluster = FakeCluster()
    settings = KubeSettings(runtime_image="registry.example/stoker-runtime:1")
    key = b"k" * 32

    def backend(who: str, pool_size: int) -> KubernetesBackend:
        config = Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=1.0, pool_size=pool_size)
        b = KubernetesBackend(config, key, cluster.clients(who), poll_s=0.02, settings=settings)
        b.replica_port = cluster.pool_port  # nothing listens there: every claim fails, and cleans up
        return b

    gateway, controller = backend("gateway", 0), backend("controller", 2)

    def state() -> str:
        """What both backends and the fake cluster hold (for a wait that times out)."""
        pods = {
            name: (pod["metadata"].get("labels", {}), pod.get("status", {}).get("phase"))
            for name, pod in cluster.objects["pods"].items()
        }
        seen = {
            who: (b.get("f", "openfaas-fn"), b.warm_replicas())
            for who, b in (("gateway", gateway), ("controller", controller))
        }
        return f"backends {seen}; configmaps {sorted(cluster.objects['configmaps'])}; pods {pods}"

    await gateway.start()
    await controller.start()
    try:
        gateway.secrets.set("token", "openfaas-fn", b"1", create=True)
        gateway.secrets.set("token", "openfaas-fn", b"2", create=False)
        await gateway.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:1", "secrets": ["token"]}), None)
        await gateway.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:2"}), None)
        cluster.behaviour["f:3"] = "crash"
        with pytest.raises(Exception, match="failed to start"):
            await gateway.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:3"}), None)
        await gateway.scale("f", "openfaas-fn", 2)
        [line async for line in gateway.logs("f", "openfaas-fn", 5, None, False)]
        code = tmp_path / "code"
        code.mkdir()
        for version in ("1", "2"):  # source deploys: a ConfigMap each, the older one deleted after the rollout
            (code / "handler.py").write_text(f"def handle(event, context):\n    return {version}\n")
            await gateway.deploy(FunctionDeployment.from_json({"service": "f"}, require_code=False), pack(code))
        await wait_until_async(lambda: len(cluster.objects["configmaps"]) <= 1, 30, lambda: f"one ConfigMap: {state()}")
        # The warm pool: the controller tends it; both claim pool pods when they scale a function up.
        await gateway.scale("f", "openfaas-fn", 0)
        cluster.behaviour[settings.runtime_image] = "manual"  # its own pods start slowly: a claim is worth it
        await controller.tend_pool()

        async def settled(replicas: int, pool: int) -> None:
            def seen(b: KubernetesBackend) -> bool:
                record = b.get("f", "openfaas-fn")
                return (
                    record is not None
                    and record.replicas == replicas
                    and not record.endpoints
                    and b.warm_replicas() >= pool
                )

            await wait_until_async(
                lambda: seen(gateway) and seen(controller), 30, lambda: f"{replicas} replicas, {pool} warm: {state()}"
            )

        await settled(0, 2)
        await controller.scale("f", "openfaas-fn", 1)  # claims (and, nothing listening, deletes) a pool pod
        await controller.scale("f", "openfaas-fn", 0)
        await settled(0, 1)
        await gateway.scale("f", "openfaas-fn", 1)  # the same from a gateway
        assert len(cluster.called("patch_namespaced_pod")) == 2
        # Tended once a tick, as the autoscaler does: the controller's view may still hold the pod the gateway just
        # claimed (its watch has not brought the claim yet), and then one tend refills the pool only to 1.
        deadline = time.monotonic() + 30
        while controller.warm_replicas() < 2:
            assert time.monotonic() < deadline, f"timed out after 30s waiting for 2 warm pool pods: {state()}"
            await controller.tend_pool()
            await asyncio.sleep(0.1)
        cluster.fail_pod(cluster.pool_pods()[0]["metadata"]["name"])
        await controller.tend_pool(now=time.time() + 120)
        # Code a gateway that died mid-update left behind: the controller deletes it once it is old.
        orphan = k8s_code.configmap(FunctionDeployment.from_json({"service": "gone"}, require_code=False), pack(code))
        cluster.clients("a gateway that died").core.create_namespaced_config_map("openfaas-fn", orphan)
        await controller.tend_pool(now=time.time() + 2 * k8s_code.STALE_AFTER_S)
        assert orphan["metadata"]["name"] not in cluster.objects["configmaps"]
        assert len(cluster.objects["configmaps"]) == 1  # f's own, which its Deployment names
        await gateway.remove("f", "openfaas-fn")
        gateway.secrets.delete("token", "openfaas-fn")
    finally:
        await gateway.close()
        await controller.close()
        cluster.close()
    for who, role in (("gateway", "stoker-gateway"), ("controller", "stoker-controller")):
        used = {_RULES[name] for name in cluster.calls_by[who]}  # a KeyError here: a new call needs a rule above
        assert granted(find("Role", role, "openfaas-fn")) == used, who
    binding = find("RoleBinding", "stoker-gateway", "openfaas-fn")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stoker-gateway", "namespace": "stoker"}]
    assert not [d for d in manifests() if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_the_controller_holds_its_lease_only_in_its_own_namespace_and_by_name() -> None:
    role = find("Role", "stoker-controller-lease", "stoker")
    assert granted(role) == {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    named = [r for r in role["rules"] if "get" in r["verbs"] or "update" in r["verbs"]]
    assert all(r["resourceNames"] == [kubernetes.LEASE] for r in named)


def test_only_the_gateway_reaches_function_pods() -> None:
    policy = find("NetworkPolicy", "functions-from-gateway", "openfaas-fn")["spec"]
    assert policy["podSelector"] == {"matchExpressions": [{"key": "faas_function", "operator": "Exists"}]}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "stoker"}},
            "podSelector": {
                "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["gateway"]}]
            },
        }
    ]
    gateway = find("Deployment", "gateway", "stoker")
    assert gateway["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "gateway"


def test_pool_pods_take_calls_from_the_platform_only() -> None:
    policy = find("NetworkPolicy", "pool-from-platform", "openfaas-fn")["spec"]
    assert policy["podSelector"] == {"matchExpressions": [{"key": "stoker.dev/pool", "operator": "Exists"}]}
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "stoker"}}
    names = source["podSelector"]["matchExpressions"][0]["values"]
    assert set(names) == {"gateway", "controller"} and rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_the_gateways_and_the_controller_share_one_platform_key_and_runtime_image() -> None:
    envs = []
    for name in ("gateway", "controller"):
        pod = find("Deployment", name, "stoker")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        envs.append({k: env[k] for k in ("STOKER_PLATFORM_KEY_FILE", "STOKER_K8S_RUNTIME_IMAGE")})
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert mount["readOnly"] is True and env["STOKER_PLATFORM_KEY_FILE"].startswith(mount["mountPath"] + "/")
        volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
        sources = {s["secret"]["name"] for s in volume["projected"]["sources"]}
        assert "stoker-platform-key" in sources
        assert volume["projected"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"] == 10001
        # No password in an environment variable: read from the secret files by the entrypoint.
        assert not [e for e in container["env"] if "PASSWORD" in e["name"] or "REDIS_URL" in e["name"]]
    assert envs[0] == envs[1] and envs[0]["STOKER_K8S_RUNTIME_IMAGE"] == "stoker/runtime:0.1.0"
    controller = find("Deployment", "controller", "stoker")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "STOKER_POOL_SIZE", "value": "2"} in controller["env"]


def test_the_platform_runs_hardened_with_two_gateways() -> None:
    gateway = find("Deployment", "gateway", "stoker")
    assert gateway["spec"]["replicas"] == 2
    assert find("Service", "gateway", "stoker")["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STOKER_AUTOSCALE"] == "false" and 'STOKER_REDIS_URL="redis://:$(cat ' in container["command"][-1]
    for doc in manifests():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    names = {d["metadata"]["name"] for d in manifests() if d["kind"] == "Namespace"}
    assert names == {"stoker", "openfaas-fn"}


def test_compose_runs_gateway_and_redis_with_the_socket_in_the_gateway_only() -> None:
    rendered = compose.render(Values(target="compose"))
    assert rendered == yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert "name" not in rendered  # docker-compose 1.29 refuses a top-level name
    services = rendered["services"]
    assert set(services) == {"edge", "gateway", "redis"}
    assert "ports" not in services["gateway"] and services["edge"]["ports"]  # only the edge publishes a port
    gateway = services["gateway"]
    assert gateway["command"][:3] == ["up", "--backend", "docker"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in gateway["volumes"]
    assert not any("docker.sock" in v for v in services["redis"].get("volumes", []))
    assert all(p.startswith("127.0.0.1:") for p in services["edge"]["ports"])  # not on every interface by default
    assert "DOCKER_HOST" not in gateway["environment"]  # the local socket, never the API over TCP
    assert gateway["environment"]["STOKER_REDIS_URL"].endswith("@redis:6379/0")
    assert "--requirepass" in services["redis"]["command"][-1]
    assert rendered["networks"]["functions"]["name"] == "stoker-functions"
