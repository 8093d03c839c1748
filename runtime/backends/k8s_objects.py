"""Kubernetes objects for one function, built from its deployment spec: pure functions, no API calls.

Each function is a Deployment plus a Service, both labelled ``faas_function=<name>`` (the OpenFaaS convention, so
OpenFaaS tooling recognises them). The Deployment carries the whole :class:`FunctionDeployment` (without source) in
the annotation :data:`SPEC_ANNOTATION`, so any gateway replica, or a restarted one, rebuilds its view from the API
alone. Objects are plain JSON dicts (camelCase, as the API server takes them), which the client accepts as bodies
and ``kubernetes-validate`` checks against the official schemas in the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment

FUNCTION_LABEL = "faas_function"  # OpenFaaS: the label that selects a function's pods
VERSION_LABEL = "com.stoker.version"  # hash of the spec: tells the pods of a new version from the old ones
MANAGED_BY = {"app.kubernetes.io/managed-by": "stoker"}
SPEC_ANNOTATION = "com.stoker.deployment"
PORT = 8080
SECRETS_DIR = "/var/openfaas/secrets"  # where OpenFaaS (and the replica's default) reads secrets from
RUN_AS_USER = 10001  # any non-zero uid works: the image's files only need to be world-readable
PRE_STOP_S = 5  # a stopping pod keeps serving this long, so every gateway sees it leave before it stops accepting
_DRAIN_MARGIN_S = 10

# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(rf"^{_NAME}$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
_QUANTITY_RE = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_RESOURCES = ("cpu", "memory")


def version(dep: FunctionDeployment) -> str:
    """A short hash of everything that shapes the pods: equal specs give equal versions (and no rollout)."""
    canonical = json.dumps(dep.to_json(with_source=False), sort_keys=True).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def _check_key(key: str, what: str) -> None:
    prefix, slash, name = key.rpartition("/")
    ok = bool(_NAME_RE.match(name)) and len(name) <= 63
    if slash:
        ok = ok and bool(_PREFIX_RE.match(prefix)) and len(prefix) <= 253
    if not ok:
        raise InvalidRequest(
            f"{what} key {key!r} is not valid on Kubernetes: an optional DNS prefix and '/', then at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )


def _labels(dep: FunctionDeployment) -> dict[str, str]:
    for key, value in dep.labels.items():
        _check_key(key, "label")
        if value and not (len(value) <= 63 and _NAME_RE.match(value)):
            raise InvalidRequest(
                f"label {key}={value!r} is not valid on Kubernetes: a label value is at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit (put free text in an annotation)"
            )
    return {**dep.labels, **MANAGED_BY, FUNCTION_LABEL: dep.service}


def _annotations(dep: FunctionDeployment) -> dict[str, str]:
    for key in dep.annotations:
        _check_key(key, "annotation")
    return dict(dep.annotations)


def _resources(dep: FunctionDeployment) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind, values in (("limits", dep.limits), ("requests", dep.requests)):
        for resource, quantity in values.items():
            if resource not in _RESOURCES:
                raise InvalidRequest(f"{kind}.{resource}: only {' and '.join(_RESOURCES)} can be set")
            if not quantity:
                continue
            if not _QUANTITY_RE.match(quantity):
                raise InvalidRequest(
                    f"{kind}.{resource}: {quantity!r} is not a Kubernetes quantity (examples: 128Mi, 1Gi, 250m, 0.5)"
                )
            out.setdefault(kind, {})[resource] = quantity
    return out


def _node_selector(dep: FunctionDeployment) -> dict[str, str]:
    """OpenFaaS constraints on Kubernetes: ``key=value`` (or ``key == value``) node label selectors."""
    selector: dict[str, str] = {}
    for constraint in dep.constraints:
        key, sep, value = constraint.replace("==", "=").partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or "!" in key:
            raise InvalidRequest(
                f"constraint {constraint!r}: on Kubernetes a constraint is a node label selector, key=value"
            )
        _check_key(key, "constraint")
        selector[key] = value
    return selector


def _env(dep: FunctionDeployment) -> list[dict[str, str]]:
    settings = dep.settings
    env = dict(dep.envVars)
    env.update(
        {
            "STOKER_FUNCTION_NAME": dep.service,
            "STOKER_NAMESPACE": dep.namespace,
            "exec_timeout": f"{settings.timeout_s:g}s",
            "max_inflight": str(settings.concurrency),
            "STOKER_SECRETS_DIR": SECRETS_DIR,
        }
    )
    # Only when asked: an image built by `stoker build` already knows its entrypoint.
    if "com.stoker.entrypoint" in {**dep.labels, **dep.annotations}:
        env["STOKER_ENTRYPOINT"] = settings.entrypoint
    if dep.envProcess:
        env["fprocess"] = dep.envProcess
    return [{"name": k, "value": v} for k, v in env.items()]


def _container(dep: FunctionDeployment) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": dep.service,
        "image": dep.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(dep),
        # Ready (not at its in-flight limit) is what routing follows; the first one comes as soon as it answers.
        "readinessProbe": {
            "httpGet": {"path": "/_/ready", "port": PORT},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/_/health", "port": PORT},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_S}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    resources = _resources(dep)
    if resources:
        container["resources"] = resources
    if dep.secrets:
        container["volumeMounts"].append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    return container


def _volumes(dep: FunctionDeployment) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    if dep.secrets:
        # Each key of each Secret becomes a file; `faas-cli secret create NAME` makes one key named NAME, so the
        # value is at /var/openfaas/secrets/NAME as OpenFaaS functions expect. 0440 + fsGroup: only the function.
        sources = [{"secret": {"name": name}} for name in dep.secrets]
        volumes.append({"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o440}})
    return volumes


def deployment(dep: FunctionDeployment, replicas: int) -> dict[str, Any]:
    """The apps/v1 Deployment of a function with ``replicas`` desired."""
    if not dep.image:
        raise InvalidRequest(f"function {dep.service!r}: Kubernetes runs images; no image given")
    labels = _labels(dep)
    annotations = _annotations(dep)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # a function has no business with the Kubernetes API
        "enableServiceLinks": False,  # no environment variables describing every Service in the namespace
        "terminationGracePeriodSeconds": PRE_STOP_S + int(dep.settings.timeout_s) + _DRAIN_MARGIN_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(dep)],
        "volumes": _volumes(dep),
    }
    node_selector = _node_selector(dep)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": dep.service,
            "namespace": dep.namespace,
            "labels": labels,
            "annotations": {**annotations, SPEC_ANNOTATION: json.dumps(dep.to_json(with_source=False))},
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {FUNCTION_LABEL: dep.service}},
            # Capacity never drops during an update: one new pod at a time, an old one goes only once it is ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {**labels, VERSION_LABEL: version(dep)}, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }


def service(dep: FunctionDeployment) -> dict[str, Any]:
    """The ClusterIP Service of a function: its EndpointSlices list the ready pods the gateway routes to."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": dep.service,
            "namespace": dep.namespace,
            "labels": {**MANAGED_BY, FUNCTION_LABEL: dep.service},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {FUNCTION_LABEL: dep.service},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def scale(replicas: int) -> dict[str, Any]:
    """The body of a patch to the scale subresource."""
    return {"spec": {"replicas": replicas}}
