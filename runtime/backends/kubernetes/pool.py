"""The Kubernetes warm pool, pure part: the pool's objects, what a claim needs from a Deployment, and what tending
the pool does. No API calls (those are in :mod:`runtime.backends.kubernetes.warm`).

A pool pod is a bare Pod ``stoker-pool-<hex>`` running the runtime image as a generic replica (``STOKER_POOL=1``),
hardened like a function's pod, labelled ``stoker.dev/pool=generic``, with ``restartPolicy: Never`` (a replica that
exits is replaced, never restarted in place). Its key, :func:`runtime.backends.pool.replica_key` of the platform key and
the pod's name, is in a Secret of the same name, mounted read-only: any gateway or controller with the platform key can
sign a specialisation for that pod, and for that pod alone; it accepts one. A startup probe on ``/_/health`` marks the
container ``started`` once the runtime answers; the readiness probe on ``/_/ready`` fails until it is specialised, so no
Service routes to it before it serves a function.

A claim relabels the pod (``faas_function=<name>``, ``stoker.dev/pool=claimed``, the function's version and code
digest) with its resourceVersion as a precondition, so of two gateways claiming one pod exactly one succeeds. The
function's Service then selects it (its EndpointSlice lists it once ready); its Deployment's ReplicaSet never adopts
it (no ``pod-template-hash``). It is a *bridge*: it serves the cold start while the Deployment's own pod starts, and
goes once that one is ready (:func:`plan`).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any

from runtime.backends.kubernetes import objects
from runtime.backends.kubernetes.settings import KubeSettings
from runtime.backends.kubernetes.status import FATAL_WAITING, dig, parse_time
from runtime.contract import DIR_VAR, HEALTH_PATH, KEY_FILE_VAR, POOL_VAR

Obj = dict[str, Any]

POOL_LABEL = "stoker.dev/pool"
GENERIC = "generic"
CLAIMED = "claimed"
SECRET_TYPE = "stoker.dev/pool-key"  # not Opaque: /system/secrets lists Opaque Secrets only
CONTAINER = "replica"
KEY_DIR = "/var/stoker/pool"
KEY_FILE = "key"
WORKDIR = "/tmp/stoker-fn"  # on the pod's emptyDir: the only writable place
MAX_TIMEOUT_S = 300  # a bridge's grace period lets calls of up to this long finish; longer functions are not pooled
START_TIMEOUT_S = 300.0  # a pool pod not started by then (image pull, scheduling) is replaced
ORPHAN_GRACE_S = 60.0  # a pool Secret without its pod is deleted after this (its pod may be being created)


def new_name() -> str:
    return f"stoker-pool-{secrets.token_hex(5)}"


def _labels(state: str) -> dict[str, str]:
    return {**objects.MANAGED_BY, POOL_LABEL: state}


def secret(name: str, namespace: str, key: bytes) -> Obj:
    """The Secret holding one pool pod's key (same name as the pod)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(GENERIC)},
        "type": SECRET_TYPE,
        "data": {KEY_FILE: base64.b64encode(key).decode()},
    }


def pod(name: str, namespace: str, settings: KubeSettings) -> Obj:
    """A generic pool pod on the runtime image, hardened like a function's pod (:mod:`k8s_objects`)."""
    env = {POOL_VAR: "1", KEY_FILE_VAR: f"{KEY_DIR}/{KEY_FILE}", DIR_VAR: WORKDIR, "PYTHONUNBUFFERED": "1"}
    container = objects.replica_container(CONTAINER, settings.runtime_image, env)
    container["startupProbe"] = objects.http_probe(HEALTH_PATH, periodSeconds=1, timeoutSeconds=1, failureThreshold=120)
    container["volumeMounts"].append({"name": "pool-key", "mountPath": KEY_DIR, "readOnly": True})
    resources = settings.pool_resources()
    if resources:
        container["resources"] = resources
    # 0440 + fsGroup: readable by the replica's user only.
    volume = {"name": "pool-key", "secret": {"secretName": name, "defaultMode": 0o440}}
    spec = objects.pod_spec([container], [volume], objects.grace_s(MAX_TIMEOUT_S))
    spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(GENERIC)},
        "spec": spec,
    }


@dataclass(frozen=True)
class Target:
    """What claiming a pool pod for a function needs, read from its Deployment."""

    function: str
    version: str
    digest: str  # the code's
    configmap: str
    env: dict[str, str] = field(hash=False)


