"""deploy/: the Kubernetes manifests validate against the official schemas and grant exactly what the code calls;
the compose file has the services and the one socket mount it should."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.backends.kubernetes import KubernetesBackend
from stoker.bundle import pack
from stoker.config import Config
from stoker.spec import FunctionDeployment
from tests.backends.k8s_fake import FakeCluster, validate

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
    "create_namespaced_config_map": ("", "configmaps", "create"),
    "delete_namespaced_config_map": ("", "configmaps", "delete"),
    "delete_collection_namespaced_config_map": ("", "configmaps", "deletecollection"),
}


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


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


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert all((K8S / name).is_file() for name in kustomization["resources"])


async def test_the_gateway_role_grants_exactly_what_the_backend_calls(tmp_path: Path) -> None:
    cluster = FakeCluster()
    config = Config.from_env({}, home=tmp_path, k8s_deploy_timeout_s=1.0)
    backend = KubernetesBackend(config, b"k", cluster.clients(), poll_s=0.02)
    await backend.start()
    try:
        backend.secrets.set("token", "openfaas-fn", b"1", create=True)
        backend.secrets.set("token", "openfaas-fn", b"2", create=False)
        await backend.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:1", "secrets": ["token"]}), None)
        await backend.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:2"}), None)
        cluster.behaviour["f:3"] = "crash"
        with pytest.raises(Exception, match="failed to start"):
            await backend.deploy(FunctionDeployment.from_json({"service": "f", "image": "f:3"}), None)
        await backend.scale("f", "openfaas-fn", 2)
        [line async for line in backend.logs("f", "openfaas-fn", 5, None, False)]
        code = tmp_path / "code"
        code.mkdir()
        for version in ("1", "2"):  # source deploys: a ConfigMap each, the older one deleted after the rollout
            (code / "handler.py").write_text(f"def handle(event, context):\n    return {version}\n")
            await backend.deploy(FunctionDeployment.from_json({"service": "f"}, require_code=False), pack(code))
        while len(cluster.objects["configmaps"]) > 1:
            await asyncio.sleep(0.02)
        await backend.remove("f", "openfaas-fn")
        backend.secrets.delete("token", "openfaas-fn")
    finally:
        await backend.close()
    used = {_RULES[name] for name, _ in cluster.calls}  # a KeyError here: a new call needs a rule above
    used |= {("apps", "deployments", "watch"), ("discovery.k8s.io", "endpointslices", "watch")}  # the watchers
    role = find("Role", "stoker-gateway", "openfaas-fn")
    assert granted(role) == used
    binding = find("RoleBinding", "stoker-gateway", "openfaas-fn")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "stoker-gateway", "namespace": "stoker"}]
    assert not [d for d in manifests() if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_the_controller_may_scale_and_hold_its_lease_only() -> None:
    assert granted(find("Role", "stoker-controller", "openfaas-fn")) == {
        ("apps", "deployments", "list"),
        ("apps", "deployments", "watch"),
        ("apps", "deployments/scale", "patch"),
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
    }
    assert granted(find("Role", "stoker-controller-lease", "stoker")) == {
        ("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")
    }


def test_only_the_gateway_reaches_function_pods() -> None:
    policy = find("NetworkPolicy", "only-gateway", "openfaas-fn")["spec"]
    assert policy["podSelector"] == {"matchExpressions": [{"key": "faas_function", "operator": "Exists"}]}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "stoker"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gateway"}},
        }
    ]
    gateway = find("Deployment", "gateway", "stoker")
    assert gateway["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "gateway"


def test_the_platform_runs_hardened_with_two_gateways() -> None:
    gateway = find("Deployment", "gateway", "stoker")
    assert gateway["spec"]["replicas"] == 2
    assert find("Service", "gateway", "stoker")["spec"]["selector"] == {"app.kubernetes.io/name": "gateway"}
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STOKER_AUTOSCALE"] == "false" and env["STOKER_REDIS_URL"].startswith("redis://redis.")
    for doc in manifests():
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    controller = find("Deployment", "controller", "stoker")
    controller_env = {e["name"]: e.get("value") for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STOKER_K8S_RUNTIME_IMAGE"] == controller_env["STOKER_K8S_RUNTIME_IMAGE"]  # the pool's and the code's
    names = {d["metadata"]["name"] for d in manifests() if d["kind"] == "Namespace"}
    assert names == {"stoker", "openfaas-fn"}


def test_compose_runs_gateway_and_redis_with_the_socket_in_the_gateway_only() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"gateway", "redis"}
    gateway = services["gateway"]
    assert gateway["command"][:4] == ["stoker", "up", "--backend", "docker"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in gateway["volumes"]
    assert not any("docker.sock" in v for v in services["redis"].get("volumes", []))
    assert all(p.startswith("127.0.0.1:") for p in gateway["ports"])  # not on every interface by default
    assert "DOCKER_HOST" not in gateway["environment"]  # the local socket, never the API over TCP
    assert gateway["environment"]["STOKER_REDIS_URL"] == "redis://redis:6379/0"
    assert compose["networks"]["functions"]["name"] == "stoker-functions"
