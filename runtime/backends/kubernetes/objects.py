"""Kubernetes objects for one function, built from its deployment spec: pure functions, no API calls.

Each function is a Deployment plus a Service, both labelled ``faas_function=<name>`` (the OpenFaaS convention, so
OpenFaaS tooling recognises them). The Deployment carries the whole :class:`FunctionDeployment` (without source) in
the annotation :data:`SPEC_ANNOTATION`, so any gateway replica, or a restarted one, rebuilds its view from the API
alone. A source deploy runs the runtime image with its signed bundle mounted from a ConfigMap
(:mod:`runtime.backends.kubernetes.code`). Objects are plain JSON dicts (camelCase, as the API server takes them), which
the client accepts as bodies and ``kubernetes-validate`` checks against the official schemas in the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from runtime.backends.containers import BUNDLE_DIR
from runtime.contract import HEALTH_PATH, PORT, READY_PATH, RUNTIME_UID, SECRETS_DIR
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment

FUNCTION_LABEL = "faas_function"  # OpenFaaS: the label that selects a function's pods
VERSION_LABEL = "com.stoker.version"  # hash of the spec: tells the pods of a new version from the old ones
MANAGED_BY = {"app.kubernetes.io/managed-by": "stoker"}
SPEC_ANNOTATION = "com.stoker.deployment"
CODE_LABEL = "com.stoker.code"  # a source deploy's pods and ConfigMap: the bundle's digest (code.py)
CODE_ANNOTATION = "com.stoker.code-configmap"  # on a source deploy's Deployment: the ConfigMap holding its code
RUN_AS_USER = RUNTIME_UID
PRE_STOP_S = 5  # a stopping pod keeps serving this long, so every gateway sees it leave before it stops accepting
_DRAIN_MARGIN_S = 10

# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(rf"^{_NAME}$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
_QUANTITY_RE = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_RESOURCES = ("cpu", "memory")


@dataclass(frozen=True)
class Code:
    """A source deploy's code as its pods get it: the ConfigMap holding the signed bundle (mounted read-only at
    :data:`BUNDLE_DIR`), the bundle's digest, and the variables with which the replica checks and unpacks it."""

    configmap: str
    digest: str
    env: dict[str, str]


def version(dep: FunctionDeployment, code: Code | None = None) -> str:
    """A short hash of everything that shapes the pods: equal specs (and code) give equal versions (and no
    rollout)."""
    shape: Any = dep.to_json(with_source=False)
    # Not given hashes as the false every deployment carried before it could be absent (its pods are unchanged, so
    # no rollout on upgrade); an explicit false (a writable root, other pods) hashes apart.
    shape["readOnlyRootFilesystem"] = {None: False, False: "writable"}.get(dep.readOnlyRootFilesystem, True)
    if code is not None:  # image deploys hash as before, so their running pods keep their version
        shape = [shape, code.digest]
    canonical = json.dumps(shape, sort_keys=True).encode()
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


def resources(dep: FunctionDeployment) -> dict[str, dict[str, str]]:
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


def env(dep: FunctionDeployment, code: Code | None = None) -> dict[str, str]:
    """The variables of a function's container (a pool pod specialised for it gets the same)."""
    settings = dep.settings
    out = dict(dep.envVars)
    out.update(
        {
            "STOKER_FUNCTION_NAME": dep.service,
            "STOKER_NAMESPACE": dep.namespace,
            "exec_timeout": f"{settings.timeout_s:g}s",
            "max_inflight": str(settings.concurrency),
            "STOKER_SECRETS_DIR": SECRETS_DIR,
        }
    )
    # Only when asked (or when the runtime image runs the code): an image built by `stoker build` already knows
    # its entrypoint.
    if code is not None or "com.stoker.entrypoint" in {**dep.labels, **dep.annotations}:
        out["STOKER_ENTRYPOINT"] = settings.entrypoint
    if dep.envProcess:
        out["fprocess"] = dep.envProcess
    if code is not None:
        out.update(code.env)
    return out


def http_probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": PORT}, **timing}


# Ready (not at its in-flight limit) is what routing follows; the first one comes as soon as it answers.
READINESS = http_probe(READY_PATH, periodSeconds=1, timeoutSeconds=1, failureThreshold=3)
LIVENESS = http_probe(HEALTH_PATH, initialDelaySeconds=5, periodSeconds=10, timeoutSeconds=2, failureThreshold=3)
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "runAsGroup": RUN_AS_USER,
    "fsGroup": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}


