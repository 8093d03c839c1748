"""The objects the Kubernetes backend writes: valid against the official schemas, hardened, and read back whole."""

from __future__ import annotations

import pytest

from runtime.backends.kubernetes import code as k8s_code
from runtime.backends.kubernetes import objects
from runtime.backends.kubernetes import pool as k8s_pool
from runtime.backends.kubernetes.secrets import secret
from runtime.backends.kubernetes.settings import KubeSettings
from runtime.backends.kubernetes.status import function_of, rollout_state, slice_addresses
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment
from tests.fakes.kubernetes import validate

RICH = FunctionDeployment.from_json(
    {
        "service": "wordcount",
        "image": "registry.example/wordcount:3",
        "envProcess": "python index.py",
        "envVars": {"MODE": "fast"},
        "labels": {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "9", "team": "web"},
        "annotations": {"com.stoker.timeout": "45s", "com.stoker.concurrency": "4", "note": "any text: at all"},
        "secrets": ["api-key", "db-password"],
        "limits": {"memory": "256Mi", "cpu": "500m"},
        "requests": {"memory": "64Mi", "cpu": "0.1"},
        "constraints": ["kubernetes.io/arch == amd64"],
    }
)


def test_every_object_validates_against_the_kubernetes_schemas() -> None:
    for obj in (
        objects.deployment(RICH, 2),
        objects.deployment(FunctionDeployment.from_json({"service": "tiny", "image": "tiny:1"}), 0),
        objects.service(RICH),
        secret("api-key", "openfaas-fn", b"value"),
        objects.deployment(SOURCE, 1, k8s_code.code_for(b"k" * 32, SOURCE, BUNDLE)),
        k8s_code.configmap(SOURCE, BUNDLE),
    ):
        validate(obj)


SOURCE = FunctionDeployment.from_json({"service": "src", "image": "stoker/runtime:latest"})
BUNDLE = b"\x1f\x8b pretend bundle bytes"


def test_a_source_deploy_changes_version_with_its_code_only() -> None:
    one = k8s_code.code_for(b"k" * 32, SOURCE, BUNDLE)
    two = k8s_code.code_for(b"k" * 32, SOURCE, BUNDLE + b"!")
    assert objects.version(SOURCE, one) == objects.version(SOURCE, k8s_code.code_for(b"x" * 32, SOURCE, BUNDLE))
    assert objects.version(SOURCE, one) != objects.version(SOURCE, two) != objects.version(SOURCE)
    assert k8s_code.bundle_of(k8s_code.configmap(SOURCE, BUNDLE)) == BUNDLE


def test_a_misspelt_field_fails_validation() -> None:
    broken = objects.deployment(RICH, 1)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(Exception, match="readinessprobe"):
        validate(broken)


def test_pods_are_hardened() -> None:
    pod = objects.deployment(RICH, 1)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]


def test_probes_resources_secrets_and_settings_come_from_the_spec() -> None:
    dep = objects.deployment(RICH, 2)
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/_/ready", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/_/health", "port": 8080}
    assert container["resources"] == {
        "limits": {"memory": "256Mi", "cpu": "500m"},
        "requests": {"memory": "64Mi", "cpu": "0.1"},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODE"] == "fast" and env["exec_timeout"] == "45s" and env["max_inflight"] == "4"
    assert env["fprocess"] == "python index.py"
    mount = {"name": "secrets", "mountPath": "/var/openfaas/secrets", "readOnly": True}
    assert mount in container["volumeMounts"]
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert pod["terminationGracePeriodSeconds"] >= 45  # a call in flight may finish
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["metadata"]["labels"]["faas_function"] == "wordcount"
    assert dep["metadata"]["annotations"]["note"] == "any text: at all"


def test_the_deployment_carries_the_whole_spec_without_source() -> None:
    with_source = FunctionDeployment(**{**RICH.to_json(), "source": "c291cmNl"})
    dep = objects.deployment(with_source, 1)
    assert "c291cmNl" not in str(dep)
    assert function_of(dep) == RICH


def test_a_deployment_made_by_other_openfaas_tooling_is_read_from_labels_and_image() -> None:
    dep = objects.deployment(RICH, 1)
    del dep["metadata"]["annotations"][objects.SPEC_ANNOTATION]
    found = function_of(dep)
    assert found is not None and found.service == "wordcount" and found.image == "registry.example/wordcount:3"
    assert found.labels["team"] == "web"


def test_the_version_changes_with_the_spec_only() -> None:
    assert objects.version(RICH) == objects.version(FunctionDeployment(**RICH.to_json()))
    assert objects.version(RICH) != objects.version(FunctionDeployment(**{**RICH.to_json(), "image": "x:4"}))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("labels", {"team": "two words"}, "label"),
        ("labels", {"bad key!": "x"}, "label key"),
        ("annotations", {"/leading": "x"}, "annotation key"),
        ("limits", {"memory": "128 MB"}, "quantity"),
        ("limits", {"gpu": "1"}, "only cpu and memory"),
        ("constraints", ["node.role != manager"], "constraint"),
    ],
)
def test_what_kubernetes_would_refuse_is_refused_with_a_clear_message(field: str, value: object, message: str) -> None:
    dep = FunctionDeployment.from_json({"service": "f", "image": "f:1", field: value})
    with pytest.raises(InvalidRequest, match=message):
        objects.deployment(dep, 1)


