"""``stoker install``'s output for each target, from several value sets: Kubernetes objects valid for the oldest and
newest supported versions (strict schemas) with the hardening the platform promises; Compose files that Debian's
docker-compose 1.29 accepts; two installs that share no name; deploy/ in step with the renderer."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from stoker.errors import ConfigError
from stoker.install import compose, deployfiles, engines, kubernetes, swarm
from stoker.install.values import Values
from tests.fakes.kubernetes import validate

ROOT = Path(__file__).resolve().parents[2]
VALUE_SETS = [
    {},
    {"name": "team-a", "gateway_replicas": 3, "pool_size": 0, "ingress_host": "fn.example.com"},
    {"name": "ext", "redis_url": "rediss://:pw@redis.example:6380/1", "functions_namespace": "ext-functions",
     "platform_image": "registry.example/stoker/platform@sha256:" + "a" * 64, "function_memory": "1Gi"},
]  # fmt: skip


def _kinds(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("given", VALUE_SETS)
def test_every_kubernetes_object_validates_strictly_and_is_namespaced_to_the_install(given: dict[str, Any]) -> None:
    values = Values(target="kubernetes", **given)
    objects = kubernetes.render(values)
    for obj in objects:
        validate(obj)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] in (values.name, values.functions_namespace), obj["metadata"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == values.name
    assert not _kinds(objects, "ClusterRole") and not _kinds(objects, "ClusterRoleBinding")
    assert bool(_kinds(objects, "Ingress")) == bool(values.ingress_host)
    assert bool(_kinds(objects, "PersistentVolumeClaim")) == (not values.redis_url)


def test_function_pods_get_default_limits_and_only_internet_egress() -> None:
    values = Values(target="kubernetes", function_memory="768Mi")
    objects = kubernetes.render(values)
    (limits,) = _kinds(objects, "LimitRange")
    assert limits["metadata"]["namespace"] == "openfaas-fn"
    assert limits["spec"]["limits"][0]["default"] == {"memory": "768Mi"}
    policies = {p["metadata"]["name"]: p for p in _kinds(objects, "NetworkPolicy")}
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    egress = policies["functions-egress"]["spec"]["egress"]
    blocks = [peer["ipBlock"] for rule in egress for peer in rule.get("to", []) if "ipBlock" in peer]
    for address in ("169.254.169.254", "10.96.0.1", "172.17.0.1", "192.168.1.1", "100.100.100.200", "fe80::1"):
        ip = ipaddress.ip_address(address)
        covering = [b for b in blocks if ip in ipaddress.ip_network(b["cidr"])]
        assert covering and all(any(ip in ipaddress.ip_network(e) for e in b["except"]) for b in covering), address
    assert any(ipaddress.ip_address("1.1.1.1") in ipaddress.ip_network(b["cidr"]) for b in blocks)
    # The controller's metrics port: its own namespace and namespaces labelled for scraping only.
    sources = policies["controller-metrics"]["spec"]["ingress"][0]["from"]
    assert sources == [{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"stoker.dev/scrape": "true"}}}]


def test_gateway_and_controller_survive_disruptions_and_rollouts() -> None:
    objects = kubernetes.render(Values(target="kubernetes"))
    budgets = {p["metadata"]["name"]: p["spec"] for p in _kinds(objects, "PodDisruptionBudget")}
    assert set(budgets) == {"gateway", "controller"} and all(b["maxUnavailable"] == 1 for b in budgets.values())
    for deployment in _kinds(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert ":" in container["image"] and not container["image"].endswith(":latest"), container["image"]
            assert container["resources"]["limits"]["memory"]
        if name == "redis":
            continue
        assert pod["topologySpreadConstraints"] and pod["affinity"]["podAntiAffinity"]
        (container,) = pod["containers"]
        assert container["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
        assert pod["terminationGracePeriodSeconds"] > 5
    gateway = next(d for d in _kinds(objects, "Deployment") if d["metadata"]["name"] == "gateway")
    probe = gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"


def test_redis_has_a_password_and_a_memory_bound() -> None:
    objects = kubernetes.render(Values(target="kubernetes", redis_maxmemory="1gb"))
    redis = next(d for d in _kinds(objects, "Deployment") if d["metadata"]["name"] == "redis")
    script = redis["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "--requirepass" in script and "--maxmemory 1gb" in script and "noeviction" in script


def test_uninstall_keeps_the_namespaces_and_redis_data_unless_asked() -> None:
    objects = kubernetes.render(Values(target="kubernetes"))
    kept = {o["kind"] for o in objects} - {o["kind"] for o in engines.uninstall_objects(objects, False, False)}
    assert kept == {"Namespace", "PersistentVolumeClaim"}
    gone = {o["kind"] for o in engines.uninstall_objects(objects, True, False)}
    assert "Namespace" not in gone and "PersistentVolumeClaim" in gone


def test_two_installs_share_no_name() -> None:
    for target, names in (
        ("swarm", lambda v: {*swarm.secret_names(v).values(), swarm.render(v)["networks"]["functions"]["name"]}),
        (
            "compose",
            lambda v: {
                compose.render(v)["networks"]["functions"]["name"],
                compose.render(v)["services"]["gateway"]["environment"]["STOKER_HOME"],
            },
        ),
        ("kubernetes", lambda v: {v.name, v.functions_namespace, *kubernetes.secret_names(v).values()}),
    ):
        a, b = Values(target=target, name="one"), Values(target=target, name="two")
        assert not names(a) & names(b), target
    stack = swarm.render(Values(target="swarm", name="one"))
    for service in ("gateway", "controller"):
        assert stack["services"][service]["environment"]["STOKER_SWARM_PLATFORM"] == "one"
    assert all(n["driver_opts"] == {"encrypted": ""} for n in stack["networks"].values())
    assert stack["services"]["gateway"]["healthcheck"]["test"][-1].endswith("timeout=3)")


@pytest.mark.parametrize(
    ("given", "flag"),
    [
        ({"name": "Bad_Name"}, "--name"),
        ({"name": "a" * 21}, "--name"),
        ({"platform_image": "stoker/platform:latest"}, "--platform-image"),
        ({"redis_image": "redis"}, "--redis-image"),
        ({"redis_url": "http://x"}, "--redis-url"),
        ({"port": 0}, "--port"),
        ({"entrypoint": "ipvs"}, "--entrypoint"),
        ({"functions_namespace": "stoker"}, "--functions-namespace"),
    ],
)
def test_bad_values_are_refused_naming_the_flag(given: dict[str, Any], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        Values(target="swarm", **given)


def test_deploy_files_are_the_rendered_defaults() -> None:
    for path, text in deployfiles.rendered().items():
        assert (ROOT / path).read_text() == text, f"{path}: regenerate with python -m stoker.install.deployfiles"


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="Debian's docker-compose is not installed")
def test_debian_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(deployfiles.rendered()["deploy/compose/compose.yaml"])
    env = {"STOKER_ADMIN_PASSWORD": "x", "STOKER_REDIS_PASSWORD": "y", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(["docker-compose", "-p", "check", "-f", str(path), "config"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["services"]["gateway"]["environment"]["STOKER_ADMIN_PASSWORD"] == "x"
    # Without the passwords it refuses to start, naming the variable.
    env.pop("STOKER_REDIS_PASSWORD")
    done = subprocess.run(["docker-compose", "-p", "check", "-f", str(path), "config"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode != 0 and "STOKER_REDIS_PASSWORD" in done.stderr


def test_the_ingress_routes_only_what_faces_the_internet_never_metrics() -> None:
    values = Values(target="kubernetes", ingress_host="fn.example.com")
    (ingress,) = _kinds(kubernetes.render(values), "Ingress")
    validate(ingress)
    (rule,) = ingress["spec"]["rules"]
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    # docs/security.md: the function routes and the console are public, /system/ is the password-protected API.
    assert paths == {"/function/": "Prefix", "/async-function/": "Prefix", "/system/": "Prefix", "/ui/": "Prefix"}

    def routed(path: str) -> bool:  # Kubernetes Prefix matching: whole path elements, a trailing slash ignored
        return any(path.rstrip("/") == p.rstrip("/") or path.startswith(p) for p in paths)

    for public in ("/function/hello", "/async-function/hello", "/system/functions", "/ui/", "/ui"):
        assert routed(public), public
    for private in ("/metrics", "/", "/healthz", "/functions", "/readyz", "/systemd"):
        assert not routed(private), private


def test_compose_publishes_only_the_edge_in_front_of_a_gateway_that_stops_unready_first() -> None:
    values = Values(target="compose", name="demo", port=9000, edge_image="stoker/platform:0.0.9")
    services = compose.render(values)["services"]
    assert [name for name, svc in services.items() if "ports" in svc] == ["edge"]
    edge = services["edge"]
    assert edge["ports"] == ["127.0.0.1:9000:8080"] and edge["image"] == "stoker/platform:0.0.9"
    assert edge["command"][:3] == ["edge", "--upstream", "gateway:8080"]
    assert "depends_on" not in edge  # recreating the gateway must never recreate the edge
    gateway = services["gateway"]
    delay = float(gateway["environment"]["STOKER_SHUTDOWN_DELAY_S"])
    assert delay > 2 * float(edge["environment"]["STOKER_EDGE_CHECK_INTERVAL_S"])  # the edge sees it unready first
    assert (
        compose.render(Values(target="compose"))["services"]["edge"]["image"] == Values(target="compose").platform_image
    )


def test_swarm_host_entrypoint_puts_the_edge_before_gateways_updated_start_first() -> None:
    stack = swarm.render(Values(target="swarm", gateway_replicas=3))
    edge, gateway = stack["services"]["edge"], stack["services"]["gateway"]
    assert edge["ports"] == [{"target": 8080, "published": 8080, "protocol": "tcp", "mode": "host"}]
    assert edge["deploy"]["mode"] == "global"
    assert "ports" not in gateway
    assert gateway["deploy"]["replicas"] == 3 and gateway["deploy"]["endpoint_mode"] == "dnsrr"
    assert gateway["deploy"]["update_config"]["order"] == "start-first"
    assert float(gateway["environment"]["STOKER_SHUTDOWN_DELAY_S"]) > 0
    mesh = swarm.render(Values(target="swarm", entrypoint="mesh"))["services"]
    assert "edge" not in mesh and mesh["gateway"]["ports"][0]["mode"] == "ingress"
    assert "endpoint_mode" not in mesh["gateway"]["deploy"]  # the routing mesh needs a virtual IP


def test_a_bad_edge_image_is_refused_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--edge-image"):
        Values(target="compose", edge_image="stoker/platform:latest")