def replica_container(name: str, image: str, variables: dict[str, str]) -> dict[str, Any]:
    """A hardened replica container (function pods and pool pods): port 8080, probes, preStop, emptyDir /tmp."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": k, "value": v} for k, v in variables.items()],
        "readinessProbe": dict(READINESS),
        "livenessProbe": dict(LIVENESS),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_S}}},
        "securityContext": dict(CONTAINER_SECURITY),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_spec(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], grace_s: int) -> dict[str, Any]:
    """A hardened pod spec: non-root, seccomp, no API token, no service variables."""
    return {
        "automountServiceAccountToken": False,  # a function has no business with the Kubernetes API
        "enableServiceLinks": False,  # no environment variables describing every Service in the namespace
        "terminationGracePeriodSeconds": grace_s,
        "securityContext": dict(POD_SECURITY),
        "containers": containers,
        "volumes": [dict(TMP_VOLUME), *volumes],
    }


def grace_s(timeout_s: float) -> int:
    """How long a stopping pod may take: the preStop sleep, a call in flight to its end, and a margin."""
    return PRE_STOP_S + int(timeout_s) + _DRAIN_MARGIN_S


# faas-netes's annotation for the path its probes ask (a classic-watchdog image: /_/health, where any other path runs
# the function). Kubernetes cannot show stoker an image's environment, so it cannot tell such an image by itself.
HEALTH_PATH_ANNOTATION = "com.openfaas.health.http.path"
_PROBE_PATH = re.compile(r"/[A-Za-z0-9._~/-]{0,200}")


def _container(dep: FunctionDeployment, code: Code | None) -> dict[str, Any]:
    container = replica_container(dep.service, dep.image, env(dep, code))
    if not dep.read_only_root:  # asked for explicitly; every other hardening stays
        container["securityContext"]["readOnlyRootFilesystem"] = False
    path = dep.annotations.get(HEALTH_PATH_ANNOTATION, "")
    if path:
        if not _PROBE_PATH.fullmatch(path):
            raise InvalidRequest(f"annotation {HEALTH_PATH_ANNOTATION}: {path!r} is not a plain absolute path")
        container["readinessProbe"] = {**READINESS, "httpGet": {"path": path, "port": PORT}}
    limits = resources(dep)
    if limits:
        container["resources"] = limits
    if dep.secrets:
        container["volumeMounts"].append({"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True})
    if code is not None:
        container["volumeMounts"].append({"name": "code", "mountPath": BUNDLE_DIR, "readOnly": True})
    return container


def _volumes(dep: FunctionDeployment, code: Code | None) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = []
    if dep.secrets:
        # Each key of each Secret becomes a file; `faas-cli secret create NAME` makes one key named NAME, so the
        # value is at /var/openfaas/secrets/NAME as OpenFaaS functions expect. 0440 + fsGroup: only the function.
        sources = [{"secret": {"name": name}} for name in dep.secrets]
        volumes.append({"name": "secrets", "projected": {"sources": sources, "defaultMode": 0o440}})
    if code is not None:
        volumes.append({"name": "code", "configMap": {"name": code.configmap, "defaultMode": 0o444}})
    return volumes


def deployment(dep: FunctionDeployment, replicas: int, code: Code | None = None) -> dict[str, Any]:
    """The apps/v1 Deployment of a function with ``replicas`` desired; with ``code``, a source deploy whose
    ``dep.image`` is the runtime image and whose signed bundle comes from a ConfigMap."""
    if not dep.image:
        raise InvalidRequest(f"function {dep.service!r}: Kubernetes runs images; no image given")
    if not dep.service[:1].isalpha():
        # Its Service's name is a DNS-1035 label: the API server refuses one that starts with a digit.
        raise InvalidRequest(f"function {dep.service!r}: on Kubernetes a function name must start with a letter")
    labels = _labels(dep)
    annotations = _annotations(dep)
    template_labels = {**labels, VERSION_LABEL: version(dep, code)}
    meta_annotations = {**annotations, SPEC_ANNOTATION: json.dumps(dep.to_stored())}
    if code is not None:
        template_labels[CODE_LABEL] = code.digest
        meta_annotations[CODE_ANNOTATION] = code.configmap
    spec = pod_spec([_container(dep, code)], _volumes(dep, code), grace_s(dep.settings.timeout_s))
    node_selector = _node_selector(dep)
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": dep.service,
            "namespace": dep.namespace,
            "labels": labels,
            "annotations": meta_annotations,
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {FUNCTION_LABEL: dep.service}},
            # Capacity never drops during an update: one new pod at a time, an old one goes only once it is ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": template_labels, "annotations": annotations}, "spec": spec},
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