def test_slices_give_ready_endpoints_only() -> None:
    service, found = slice_addresses(
        {
            "metadata": {"labels": {"kubernetes.io/service-name": "f"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "f-1"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": False}, "targetRef": {"name": "f-2"}},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True}},
                {"addresses": ["10.0.0.4"], "conditions": {}, "targetRef": {"name": "f-4"}},  # unknown reads as ready
            ],
        }
    )
    assert service == "f" and [(a.instance, a.host, a.port) for a in found] == [
        ("f-1", "10.0.0.1", 8080),
        ("f-4", "10.0.0.4", 8080),
    ]


def test_rollout_state_names_what_will_not_fix_itself() -> None:
    crashing = {
        "metadata": {"name": "f-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
                }
            ],
        },
    }
    pending = {
        "metadata": {"name": "f-2"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    state = rollout_state([crashing, pending])
    assert state.ready == [] and state.failure == "f-1: CrashLoopBackOff: exit code 3 (Error)"
    assert state.progress == "f-2: ContainerCreating"


# --- the warm pool (runtime/backends/kubernetes/pool.py) --------------------------------------------------------------
POOL = KubeSettings(runtime_image="stoker/runtime:latest")


def test_pool_pods_and_their_keys_validate_and_are_hardened_like_function_pods() -> None:
    pod = k8s_pool.pod("stoker-pool-0a1b2c3d4e", "openfaas-fn", KubeSettings(pool_memory="256Mi"))
    validate(pod)
    validate(k8s_pool.secret("stoker-pool-0a1b2c3d4e", "openfaas-fn", b"k" * 32))
    function_pod = objects.deployment(RICH, 1)["spec"]["template"]["spec"]
    spec = pod["spec"]
    assert spec["securityContext"] == function_pod["securityContext"] and spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    assert container["securityContext"] == function_pod["containers"][0]["securityContext"]
    assert container["resources"] == {"limits": {"memory": "256Mi"}}
    assert container["startupProbe"]["httpGet"]["path"] == "/_/health"
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in spec["volumes"]
    key_volume = {"name": "pool-key", "secret": {"secretName": "stoker-pool-0a1b2c3d4e", "defaultMode": 0o440}}
    assert key_volume in spec["volumes"]
    patch = k8s_pool.claim_patch("42", k8s_pool.Target("f", "v1", "d1", "f-code-d1", {}))
    assert patch == {
        "metadata": {
            "resourceVersion": "42",
            "labels": {
                "faas_function": "f",
                "stoker.dev/pool": "claimed",
                "com.stoker.version": "v1",
                "com.stoker.code": "d1",
            },
        }
    }


def _source_deployment(**fields: object) -> dict[str, object]:
    dep = FunctionDeployment.from_json({"service": "src", "image": POOL.runtime_image, **fields})
    return objects.deployment(dep, 1, k8s_code.code_for(b"k" * 32, dep, BUNDLE))


def test_only_what_a_pool_pod_can_run_is_claimed_for() -> None:
    target = k8s_pool.target(_source_deployment(envVars={"A": "1"}), POOL)
    assert target is not None and target.function == "src" and target.configmap.startswith("src-code-")
    assert target.env["A"] == "1" and target.env["STOKER_UNPACK_BUNDLE"] == "1"
    assert k8s_pool.target(objects.deployment(RICH, 1), POOL) is None  # an image
    for fields in (
        {"secrets": ["api-key"]},
        {"envProcess": "python index.py"},
        {"limits": {"memory": "1Gi"}},
        {"constraints": ["disk=ssd"]},
        {"annotations": {"com.stoker.timeout": "1h"}},
    ):
        assert k8s_pool.target(_source_deployment(**fields), POOL) is None, fields
    assert k8s_pool.target(_source_deployment(), KubeSettings(runtime_image="other:1")) is None
    limited = KubeSettings(runtime_image=POOL.runtime_image, pool_memory="1Gi")
    assert k8s_pool.target(_source_deployment(limits={"memory": "1Gi"}), limited) is not None


def _pool_pod(name: str, state: str = "generic", **status: object) -> dict[str, object]:
    labels = {"stoker.dev/pool": state}
    if state == "claimed":
        labels |= {"faas_function": "f", "com.stoker.version": str(status.pop("version", "v1"))}
    return {
        "metadata": {"name": name, "labels": labels, "creationTimestamp": "2030-01-01T00:00:00Z"},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "containerStatuses": [{"started": True}], **status},
    }


def test_tending_refills_replaces_the_dead_and_retires_bridges_whose_function_is_served() -> None:
    t0 = 1893456000.0  # 2030-01-01
    pods = [
        _pool_pod("ok"),
        _pool_pod("crashed", phase="Failed"),
        _pool_pod("pulling", phase="Pending", containerStatuses=[{"state": {"waiting": {"reason": "ErrImagePull"}}}]),
        _pool_pod("slow", phase="Pending", containerStatuses=[]),
        _pool_pod("bridge", "claimed"),
    ]
    starting = k8s_pool.Function(replicas=1, ready=0, version="v1")
    plan = k8s_pool.plan(pods, None, {"f": starting}, size=3, now=t0 + 10)
    assert plan.delete.keys() == {"crashed", "pulling"} and plan.create == 1  # "ok" and "slow" count
    plan = k8s_pool.plan(pods, None, {"f": starting}, size=3, now=t0 + k8s_pool.START_TIMEOUT_S + 1)
    assert plan.delete.keys() == {"crashed", "pulling", "slow"} and plan.create == 2
    assert k8s_pool.plan(pods, None, {"f": starting}, size=3, now=t0 + 10, pending=2).create == 0
    for functions, why in (
        ({}, "gone"),
        ({"f": k8s_pool.Function(0, 0, "v1")}, "zero"),
        ({"f": k8s_pool.Function(2, 2, "v1")}, "ready"),
        ({"f": k8s_pool.Function(2, 1, "v2")}, "updated"),
    ):
        assert why in k8s_pool.plan(pods, None, functions, 1, t0).delete["bridge"]
    assert "bridge" not in k8s_pool.plan(pods, None, {"f": k8s_pool.Function(2, 1, "v1")}, 1, t0).delete
    keys = [{"metadata": {"name": n, "creationTimestamp": "2030-01-01T00:00:00Z"}} for n in ("ok", "lost")]
    assert k8s_pool.plan(pods, keys, {}, 1, t0 + 30).orphans == []  # its pod may be being created
    assert k8s_pool.plan(pods, keys, {}, 1, t0 + 61).orphans == ["lost"]


def test_kubernetes_settings_are_read_and_checked_with_a_clear_message() -> None:
    from stoker.errors import ConfigError

    assert KubeSettings.from_env({}) == KubeSettings(runtime_image="stoker/runtime:latest")
    settings = KubeSettings.from_env(
        {"STOKER_K8S_RUNTIME_IMAGE": "registry.example/rt:1", "STOKER_K8S_POOL_MEMORY": "256Mi"}
    )
    assert settings.runtime_image == "registry.example/rt:1"
    assert settings.pool_resources() == {"limits": {"memory": "256Mi"}}
    with pytest.raises(ConfigError, match="STOKER_K8S_POOL_CPU: 'two' is not a Kubernetes quantity"):
        KubeSettings.from_env({"STOKER_K8S_POOL_CPU": "two"})
    with pytest.raises(ConfigError, match="STOKER_K8S_RUNTIME_IMAGE"):
        KubeSettings.from_env({"STOKER_K8S_RUNTIME_IMAGE": "not an image"})
