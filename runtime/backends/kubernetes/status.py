"""Reading Kubernetes objects back: functions from Deployments, routable addresses from EndpointSlices, the
outcome of a rollout from Pods. Pure functions over the JSON form of the objects (camelCase dicts), so they work the
same with every version of the client and in the tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.backends.kubernetes.objects import CODE_ANNOTATION, FUNCTION_LABEL, MANAGED_BY, SPEC_ANNOTATION
from runtime.contract import PORT
from stoker.errors import StokerError
from stoker.names import DEFAULT_NAMESPACE
from stoker.spec import FunctionDeployment

SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set by the EndpointSlice controller on every slice

# Image pull failures: the kubelet retries them (the image may be pushed late, the registry briefly down), so a
# deploy gives them a grace period before it calls them fatal.
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff"})

# Container states that will not fix themselves: a deploy stops waiting and reports them.
FATAL_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def dig(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...``, or None where a step is missing or not a mapping."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def parse_time(value: Any) -> float:
    """Seconds since the epoch from an RFC 3339 timestamp (0.0 when missing or unreadable)."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def function_of(deployment: dict[str, Any]) -> FunctionDeployment | None:
    """The function a Deployment runs: from stoker's annotation, else (a Deployment made by other OpenFaaS tooling)
    from its labels and image. None when it is not a function."""
    meta = deployment.get("metadata") or {}
    annotations: dict[str, str] = meta.get("annotations") or {}
    raw = annotations.get(SPEC_ANNOTATION)
    if raw:
        try:
            return FunctionDeployment.from_stored(json.loads(raw))
        except (ValueError, StokerError):
            pass  # damaged by hand: fall back to what the object itself says
    labels: dict[str, str] = meta.get("labels") or {}
    name = labels.get(FUNCTION_LABEL)
    containers = dig(deployment, "spec", "template", "spec", "containers") or []
    if not name or not containers:
        return None
    env = {e["name"]: e.get("value", "") for e in containers[0].get("env") or [] if "name" in e}
    try:
        return FunctionDeployment.from_json(
            {
                "service": name,
                "namespace": meta.get("namespace") or DEFAULT_NAMESPACE,
                "image": containers[0].get("image", ""),
                "envVars": env,
                "labels": {k: v for k, v in labels.items() if k != FUNCTION_LABEL and k not in MANAGED_BY},
                "annotations": {k: v for k, v in annotations.items() if k != SPEC_ANNOTATION},
            },
            require_code=False,
        )
    except StokerError:
        return None


def desired_replicas(deployment: dict[str, Any]) -> int:
    value = dig(deployment, "spec", "replicas")
    return int(value) if value is not None else 1


@dataclass(frozen=True)
class Address:
    """One ready replica as an EndpointSlice lists it."""

    instance: str  # the pod's name
    host: str
    port: int


def slice_addresses(endpoint_slice: dict[str, Any]) -> tuple[str, list[Address]]:
    """The Service a slice belongs to and its ready, not terminating, endpoints."""
    service = (dig(endpoint_slice, "metadata", "labels") or {}).get(SERVICE_NAME_LABEL, "")
    port = PORT
    for p in endpoint_slice.get("ports") or []:
        if p.get("port") and p.get("name") in ("http", None, ""):
            port = int(p["port"])
            break
    out: list[Address] = []
    for endpoint in endpoint_slice.get("endpoints") or []:
        conditions = endpoint.get("conditions") or {}
        # The API says an unknown (absent) ready condition is to be read as ready.
        if conditions.get("ready") is False or conditions.get("terminating") is True:
            continue
        addresses = endpoint.get("addresses") or []
        if not addresses:
            continue
        instance = dig(endpoint, "targetRef", "name") or addresses[0]
        out.append(Address(instance, addresses[0], port))
    return service, out


@dataclass(frozen=True)
class RolloutState:
    """What the pods of one version say about it."""

    ready: list[str]  # names of ready pods
    failure: str  # a state that will not fix itself ("" when none)
    progress: str  # what the pods are doing, for a timeout message
    retrying: bool = False  # the failure is an image pull the kubelet retries


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = dig(pod, "status", "conditions") or []
    terminating = dig(pod, "metadata", "deletionTimestamp") is not None
    return not terminating and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def rollout_state(pods: list[dict[str, Any]]) -> RolloutState:
    """Ready pods, or why none is: a fatal container state (crash loop, image pull failure) or what is pending."""
    ready = [pod["metadata"]["name"] for pod in pods if _is_ready(pod)]
    failure = ""
    retrying = False
    progress: list[str] = []
    for pod in pods:
        name = dig(pod, "metadata", "name")
        for condition in dig(pod, "status", "conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                progress.append(f"{name}: not scheduled: {condition.get('message') or condition.get('reason')}")
        for status in dig(pod, "status", "containerStatuses") or []:
            waiting = dig(status, "state", "waiting") or {}
            reason = waiting.get("reason", "")
            last = dig(status, "lastState", "terminated") or {}
            if reason in FATAL_WAITING:
                detail = waiting.get("message") or ""
                if last:
                    detail = f"exit code {last.get('exitCode')}" + (
                        f" ({last['reason']})" if last.get("reason") else ""
                    )
                failure = f"{name}: {reason}" + (f": {detail}" if detail else "")
                retrying = reason in PULL_FAILURES
            elif reason:
                progress.append(f"{name}: {reason}")
        if dig(pod, "status", "phase") == "Failed":
            failure = f"{name}: failed: {dig(pod, 'status', 'message') or dig(pod, 'status', 'reason')}"
            retrying = False
    return RolloutState(ready, failure, "; ".join(progress), retrying)


def deployment_problem(obj: dict[str, Any]) -> str:
    """Why a Deployment lacks replicas, as its conditions say (quota exceeded, a failed rollout), else "". Conditions
    the controller wrote before it saw the current spec (``observedGeneration`` behind) are about an earlier
    version, and say nothing yet."""
    generation = dig(obj, "metadata", "generation")
    if generation is not None and (dig(obj, "status", "observedGeneration") or 0) < generation:
        return ""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        bad = condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        stuck = condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded"
        if bad or stuck:
            return str(condition.get("message") or condition.get("reason") or "")
    return ""


def code_configmap(deployment: dict[str, Any]) -> str:
    """The ConfigMap holding a source deploy's code ("" for an image deploy)."""
    return str((dig(deployment, "metadata", "annotations") or {}).get(CODE_ANNOTATION) or "")


def rollout_complete(deployment: dict[str, Any]) -> bool:
    """Whether every pod of the Deployment runs its current version (no pod of an earlier one is left)."""
    status = deployment.get("status") or {}
    generation = dig(deployment, "metadata", "generation")
    if generation is not None and (status.get("observedGeneration") or 0) < generation:
        return False
    desired = desired_replicas(deployment)
    return int(status.get("updatedReplicas") or 0) >= desired and int(status.get("replicas") or 0) <= desired


def same_version(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two reads of a Deployment run the same version (pod template and function spec): they may differ
    in status, scale and resourceVersion only."""
    annotation = (dig(a, "metadata", "annotations") or {}).get(SPEC_ANNOTATION)
    return dig(a, "spec", "template") == dig(b, "spec", "template") and annotation == (
        dig(b, "metadata", "annotations") or {}
    ).get(SPEC_ANNOTATION)