def target(deployment: Obj, settings: KubeSettings) -> Target | None:
    """The claim target of a function, or None when a pool pod cannot run it: an image deploy, secrets (the pool
    pod has no secret volume), a process of its own (``envProcess``), limits other than the pool's, node
    constraints, a longer timeout than a pool pod's grace period, or another runtime image."""
    meta = deployment.get("metadata") or {}
    configmap = (meta.get("annotations") or {}).get(objects.CODE_ANNOTATION)
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    spec = template.get("spec") or {}
    containers = spec.get("containers") or []
    if not configmap or len(containers) != 1 or spec.get("nodeSelector"):
        return None
    container = containers[0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "name" in e}
    mounts = {m.get("name") for m in container.get("volumeMounts") or []}
    if (
        container.get("image") != settings.runtime_image
        or "secrets" in mounts
        or "fprocess" in env
        or (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is False  # pool pods are read-only
        or (container.get("resources") or {}) != settings.pool_resources()
        or int(spec.get("terminationGracePeriodSeconds") or 0) > objects.grace_s(MAX_TIMEOUT_S)
    ):
        return None
    return Target(
        str(labels.get(objects.FUNCTION_LABEL) or meta.get("name")),
        str(labels.get(objects.VERSION_LABEL, "")),
        str(labels.get(objects.CODE_LABEL, "")),
        str(configmap),
        env,
    )


def claim_patch(resource_version: str, t: Target) -> Obj:
    """The patch that claims a pool pod: conditional on ``resource_version`` (a 409 when anyone changed it)."""
    labels = {objects.FUNCTION_LABEL: t.function, POOL_LABEL: CLAIMED, objects.VERSION_LABEL: t.version}
    if t.digest:
        labels[objects.CODE_LABEL] = t.digest
    return {"metadata": {"resourceVersion": resource_version, "labels": labels}}


def state(pool_pod: Obj) -> str:
    return str(dig(pool_pod, "metadata", "labels", POOL_LABEL) or "")


def function_of(pool_pod: Obj) -> str:
    """The function a claimed pool pod serves ("" for a generic one)."""
    return str(dig(pool_pod, "metadata", "labels", objects.FUNCTION_LABEL) or "")


def terminating(pool_pod: Obj) -> bool:
    return dig(pool_pod, "metadata", "deletionTimestamp") is not None


def started(pool_pod: Obj) -> bool:
    """Running with its runtime answering (the startup probe passed), and not stopping."""
    statuses = dig(pool_pod, "status", "containerStatuses") or []
    return (
        dig(pool_pod, "status", "phase") == "Running"
        and not terminating(pool_pod)
        and bool(statuses)
        and all(s.get("started") is True for s in statuses)
        and bool(dig(pool_pod, "status", "podIP"))
    )


def dead(pool_pod: Obj, now: float) -> str:
    """Why a pool pod will never serve ("" when it may): it exited, cannot start, or has not started in time."""
    phase = dig(pool_pod, "status", "phase")
    if phase in ("Failed", "Succeeded"):
        return f"exited ({phase})"
    for status in dig(pool_pod, "status", "containerStatuses") or []:
        reason = dig(status, "state", "waiting", "reason")
        if reason in FATAL_WAITING:
            return str(reason)
    created = parse_time(dig(pool_pod, "metadata", "creationTimestamp"))
    if not started(pool_pod) and state(pool_pod) == GENERIC and created and now - created > START_TIMEOUT_S:
        return f"not started within {START_TIMEOUT_S:g}s"
    return ""


@dataclass(frozen=True)
class Function:
    """A function's Deployment as tending the pool needs it."""

    replicas: int
    ready: int
    version: str


def function(deployment: Obj) -> Function:
    labels = dig(deployment, "spec", "template", "metadata", "labels") or {}
    replicas = dig(deployment, "spec", "replicas")
    return Function(
        int(replicas) if replicas is not None else 1,
        int(dig(deployment, "status", "readyReplicas") or 0),
        str(labels.get(objects.VERSION_LABEL, "")),
    )


def retire(bridge: Obj, functions: dict[str, Function]) -> str:
    """Why a bridge (a claimed pool pod) should go now ("" when it still bridges): its function is gone or at
    zero, its Deployment has the replicas it wants ready, or it runs an older version and the current one is up."""
    fn = functions.get(function_of(bridge))
    if fn is None:
        return "its function is gone"
    if fn.replicas == 0:
        return "its function scaled to zero"
    if fn.ready >= max(fn.replicas, 1):
        return "the function's own replicas are ready"
    version = dig(bridge, "metadata", "labels", objects.VERSION_LABEL)
    if version != fn.version and fn.ready >= 1:
        return "the function was updated"
    return ""


@dataclass
class Plan:
    """One round of tending the pool."""

    create: int = 0
    delete: dict[str, str] = field(default_factory=dict)  # pod (and its Secret) -> why
    orphans: list[str] = field(default_factory=list)  # pool Secrets whose pod is gone


def plan(
    pods: list[Obj],
    secrets_: list[Obj] | None,
    functions: dict[str, Function],
    size: int,
    now: float,
    pending: int = 0,
) -> Plan:
    """Delete dead pool pods and retired bridges, create generic pods up to ``size`` (``pending``: created but not
    seen yet), and delete pool Secrets whose pod is gone (when ``secrets_`` is given)."""
    out = Plan()
    live = pending
    for p in pods:
        name = p["metadata"]["name"]
        if terminating(p):
            continue
        why = dead(p, now)
        if not why and state(p) == CLAIMED:
            why = retire(p, functions)
        if why:
            out.delete[name] = why
        elif state(p) == GENERIC:
            live += 1
    out.create = max(0, size - live)
    if secrets_ is not None:
        names = {p["metadata"]["name"] for p in pods}
        for s in secrets_:
            name = s["metadata"]["name"]
            created = parse_time(dig(s, "metadata", "creationTimestamp"))
            if name not in names and created and now - created > ORPHAN_GRACE_S:
                out.orphans.append(name)
    return out
