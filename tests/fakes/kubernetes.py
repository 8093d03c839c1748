"""An in-memory fake of exactly the Kubernetes API the backend calls, with the controllers behind it simulated.

No cluster can run in CI, so this stands in for the API server and the controllers, following the API's documented
semantics (each rule names the section of the Kubernetes API reference, https://kubernetes.io/docs/reference/, or the
client's source it follows):

- Writes: every object written is checked against the official schemas (kubernetes-validate, strict) and the
  server's own rules (DNS-1123/1035 names, label syntax, annotation size, immutable fields, ConfigMap/Secret size);
  a refusal is an ``ApiException`` carrying a ``Status`` body (400, 403, 404, 409, 422) made as the client makes it
  from a real answer. ``replace`` honours ``metadata.resourceVersion`` (409 Conflict when stale); a Deployment's
  ``metadata.generation`` moves with its spec, its status is the server's, not the client's.
- Controllers run in a thread of their own, after the write has answered (never inside it), as on a real cluster:
  the Deployment controller (a rolling update honouring ``maxSurge``/``maxUnavailable``, ``observedGeneration``,
  ``availableReplicas``, the ``Available``/``Progressing``/``ReplicaFailure`` conditions), the kubelet (per image:
  ``ready``, ``manual`` until :meth:`FakeCluster.make_ready`, ``crash`` into CrashLoopBackOff, ``pull`` cycling
  ErrImagePull -> ImagePullBackOff; ``pull_failures[image]`` pulls that fail before one succeeds; a pod waiting for
  a ConfigMap re-checked every tick; deleted pods terminating for ``termination_s``), the garbage collector and the
  EndpointSlice controller (one slice per Service listing the pods its *selector* matches, terminating ones with
  ``terminating: true``).
- Watches are served through the client's real ``kubernetes.watch.Watch`` from the fake's event log: ADDED when an
  object starts matching the selector, DELETED when it stops, in-stream ERROR (410 Expired, or any injected) and
  BOOKMARK events.
- Bare pods of the warm pool run, with ``run_pool``, as real replica processes on loopback addresses, probed for
  startup and readiness, stopped with SIGTERM on delete.

It records every call and answers with the client's real model classes. Only the methods the backend calls exist:
calling anything else fails the test.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import http.client
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import kubernetes_validate
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from runtime.backends.kubernetes.clients import KubeClients

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_VERSIONS = ("1.30", kubernetes_validate.latest_version())  # the oldest cluster we support, and the newest
_SLICE_MANAGER = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
MAX_DATA_BYTES = 1024 * 1024  # ConfigMap and Secret data (core/v1 validation: MaxSecretSize, 1 MiB)
MAX_ANNOTATIONS_BYTES = 256 * 1024  # TotalAnnotationSizeLimitB
SERVICE_ACCOUNT = "system:serviceaccount:stoker:stoker-gateway"
REWATCH_S = 2.0  # a watcher whose watch the server ended counts as coming back (see quiesce) for this long


def validate(obj: Obj) -> None:
    """Raise if ``obj`` is not a valid object for the Kubernetes versions we support (unknown fields included)."""
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- errors: a Status body, as the client raises it from a real answer -----------------------------------------
class _ErrorResponse:
    """What ``ApiException.from_response`` reads of an HTTP answer."""

    def __init__(self, status: int, reason: str, body: Obj) -> None:
        self.status = status
        self.reason = reason
        self.data = json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json"}


_PHRASES = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``meta/v1 Status`` (API reference: Common Definitions, Status)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def api_error(code: int, reason: str, message: str, details: Obj | None = None) -> ApiException:
    """The exception the client raises for this answer (its own subclass per status, body = the Status)."""
    body = status_body(code, reason, message, details)
    try:
        ApiException.from_response(
            http_resp=_ErrorResponse(code, _PHRASES.get(code, reason), body), body=json.dumps(body), data=None
        )
    except ApiException as exc:
        return exc
    raise AssertionError("from_response always raises")


@dataclass(frozen=True)
class Kind:
    """What the API calls a collection: for messages (``deployments.apps "x" not found``) and RBAC."""

    resource: str  # plural
    group: str  # "" for core
    kind: str

    @property
    def qualified(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @property
    def kind_qualified(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


KINDS = {
    "deployments": Kind("deployments", "apps", "Deployment"),
    "services": Kind("services", "", "Service"),
    "pods": Kind("pods", "", "Pod"),
    "slices": Kind("endpointslices", "discovery.k8s.io", "EndpointSlice"),
    "configmaps": Kind("configmaps", "", "ConfigMap"),
    "secrets": Kind("secrets", "", "Secret"),
    "leases": Kind("leases", "coordination.k8s.io", "Lease"),
}


def not_found(collection: str, name: str) -> ApiException:
    k = KINDS[collection]
    return api_error(
        404, "NotFound", f'{k.qualified} "{name}" not found', {"name": name, "group": k.group, "kind": k.resource}
    )


def already_exists(collection: str, name: str) -> ApiException:
    k = KINDS[collection]
    details = {"name": name, "group": k.group, "kind": k.resource}
    return api_error(409, "AlreadyExists", f'{k.qualified} "{name}" already exists', details)


def conflict(collection: str, name: str) -> ApiException:
    k = KINDS[collection]
    message = (
        f'Operation cannot be fulfilled on {k.qualified} "{name}": the object has been modified; please apply your '
        "changes to the latest version and try again"
    )
    return api_error(409, "Conflict", message, {"name": name, "group": k.group, "kind": k.resource})


def invalid(collection: str, name: str, causes: list[tuple[str, str]]) -> ApiException:
    """422 Invalid, with one cause per (field, message), as field validation reports them."""
    k = KINDS[collection]
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    details = {
        "name": name,
        "group": k.group,
        "kind": k.kind,
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
    }
    return api_error(422, "Invalid", f'{k.kind_qualified} "{name}" is invalid: {text}', details)


def forbidden(collection: str, verb: str, namespace: str) -> ApiException:
    k = KINDS[collection]
    message = (
        f'{k.qualified} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource "{k.resource}" in API group '
        f'"{k.group}" in the namespace "{namespace}"'
    )
    return api_error(403, "Forbidden", message, {"group": k.group, "kind": k.resource})


def bad_request(message: str) -> ApiException:
    return api_error(400, "BadRequest", message)


# --- label selectors (API reference: Common Definitions, LabelSelector; "Labels and Selectors") --------------------
_SELECTOR_TERM = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nkey>[^\s!=,()]+)"
    r"|(?P<key>[^\s!=,()]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[^\s!=,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b`` is two terms)."""
    terms, depth, current = [], 0, ""
    for ch in selector:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in terms if t.strip()]


def parse_selector(selector: str | None) -> list[tuple[str, str, set[str]]]:
    """``(key, op, values)`` for each term: ``=``/``==``, ``!=``, ``in``, ``notin``, ``exists`` (``k``), ``!`` (``!k``).
    A malformed selector is a 400, as the server answers."""
    out: list[tuple[str, str, set[str]]] = []
    for term in _split_terms(selector or ""):
        m = _SELECTOR_TERM.match(term)
        if m is None:
            raise bad_request(f"unable to parse requirement: {term!r}")
        if m["nkey"]:
            out.append((m["nkey"], "!", set()))
        elif m["setop"]:
            out.append((m["key"], m["setop"], {v.strip() for v in m["values"].split(",") if v.strip()}))
        elif m["op"]:
            out.append((m["key"], "!=" if m["op"] == "!=" else "=", {m["value"]}))
        else:
            out.append((m["key"], "exists", set()))
    return out


def selector_matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    labels = labels or {}
    for key, op, values in parse_selector(selector):
        has, value = key in labels, labels.get(key)
        ok = {
            "=": has and value in values,
            "in": has and value in values,
            # "!=" and notin match objects without the key (labels.Requirement.Matches)
            "!=": not has or value not in values,
            "notin": not has or value not in values,
            "exists": has,
            "!": not has,
        }[op]
        if not ok:
            return False
    return True


def _labels_of(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


# --- server-side validation (API reference: "Object Names and IDs", "Labels and Selectors", each kind's page) -----
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _name_problems(collection: str, name: str) -> list[tuple[str, str]]:
    if collection == "services":  # Service names are DNS-1035 labels: they become DNS names of their own
        if len(name) > 63 or not _DNS_1035.match(name):
            return [
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a DNS-1035 label must consist of lower case alphanumeric characters '
                    "or '-', start with an alphabetic character, and end with an alphanumeric character",
                )
            ]
        return []
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        return [
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                "characters, '-' or '.', and must start and end with an alphanumeric character",
            )
        ]
    return []


def _key_problems(path: str, key: str) -> list[tuple[str, str]]:
    prefix, slash, name = key.rpartition("/")
    ok = bool(_QUALIFIED_NAME.match(name)) and len(name) <= 63
    if slash:
        ok = ok and bool(_DNS_SUBDOMAIN.match(prefix)) and len(prefix) <= 253
    return [] if ok else [(path, f'Invalid value: "{key}": name part must consist of alphanumeric characters')]


def _label_problems(path: str, labels: dict[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in (labels or {}).items():
        out += _key_problems(path, key)
        if len(value) > 63:
            out.append((path, f'Invalid value: "{value}": must be no more than 63 characters'))
        elif not _LABEL_VALUE.match(value):
            out.append(
                (
                    path,
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return out


def _meta_problems(collection: str, obj: Obj) -> list[tuple[str, str]]:
    meta = obj.get("metadata") or {}
    out = _name_problems(collection, str(meta.get("name") or ""))
    out += _label_problems("metadata.labels", meta.get("labels"))
    annotations = meta.get("annotations") or {}
    for key in annotations:
        out += _key_problems("metadata.annotations", key)
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        out.append(("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"))
    return out


def _data_problems(obj: Obj) -> list[tuple[str, str]]:
    """ConfigMap and Secret data: valid keys, no key twice, 1 MiB in all (decoded bytes)."""
    out: list[tuple[str, str]] = []
    total = 0
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    secret = obj.get("kind") == "Secret"
    for key, value in data.items():
        if not _CONFIG_KEY.match(key) or len(key) > 253:
            out.append(
                (
                    f"data[{key}]",
                    f'Invalid value: "{key}": a valid config key must consist of alphanumeric characters, '
                    "'-', '_' or '.'",
                )
            )
        total += len(base64.b64decode(value)) if secret else len(value.encode())
    for key, value in binary.items():
        if key in data:
            out.append((f"binaryData[{key}]", f'Invalid value: "{key}": duplicate of key present in data'))
        total += len(base64.b64decode(value))
    if total > MAX_DATA_BYTES:
        out.append(("data", f"Too long: must have at most {MAX_DATA_BYTES} bytes"))
    return out


def _deployment_problems(obj: Obj) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    out = _label_problems(
        "spec.template.metadata.labels", ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    )
    selector = spec.get("selector") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    match = selector.get("matchLabels") or {}
    if not match and not selector.get("matchExpressions"):
        out.append(("spec.selector", "Invalid value: empty selector is invalid for deployment"))
    if any(template_labels.get(k) != v for k, v in match.items()):
        out.append(("spec.template.metadata.labels", "Invalid value: `selector` does not match template `labels`"))
    return out


def _check(collection: str, obj: Obj, name: str) -> None:
    """The schema (strict) and the server's own rules for one object; 422 Invalid listing every problem."""
    if not obj.get("kind") or not obj.get("apiVersion"):
        raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
    try:
        validate(obj)
    except kubernetes_validate.ValidationError as exc:
        raise invalid(collection, name, [(".".join(map(str, exc.path)) or "<root>", str(exc.message))]) from None
    problems = _meta_problems(collection, obj)
    if collection == "deployments":
        problems += _deployment_problems(obj)
    if collection in ("configmaps", "secrets"):
        problems += _data_problems(obj)
    if collection == "pods":
        problems += _label_problems("metadata.labels", _labels_of(obj))
    if problems:
        raise invalid(collection, name, problems)


def _immutable(collection: str, old: Obj, new: Obj) -> list[tuple[str, str]]:
    """Fields an update may not change (each kind's page in the API reference)."""
    out: list[tuple[str, str]] = []
    if collection == "deployments" and (old.get("spec") or {}).get("selector") != (new.get("spec") or {}).get(
        "selector"
    ):
        out.append(("spec.selector", f"Invalid value: {json.dumps(new['spec'].get('selector'))}: field is immutable"))
    frozen = ("data", "binaryData", "immutable")
    if collection == "configmaps" and old.get("immutable") and any(old.get(k) != new.get(k) for k in frozen):
        out.append(("data", "Forbidden: field is immutable when `immutable` is set"))
    if collection == "secrets":
        if old.get("immutable") and any(old.get(k) != new.get(k) for k in ("data", "immutable")):
            out.append(("data", "Forbidden: field is immutable when `immutable` is set"))
        if old.get("type", "Opaque") != new.get("type", "Opaque"):
            out.append(("type", f'Invalid value: "{new.get("type")}": field is immutable'))
    if collection == "services":
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = (new.get("spec") or {}).get("clusterIP")
        if new_ip not in (None, "", old_ip):
            out.append(("spec.clusterIP", f'Invalid value: "{new_ip}": field is immutable'))
    return out


# --- patches (API reference: "Updating objects"; the client picks strategic merge for a dict body) ---------------
_MERGE_KEYS = {"ports": "port", "containers": "name", "env": "name", "volumes": "name", "volumeMounts": "mountPath"}


def strategic_merge(target: Any, patch: Any, key: str = "") -> Any:
    """A strategic merge patch, for the fields of the kinds the backend patches: maps merge, ``null`` deletes,
    lists with a patch merge key (ports by port, containers by name...) merge by it, other lists are replaced."""
    if isinstance(patch, dict) and isinstance(target, dict):
        out = dict(target)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = strategic_merge(out.get(k), v, k)
        return out
    if isinstance(patch, list) and isinstance(target, list) and key in _MERGE_KEYS:
        merge_key = _MERGE_KEYS[key]
        out_list = [copy.deepcopy(item) for item in target]
        for item in patch:
            at = next((i for i, t in enumerate(out_list) if t.get(merge_key) == item.get(merge_key)), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = strategic_merge(out_list[at], item)
        return out_list
    return copy.deepcopy(patch)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (``application/merge-patch+json``): maps merge, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _apply_patch(collection: str, name: str, obj: Obj, body: Any, content_type: str | None) -> Obj:
    if isinstance(body, list) or content_type == "application/json-patch+json":
        raise api_error(415, "UnsupportedMediaType", "the fake models strategic merge and merge patches only")
    if content_type == "application/merge-patch+json":
        return merge_patch(obj, body)  # type: ignore[no-any-return]
    if collection not in ("deployments", "services", "pods"):
        raise api_error(415, "UnsupportedMediaType", f"strategic merge patch is not supported for {collection}")
    return strategic_merge(obj, body)  # type: ignore[no-any-return]


def _model(obj: Any, kind: str) -> Any:
    """The client's own model for ``obj``, as a real API call returns it."""
    cls = getattr(client, kind)
    return cls.from_dict(copy.deepcopy(obj)) if hasattr(cls, "from_dict") else copy.deepcopy(obj)


@dataclass
class Event:
    rv: int
    collection: str
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    previous: Obj | None  # the object before a MODIFIED (to tell entering and leaving a selector)


@dataclass
class _Kubelet:
    """What the simulated kubelet tracks of one Deployment pod."""

    behaviour: str
    image: str
    pulls_failed: int = 0
    next_at: float = 0.0  # when its next step is due (pull backoff)
    terminate_at: float = 0.0
    stage: str = "creating"  # creating, pulling, backoff, running, crashing


@dataclass
class _Rollout:
    """The Deployment controller's memory of one Deployment's progress (for the Progressing condition)."""

    template_hash: str = ""
    last_progress: float = field(default_factory=time.monotonic)
    progress_key: tuple[int, int] = (-1, -1)
    timed_out: bool = False


class FakeCluster:
    """The state of a pretend cluster. ``behaviour[image]`` decides what pods of an image do: ``ready`` (at once),
    ``manual`` (wait for :meth:`make_ready`), ``crash`` (crash loop) or ``pull`` (image pull failure)."""

    def __init__(self, run_pool: bool = False, workdir: Path | None = None) -> None:
        self.cond = threading.Condition()
        self.rv = itertools.count(1000)
        self.last_rv = 999
        self.ips = itertools.count(2)
        self.objects: dict[str, dict[str, Obj]] = {k: {} for k in KINDS}
        self.secrets = self.objects["secrets"]  # by name (tests read them here)
        self.events: list[Event] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.calls_by: dict[str, list[str]] = {}  # who (see clients()) -> the methods they called
        self.behaviour: dict[str, str] = {}
        self.pull_failures: dict[str, int] = {}  # image -> pulls that fail before one succeeds
        self.denied: set[str] = set()  # methods RBAC refuses (403)
        self.quota_pods: int | None = None  # a ResourceQuota on pods: creating more fails (ReplicaFailure)
        self.logs: dict[str, str] = {}  # pod name -> its current container's log, as `timestamps=true` gives it
        self.previous_logs: dict[str, str] = {}  # pod name -> the log of its previous (terminated) container
        self.expired_before = 0  # watches from an older resourceVersion get 410 Gone
        self.watch_errors: list[tuple[str, int]] = []  # (collection, code): an ERROR event for the next watch
        self.watch_timeout_s = 0.5
        self.termination_s = 0.05  # how long a deleted Deployment pod stays terminating (its preStop, scaled)
        self.pull_backoff_s = 0.05
        self.progress_deadline_s: float | None = None  # else spec.progressDeadlineSeconds
        self.tick_s = 0.01
        self._kubelet_state: dict[str, _Kubelet] = {}
        self._rollouts: dict[str, _Rollout] = {}
        self._owner: dict[str, str] = {}  # pod -> the Deployment whose ReplicaSet owns it
        # Bare pods (the warm pool): with run_pool, each runs a real replica process on its own loopback address
        # (127.0.0.N), all on one port, and a kubelet thread probes them; otherwise they start at once, simulated.
        self.run_pool = run_pool
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="stoker-k8s-fake-"))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.loopback = itertools.count(2)
        self._reserved = socket.socket()
        self._reserved.bind(("127.0.0.1", 0))  # keeps the port ours on 127.0.0.1; pods use 127.0.0.2 and up
        self.pool_port: int = self._reserved.getsockname()[1]  # where bare pods listen (the backend's replica_port)
        self.replica_port = self.pool_port if run_pool else 8080  # the port EndpointSlices list
        self._kubelet: threading.Thread | None = None
        self._closed = False
        self._before: dict[str, list[Callable[[str], None]]] = {}
        self._late: dict[str, float] = {}
        self._busy = False
        self._rounds = 0  # rounds the controllers ran
        self._idle_rv = -1  # the resourceVersion at which the controllers last ran a round that changed nothing
        self._calls_in_flight = 0
        self._streams: set[_WatchResponse] = set()  # watch answers being read
        self._rewatch: dict[tuple[int, str, str | None], list[float]] = {}  # watchers the server cut off, since
        self._controllers = threading.Thread(target=self._run_controllers, name="fake controllers", daemon=True)
        self._controllers.start()

    # --- helpers for tests ---------------------------------------------------------------------------------
    def clients(self, who: str = "") -> KubeClients:
        """Clients of the fake; the calls made through them are also recorded under ``who`` (``calls_by``)."""
        return KubeClients(
            FakeApps(self, who),
            FakeCore(self, who),
            FakeDiscovery(self, who),
            client.ApiClient().sanitize_for_serialization,
            watch.Watch,  # the client's own: it reads the fake's watch responses as it reads a server's
        )

    def coordination(self, who: str = "") -> FakeCoordination:
        return FakeCoordination(self, who)

    def close(self) -> None:
        """Stop every replica process the fake started, and the controllers."""
        self._closed = True
        with self.cond:
            processes = list(self.processes.values())
            self.cond.notify_all()
        for proc in processes:
            proc.kill()
        for proc in processes:
            proc.wait(10)
        if self._kubelet is not None:
            self._kubelet.join(5)
        self._controllers.join(5)
        self._reserved.close()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the controllers have nothing left to do (no pod terminating or pulling, every Deployment's
        status observed), as a test that reads the objects directly needs."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self._settled():
                assert time.monotonic() < deadline, "the fake cluster did not settle"
                self.cond.wait(0.02)

    def quiesce(self, timeout: float = 30.0) -> None:
        """Wait until nothing is left to happen without a new write: no API call in progress, the controllers have
        run a round since the last write and changed nothing, no kubelet timer pending (a pull backing off, a pod
        terminating), and every watcher has read every event (each open watch answer waits for the next one, and a
        watcher the server cut off has watched again). The barrier before asserting that something did NOT happen,
        instead of sleeping a while: after it, what the backend heard through its watches is all there was to hear.
        A blocking call (tests on the event loop: ``await asyncio.to_thread(cluster.quiesce)``; the loop then runs
        the callbacks the watch threads posted before this returned, ahead of the awaiting test). Not for ``run_pool``
        process pods, whose probes answer on the processes' time."""
        deadline = time.monotonic() + timeout
        with self.cond:
            asked = self._rounds
            self.cond.notify_all()  # the controllers look now, not after their idle wait
            # Two rounds started after the question: a write an API call was about to make has been made, and seen.
            while self._rounds < asked + 2 or self._noise():
                assert time.monotonic() < deadline, f"the fake cluster never went quiet: {self._noise()}"
                self.cond.wait(0.05)

    async def quiesced(self, timeout: float = 30.0) -> None:
        """:meth:`quiesce` for a test on the event loop."""
        await asyncio.to_thread(self.quiesce, timeout)

    def _noise(self, now: float | None = None) -> str:
        """What keeps the cluster from being quiet, or ""."""
        now = time.monotonic() if now is None else now
        if self._calls_in_flight:
            return f"{self._calls_in_flight} API call(s) in progress"
        if self._idle_rv != self.last_rv:
            return "the controllers have not caught up with the last write"
        pending = [n for n, k in self._kubelet_state.items() if k.terminate_at or k.stage in ("pulling", "backoff")]
        if pending:
            return f"pods pulling or terminating: {pending}"
        behind = [s.collection for s in self._streams if not s.caught_up]
        if behind:
            return f"watches not caught up: {behind}"
        for who, ends in self._rewatch.items():
            ends[:] = [t for t in ends if now - t < REWATCH_S]
            if ends:
                return f"a watcher of {who[1]} not back yet"
        return ""

    def _settled(self) -> bool:
        if self._busy:
            return False
        for dep in self.objects["deployments"].values():
            if (dep.get("status") or {}).get("observedGeneration") != dep["metadata"].get("generation"):
                return False
        pods = self.objects["pods"].values()
        return not any(_terminating(p) and p["metadata"]["name"] not in self.processes for p in pods)

    def slice_of(self, service: str) -> Obj | None:
        """The EndpointSlice of a Service (found by its label, as a client would: its name is generated)."""
        with self.cond:
            return next(
                (
                    copy.deepcopy(s)
                    for s in self.objects["slices"].values()
                    if s["metadata"]["labels"]["kubernetes.io/service-name"] == service
                ),
                None,
            )

    def before_next_pod_patch(self, action: Callable[[str], None]) -> None:
        """Run ``action(pod name)`` (as another client would) just before the next pod patch is applied."""
        self.before_next("patch_namespaced_pod", action)

    def before_next(self, method: str, action: Callable[[str], None]) -> None:
        """Run ``action(name)`` (as another client would) just before the next ``method`` call is applied."""
        self._before.setdefault(method, []).append(action)

    def answer_late(self, method: str, seconds: float) -> None:
        """The answers of ``method`` arrive ``seconds`` after the write was applied (a slow network): the watch
        may deliver what happened since before the caller reads the answer."""
        self._late[method] = seconds

    def deny(self, method: str) -> None:
        """RBAC refuses ``method`` from now on (403 Forbidden)."""
        self.denied.add(method)

    def relabel(self, collection: str, name: str, labels: dict[str, str | None]) -> None:
        """Another client changes an object's labels (``None`` removes one; its resourceVersion changes)."""
        with self.cond:
            obj = copy.deepcopy(self.objects[collection][name])
            previous = copy.deepcopy(obj)
            current = obj["metadata"].setdefault("labels", {})
            for key, value in labels.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self._put(collection, obj, "MODIFIED", previous)

    def pool_pods(self, state: str | None = None) -> list[Obj]:
        with self.cond:
            return [
                p
                for p in self.objects["pods"].values()
                if "stoker.dev/pool" in p["metadata"]["labels"]
                and state in (None, p["metadata"]["labels"]["stoker.dev/pool"])
            ]

    def fail_pod(self, pod_name: str) -> None:
        """A bare pod's replica dies: its process is killed (the kubelet notices), or a simulated one fails."""
        with self.cond:
            proc = self.processes.get(pod_name)
            if proc is None:
                pod = self._copy("pods", pod_name)
                pod["status"].update({"phase": "Failed", "conditions": _conditions(False)})
                self._put("pods", pod, "MODIFIED")
                return
        proc.kill()

    def expire_watches(self, before: int | None = None) -> None:
        """Compact history up to ``before`` (default: all of it): every open watch from an older resourceVersion
        ends with an in-stream ERROR 410 Expired, and the watchers must list again."""
        with self.cond:
            self.expired_before = before if before is not None else next(self.rv)
            self.cond.notify_all()

    def break_watches(self, collection: str, code: int = 500) -> None:
        """The next watch event of ``collection`` is an ERROR with this code (an etcd or apiserver failure)."""
        with self.cond:
            self.watch_errors.append((collection, code))
            self.cond.notify_all()

    def writes(self) -> list[str]:
        """The methods called so far that change something (not get, list or watch)."""
        return [name for name, _ in self.calls if method_rule(name)[1] not in ("get", "list", "watch")]

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def pods(self, function: str, terminating: bool = True) -> list[Obj]:
        """Every pod labelled as ``function``'s: its Deployment's and any bare pod (a claimed pool pod)."""
        with self.cond:
            return [
                p
                for p in self.objects["pods"].values()
                if p["metadata"]["labels"].get("faas_function") == function and (terminating or not _terminating(p))
            ]

    def _owned(self, deployment: str) -> list[Obj]:
        """The pods of a Deployment's ReplicaSets (bare pods never: they have no owner)."""
        return [p for n, p in self.objects["pods"].items() if self._owner.get(n) == deployment]

    def make_ready(self, function: str) -> None:
        """Every pod of ``function``'s Deployment that runs and waits (``manual``) becomes ready."""
        with self.cond:
            for pod in self._owned(function):
                state = self._kubelet_state.get(pod["metadata"]["name"])
                if state is None or _terminating(pod) or state.behaviour != "manual":
                    continue
                state.behaviour = "ready"  # one still starting is ready once it runs
                if state.stage == "running" and not _is_ready(pod):
                    self._set_pod_ready(pod["metadata"]["name"], True)

    def set_ready(self, pod_name: str, ready: bool) -> None:
        """One pod's readiness probe starts failing (or passing again)."""
        with self.cond:
            self._set_pod_ready(pod_name, ready)

    def finish_terminating(self) -> None:
        """Every terminating Deployment pod ends now (its preStop and grace period are over)."""
        with self.cond:
            for state in self._kubelet_state.values():
                if state.terminate_at:
                    state.terminate_at = time.monotonic()
            self.cond.notify_all()

    def _set_pod_ready(self, pod_name: str, ready: bool) -> None:
        pod = self._copy("pods", pod_name)
        pod["status"]["conditions"] = _conditions(ready)
        for status in pod["status"].get("containerStatuses") or []:
            status["ready"] = ready
        self._put("pods", pod, "MODIFIED")

    # --- storage -------------------------------------------------------------------------------------------
    def _copy(self, collection: str, name: str) -> Obj:
        """A copy of a stored object to change and :meth:`_put` back (stored objects are never changed in place:
        the event log keeps what each event said)."""
        return copy.deepcopy(self.objects[collection][name])

    def _put(self, collection: str, obj: Obj, event: str, previous: Obj | None = None) -> Obj:
        rv = next(self.rv)
        self.last_rv = rv
        name = obj["metadata"]["name"]
        if event == "MODIFIED" and previous is None:
            previous = copy.deepcopy(self.objects[collection].get(name))
        obj["metadata"]["resourceVersion"] = str(rv)
        if event == "DELETED":
            self.objects[collection].pop(name, None)
        else:
            self.objects[collection][name] = obj
        self.events.append(Event(rv, collection, event, copy.deepcopy(obj), previous))
        self.cond.notify_all()
        return obj

    def _list(self, collection: str, selector: str | None) -> Obj:
        items = [o for o in self.objects[collection].values() if selector_matches(_labels_of(o), selector)]
        return {"metadata": {"resourceVersion": str(self.last_rv)}, "items": copy.deepcopy(items)}

    def _create(self, collection: str, namespace: str, body: Obj) -> Obj:
        """POST: checks, then stored with the fields the server sets."""
        name = str((body.get("metadata") or {}).get("name") or "")
        if (body.get("metadata") or {}).get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        _check(collection, body, name)
        if name in self.objects[collection]:
            raise already_exists(collection, name)
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
        meta.pop("resourceVersion", None)
        if collection == "deployments":
            meta["generation"] = 1
            obj.pop("status", None)
            _default_deployment(obj)
        if collection == "services":
            obj["spec"].setdefault("clusterIP", f"10.96.0.{len(self.objects['services']) + 10}")
        return self._put(collection, obj, "ADDED")

    def _update(self, collection: str, name: str, namespace: str, body: Obj, subresource: bool = False) -> Obj:
        """PUT (and the result of a patch): resourceVersion precondition, immutable fields, generation, status kept."""
        current = self.objects[collection].get(name)
        if current is None:
            raise not_found(collection, name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise bad_request("the name of the object does not match the name on the URL")
        expected = meta.get("resourceVersion")
        if expected and expected != current["metadata"]["resourceVersion"]:
            raise conflict(collection, name)
        if not expected and collection == "leases":  # Leases allow no unconditional update
            raise invalid(
                collection, name, [("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")]
            )
        _check(collection, body, name)
        problems = _immutable(collection, current, body)
        if problems:
            raise invalid(collection, name, problems)
        obj = copy.deepcopy(body)
        for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace"):
            if kept in current["metadata"]:
                obj["metadata"][kept] = current["metadata"][kept]
        if "status" in current and not subresource:
            obj["status"] = copy.deepcopy(current["status"])  # a write of the main resource ignores status
        if collection == "deployments":
            _default_deployment(obj)
            if obj["spec"] != current["spec"]:
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
        if collection == "services":
            obj["spec"]["clusterIP"] = current["spec"].get("clusterIP")
        return self._put(collection, obj, "MODIFIED", copy.deepcopy(current))

    def _delete(self, collection: str, name: str) -> Obj:
        obj = self.objects[collection].get(name)
        if obj is None:
            raise not_found(collection, name)
        self._put(collection, copy.deepcopy(obj), "DELETED")
        k = KINDS[collection]
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": k.group, "kind": k.resource, "uid": obj["metadata"].get("uid")},
        }

    # --- the controllers (their own thread: never inside a write) -------------------------------------------
    def _run_controllers(self) -> None:
        while not self._closed:
            with self.cond:
                seen = self.last_rv
                self._busy = True
                try:
                    self._garbage_collect()
                    for name in list(self.objects["deployments"]):
                        self._reconcile(name)
                    self._run_kubelet_steps()
                    for name in list(self.objects["services"]):
                        self._sync_slice(name)
                    self._drop_orphan_slices()
                finally:
                    self._busy = self.last_rv != seen  # something changed: another round before "settled"
                    if not self._busy:
                        self._idle_rv = seen
                    self._rounds += 1
                    self.cond.notify_all()
                if not self._busy:
                    self.cond.wait(self.tick_s * 5)
            time.sleep(self.tick_s)

    def _garbage_collect(self) -> None:
        """Pods whose Deployment is gone (background propagation: the Deployment goes at once, its pods after)."""
        for name, owner in list(self._owner.items()):
            pod = self.objects["pods"].get(name)
            if pod is not None and owner not in self.objects["deployments"]:
                self._terminate(pod)

    def _reconcile(self, name: str) -> None:
        """The Deployment controller: a rolling update (sync.go, rolling.go of kube-controller-manager)."""
        dep = self.objects["deployments"][name]
        spec = dep["spec"]
        desired = int(spec.get("replicas", 1))
        template_hash = _hash(spec["template"])
        pods = [p for p in self._owned(name) if not _terminating(p)]
        new = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == template_hash]
        old = [p for p in pods if p not in new]
        strategy = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = _int_or_percent(strategy.get("maxSurge", "25%"), desired, up=True)
        unavailable = _int_or_percent(strategy.get("maxUnavailable", "25%"), desired, up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        failure = ""
        rollout = self._rollouts.setdefault(name, _Rollout())
        if rollout.template_hash != template_hash:
            self._rollouts[name] = rollout = _Rollout(template_hash)
        # Scale up the new ReplicaSet within maxSurge (NewRSNewReplicas).
        target = desired if not old else min(desired, max(len(new), desired + surge - len(pods) + len(new)))
        while len(new) < target:
            if self.quota_pods is not None and len(self.objects["pods"]) >= self.quota_pods:
                failure = (
                    f'pods "{name}-{template_hash}-xxxxx" is forbidden: exceeded quota: pods, requested: pods=1, '
                    f"used: pods={len(self.objects['pods'])}, limited: pods={self.quota_pods}"
                )
                break
            new.append(self._start_pod(dep, template_hash))
        if len(new) > desired:  # a scale down: the not-ready ones first
            for pod in sorted(new, key=_is_ready)[: len(new) - desired]:
                self._terminate(pod)
                new.remove(pod)
        # Scale down old ReplicaSets within maxUnavailable: unhealthy pods first, then ready ones while enough
        # are available (reconcileOldReplicaSets).
        min_available = desired - unavailable
        new_unavailable = len(new) - sum(map(_is_ready, new))
        budget = len(new) + len(old) - min_available - new_unavailable
        for pod in [p for p in old if not _is_ready(p)][: max(0, budget)]:
            self._terminate(pod)
            old.remove(pod)
            budget -= 1
        available = sum(map(_is_ready, new + old))
        for pod in [p for p in old if _is_ready(p)][: max(0, min(budget, available - min_available))]:
            self._terminate(pod)
            old.remove(pod)
        self._set_status(dep, new, old, desired, unavailable, rollout, failure)

    def _set_status(
        self, dep: Obj, new: list[Obj], old: list[Obj], desired: int, unavailable: int, rollout: _Rollout, failure: str
    ) -> None:
        """What the Deployment controller reports (DeploymentStatus, DeploymentCondition in the API reference)."""
        name = dep["metadata"]["name"]
        ready = sum(map(_is_ready, new + old))
        key = (len(new), sum(map(_is_ready, new)))
        if key != rollout.progress_key:
            rollout.progress_key, rollout.last_progress = key, time.monotonic()
        rs = f"{name}-{rollout.template_hash}"
        complete = len(new) == desired and key[1] == desired and not old
        deadline = self.progress_deadline_s
        if deadline is None:
            deadline = float(dep["spec"].get("progressDeadlineSeconds", 600))
        previous = {c["type"]: c for c in (dep.get("status") or {}).get("conditions") or []}
        if complete:
            rollout.timed_out = False
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.')
        elif rollout.timed_out or time.monotonic() - rollout.last_progress > deadline:
            rollout.timed_out = True  # until the rollout completes or a new one starts
            progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs}" has timed out progressing.')
        elif key[0] == 0:
            progressing = ("True", "NewReplicaSetCreated", f'Created new replica set "{rs}"')
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
        wanted = [
            (
                "Available",
                ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
                if ready >= desired - unavailable
                else ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
            ),
            ("Progressing", progressing),
        ]
        if failure:
            wanted.append(("ReplicaFailure", ("True", "FailedCreate", failure)))
        conditions = []
        for kind, (status, reason, message) in wanted:
            before = previous.get(kind)
            same = before is not None and (before["status"], before["reason"], before["message"]) == (
                status,
                reason,
                message,
            )
            conditions.append(
                before
                if same
                else {
                    "type": kind,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastUpdateTime": _now(),
                    "lastTransitionTime": before["lastTransitionTime"]
                    if before is not None and before["status"] == status
                    else _now(),
                }
            )
        status: Obj = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": len(new) + len(old),
            "updatedReplicas": len(new),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": conditions,
        }
        status = {k: v for k, v in status.items() if v != 0}  # omitempty, as the server serialises it
        if desired - ready > 0:
            status["unavailableReplicas"] = desired - ready
        if dep.get("status") != status:
            updated = self._copy("deployments", name)
            updated["status"] = status
            self._put("deployments", updated, "MODIFIED")

    def _start_pod(self, dep: Obj, template_hash: str) -> Obj:
        template = dep["spec"]["template"]
        name = f"{dep['metadata']['name']}-{template_hash}-{uuid.uuid4().hex[:5]}"
        container = template["spec"]["containers"][0]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": dep["metadata"]["namespace"],
                "uid": str(uuid.uuid4()),
                "labels": {**template["metadata"].get("labels", {}), "pod-template-hash": template_hash},
                "annotations": dict(template["metadata"].get("annotations") or {}),
                "creationTimestamp": _now(),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{dep['metadata']['name']}-{template_hash}",
                        "uid": dep["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Pending",
                "conditions": _conditions(False),
                "containerStatuses": [_container_status(container, {"waiting": {"reason": "ContainerCreating"}})],
            },
        }
        self._owner[name] = dep["metadata"]["name"]
        self._kubelet_state[name] = _Kubelet(self.behaviour.get(container["image"], "ready"), container["image"])
        return self._put("pods", pod, "ADDED")

    def _terminate(self, pod: Obj) -> None:
        """Graceful deletion: the pod is marked terminating (its endpoint too) and goes after its grace period."""
        name = pod["metadata"]["name"]
        if _terminating(pod):
            return
        updated = self._copy("pods", name)
        updated["metadata"]["deletionTimestamp"] = _now()
        updated["metadata"]["deletionGracePeriodSeconds"] = updated["spec"].get("terminationGracePeriodSeconds", 30)
        self._put("pods", updated, "MODIFIED")
        state = self._kubelet_state.get(name)
        if state is not None:
            state.terminate_at = time.monotonic() + self.termination_s

    def _run_kubelet_steps(self) -> None:
        """The kubelet of Deployment pods: pull, mount, start, crash, become ready; end terminating pods."""
        now = time.monotonic()
        for name, state in list(self._kubelet_state.items()):
            pod = self.objects["pods"].get(name)
            if pod is None:
                del self._kubelet_state[name]
                continue
            if state.terminate_at:
                if now >= state.terminate_at:
                    self._put("pods", copy.deepcopy(pod), "DELETED")
                    self._owner.pop(name, None)
                    del self._kubelet_state[name]
                continue
            if now < state.next_at or state.stage in ("running", "crashing"):
                continue
            self._kubelet_step(pod, state, now)

    def _kubelet_step(self, pod: Obj, state: _Kubelet, now: float) -> None:
        name = pod["metadata"]["name"]
        updated = self._copy("pods", name)
        status = updated["status"]
        container = status["containerStatuses"][0]
        if "podIP" not in status:
            n = next(self.ips)
            status["podIP"] = f"10.1.{n // 250}.{n % 250}"
            status["startTime"] = _now()
        # Image pull (Images, "Image pull backoff"): ErrImagePull first, then ImagePullBackOff while backing off.
        failing = state.behaviour == "pull" or state.pulls_failed < self.pull_failures.get(state.image, 0)
        if failing:
            if state.stage == "pulling":
                reason = "ImagePullBackOff"
                message = f'Back-off pulling image "{state.image}"'
                state.stage = "backoff"
            else:
                state.pulls_failed += 1
                reason = "ErrImagePull"
                message = f'failed to pull and unpack image "{state.image}": not found'
                state.stage = "pulling"
            container["state"] = {"waiting": {"reason": reason, "message": message}}
            state.next_at = now + self.pull_backoff_s
            self._put("pods", updated, "MODIFIED")
            return
        behaviour = self._code_check(updated["spec"], state.behaviour)
        if behaviour == "mount":  # the kubelet waits for the ConfigMap it is to mount, and checks again
            container["state"] = {"waiting": {"reason": "ContainerCreating"}}
            if updated != pod:
                self._put("pods", updated, "MODIFIED")
            return
        status["phase"] = "Running"
        container["imageID"] = f"docker.io/library/fake@sha256:{hashlib.sha256(state.image.encode()).hexdigest()}"
        if behaviour == "crash":
            state.stage = "crashing"
            container["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 10s restarting failed container={container['name']} pod={name}",
                }
            }
            container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
            container["restartCount"] = 1
            self.previous_logs[name] = f"{_now()} ModuleNotFoundError: No module named 'missing'\n"
            self.logs.setdefault(name, "")
        else:
            state.stage = "running"
            container["state"] = {"running": {"startedAt": _now()}}
            container["started"] = True
            self.logs.setdefault(name, f"{_now()} started {name}\n")
            if behaviour == "ready":
                status["conditions"] = _conditions(True)
                container["ready"] = True
        self._put("pods", updated, "MODIFIED")

    def _code_check(self, pod_spec: Obj, behaviour: str) -> str:
        """A pod that mounts a code ConfigMap: waits while it is missing, and crashes (as the replica refuses to
        run it) when the bundle does not match the signature its variables carry."""
        names = [v["configMap"]["name"] for v in pod_spec.get("volumes", []) if "configMap" in v]
        if not names:
            return behaviour
        configmap = self.objects["configmaps"].get(names[0])
        if configmap is None:
            return "mount"
        data = base64.b64decode(configmap["binaryData"]["bundle.tar.gz"])
        env = {e["name"]: e.get("value", "") for e in pod_spec["containers"][0].get("env", [])}
        key = bytes.fromhex(env.get("STOKER_BUNDLE_KEY", ""))
        expected = hmac.new(key, data, hashlib.sha256).hexdigest()
        if env.get("STOKER_UNPACK_BUNDLE") != "1" or not hmac.compare_digest(
            expected, env.get("STOKER_BUNDLE_SIGNATURE", "")
        ):
            return "crash"
        return behaviour

    # --- bare pods (the warm pool): the kubelet ----------------------------------------------------------------
    def _start_bare_pod(self, pod: Obj) -> None:
        container = pod["spec"]["containers"][0]
        missing = [
            v["secret"]["secretName"]
            for v in pod["spec"].get("volumes", [])
            if "secret" in v and v["secret"]["secretName"] not in self.secrets
        ]
        waiting = self.behaviour.get(container["image"]) == "pull" or missing
        state: Obj = {"waiting": {"reason": "ImagePullBackOff" if not missing else "ContainerCreating"}}
        if not waiting:
            state = {"running": {"startedAt": _now()}}
        status: Obj = {
            "phase": "Pending" if waiting else "Running",
            "conditions": _conditions(False),
            "containerStatuses": [
                {**_container_status(container, state), "started": not waiting and not self.run_pool},
            ],
        }
        if not waiting:
            if self.run_pool:
                status["podIP"] = self._spawn(pod)
            else:  # an address where nothing listens: a specialisation is refused at once
                status["podIP"] = f"127.0.0.{next(self.loopback)}"
        pod["status"] = status

    def _spawn(self, pod: Obj) -> str:
        """Run the pod's replica as a process, with its secret volumes as files and its emptyDirs as folders."""
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        folder = self.workdir / name
        folder.mkdir(parents=True)
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        local: dict[str, str] = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            target = folder / mount["name"]
            target.mkdir()
            if "secret" in volume:
                for key, value in self.secrets[volume["secret"]["secretName"]]["data"].items():
                    (target / key).write_bytes(base64.b64decode(value))
            local[mount["mountPath"]] = str(target)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOKER_")}
        for var in container.get("env", []):
            value = var.get("value", "")
            for path, there in local.items():
                if value == path or value.startswith(path + "/"):
                    value = there + value[len(path) :]
            env[var["name"]] = value
        ip = f"127.0.0.{next(self.loopback)}"
        sock = socket.socket()
        sock.bind((ip, self.pool_port))
        sock.listen(64)
        env.update(PYTHONPATH=str(ROOT), STOKER_LISTEN_FD=str(sock.fileno()))
        with open(folder / "log", "wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "runtime"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=[sock.fileno()],
            )
        sock.close()
        if self._kubelet is None:
            self._kubelet = threading.Thread(target=self._run_kubelet, name="fake kubelet", daemon=True)
            self._kubelet.start()
        return ip

    def _run_kubelet(self) -> None:
        """Probe each process pod as the kubelet would: startup (/_/health), readiness (/_/ready), exit."""
        while not self._closed:
            with self.cond:
                running = [(n, p, self.objects["pods"][n]["status"]["podIP"]) for n, p in self.processes.items()]
            for name, proc, ip in running:
                code = proc.poll()
                health = code is None and _probe(ip, self.pool_port, "/_/health")
                ready = health and _probe(ip, self.pool_port, "/_/ready")
                with self.cond:
                    pod = self.objects["pods"].get(name)
                    if pod is None:
                        continue
                    updated = copy.deepcopy(pod)
                    status = updated["status"]
                    container = status["containerStatuses"][0]
                    if code is not None:
                        del self.processes[name]
                        if _terminating(pod):
                            self._put("pods", updated, "DELETED")
                            continue
                        status["phase"] = "Succeeded" if code == 0 else "Failed"
                        container["state"] = {
                            "terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}
                        }
                        container["started"] = False
                        ready = False
                    container["started"] = bool(container.get("started")) or health
                    container["ready"] = ready
                    status["conditions"] = _conditions(ready)
                    if status != pod["status"]:
                        self._put("pods", updated, "MODIFIED")
            time.sleep(0.05)

    # --- the EndpointSlice controller ----------------------------------------------------------------------
    def _sync_slice(self, service_name: str) -> None:
        """One slice per Service listing every pod its selector matches (EndpointSlice, EndpointConditions in the
        API reference): ready = ready and not terminating; serving = ready; terminating = being deleted."""
        service = self.objects["services"][service_name]
        selector = (service.get("spec") or {}).get("selector") or {}
        name = f"{service_name}-{hashlib.sha256(service['metadata']['uid'].encode()).hexdigest()[:5]}"
        endpoints = [
            {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {
                    "ready": _is_ready(pod) and not _terminating(pod),
                    "serving": _is_ready(pod),
                    "terminating": _terminating(pod),
                },
                "targetRef": {
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "namespace": pod["metadata"]["namespace"],
                    "uid": pod["metadata"].get("uid", ""),
                },
            }
            for pod in sorted(self.objects["pods"].values(), key=lambda p: p["metadata"]["name"])
            if selector
            and all(_labels_of(pod).get(k) == v for k, v in selector.items())
            and (pod.get("status") or {}).get("podIP")
            and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        current = self.objects["slices"].get(name)
        if current is not None and current["endpoints"] == endpoints:
            return
        endpoint_slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": service["metadata"]["namespace"],
                "labels": {**_labels_of(service), "kubernetes.io/service-name": service_name, **_SLICE_MANAGER},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Service", "name": service_name, "uid": service["metadata"]["uid"]}
                ],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": self.replica_port, "protocol": "TCP"}],
        }
        validate(endpoint_slice)
        self._put("slices", endpoint_slice, "ADDED" if current is None else "MODIFIED")

    def _drop_orphan_slices(self) -> None:
        for endpoint_slice in list(self.objects["slices"].values()):
            owner = endpoint_slice["metadata"]["labels"]["kubernetes.io/service-name"]
            service = self.objects["services"].get(owner)
            if service is None or endpoint_slice["metadata"]["ownerReferences"][0]["uid"] != service["metadata"]["uid"]:
                self._put("slices", copy.deepcopy(endpoint_slice), "DELETED")


def _default_deployment(obj: Obj) -> None:
    """The defaults the server fills in (apps/v1 defaults.go), so a replace of the same spec changes nothing."""
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("type", "RollingUpdate")
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")


def _int_or_percent(value: int | str, total: int, up: bool) -> int:
    if isinstance(value, int):
        return value
    share = int(value.rstrip("%")) * total
    return -(-share // 100) if up else share // 100


def _hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _conditions(ready: bool) -> list[Obj]:
    flag = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True"},
        {"type": "ContainersReady", "status": flag},
        {"type": "Ready", "status": flag},
    ]


def _container_status(container: Obj, state: Obj) -> Obj:
    return {
        "name": container["name"],
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": state,
    }


def _terminating(pod: Obj) -> bool:
    return pod["metadata"].get("deletionTimestamp") is not None


def is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


_is_ready = is_ready


def _probe(host: str, port: int, path: str) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", path)
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except OSError:
        return False


# --- watches: the stream a server answers ``?watch=true`` with, read by the client's own Watch ---------------------
class _WatchResponse:
    """A chunked watch answer: one JSON event per line (API reference: "Efficient detection of changes").

    Events newer than ``resource_version``, as seen through the selector: MODIFIED that makes an object match is
    ADDED, one that makes it stop matching is DELETED with the object as it was (kube-apiserver's cacher,
    ``convertToWatchEvent``). A watch from a compacted resourceVersion gets an ERROR event with a 410 Status; with
    ``allow_watch_bookmarks`` a BOOKMARK carries the latest resourceVersion before the server ends the watch."""

    status = 200
    reason = "OK"

    def __init__(
        self,
        cluster: FakeCluster,
        collection: str,
        kind: str,
        selector: str | None,
        rv: str | None,
        timeout: float,
        bookmarks: bool,
        watcher: tuple[int, str, str | None] = (0, "", None),
    ) -> None:
        self.cluster = cluster
        self.watcher = watcher  # (the client object, method, selector): the same watcher when it watches again
        self.caught_up = False
        self.collection = collection
        self.kind = kind
        self.selector = selector
        self.rv = rv
        self.deadline = time.monotonic() + min(timeout, cluster.watch_timeout_s)
        self.bookmarks = bookmarks
        self.closed = False
        with cluster.cond:  # an answer given is a watch until it is read to its end or closed
            cluster._streams.add(self)
            ends = cluster._rewatch.get(watcher)
            if ends:
                ends.pop(0)  # back after the server ended its previous watch

    def close(self) -> None:
        self.closed = True
        with self.cluster.cond:
            self.cluster._streams.discard(self)
            self.cluster.cond.notify_all()

    def release_conn(self) -> None:
        return None

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        cluster = self.cluster
        cut_off = False  # the server ended it (the watcher will watch again), rather than the watcher
        try:
            cut_off = yield from self._events()
        finally:
            with cluster.cond:
                cluster._streams.discard(self)
                if cut_off and not self.closed and not cluster._closed:
                    cluster._rewatch.setdefault(self.watcher, []).append(time.monotonic())
                cluster.cond.notify_all()

    def _events(self) -> Generator[bytes, None, bool]:
        """The lines of the answer; returns True when the server ends it (deadline, ERROR)."""
        cluster = self.cluster
        if self.rv in (None, "", "0"):  # "any": the current state first, as synthetic ADDED events
            with cluster.cond:
                listed = cluster._list(self.collection, self.selector)
            for item in listed["items"]:
                yield _line("ADDED", item)
            rv = int(listed["metadata"]["resourceVersion"])
        else:
            rv = int(self.rv)
        while not self.closed and not cluster._closed and time.monotonic() < self.deadline:
            with cluster.cond:
                broken = next((e for e in cluster.watch_errors if e[0] == self.collection), None)
                if broken is not None:
                    cluster.watch_errors.remove(broken)
                    self.caught_up = False
                    yield _line(
                        "ERROR",
                        status_body(
                            broken[1],
                            "InternalError",
                            "an error on the server has prevented the request from succeeding",
                        ),
                    )
                    return True
                if rv < cluster.expired_before:
                    message = f"too old resource version: {rv} ({cluster.expired_before})"
                    self.caught_up = False
                    yield _line("ERROR", status_body(410, "Expired", message))
                    return True
                pending = [e for e in cluster.events if e.rv > rv and e.collection == self.collection]
                if not pending:
                    if not self.caught_up:  # the watcher has read every event: tell quiesce()
                        self.caught_up = True
                        cluster.cond.notify_all()
                    cluster.cond.wait(0.05)
                    continue
                self.caught_up = False
            for event in pending:
                rv = event.rv
                seen = _as_seen(event, self.selector)
                if seen is not None:
                    yield _line(*seen)
        self.caught_up = False
        if self.bookmarks and not self.closed:
            yield _line(
                "BOOKMARK",
                {"kind": self.kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(cluster.last_rv)}},
            )
        return not self.closed


def _as_seen(event: Event, selector: str | None) -> tuple[str, Obj] | None:
    now = selector_matches(_labels_of(event.obj), selector)
    if event.type != "MODIFIED":
        return (event.type, event.obj) if now else None
    before = event.previous is not None and selector_matches(_labels_of(event.previous), selector)
    if now:
        return ("MODIFIED" if before else "ADDED", event.obj)
    if before:
        assert event.previous is not None
        gone = copy.deepcopy(event.previous)
        gone["metadata"]["resourceVersion"] = event.obj["metadata"]["resourceVersion"]
        return ("DELETED", gone)
    return None


def _line(kind: str, obj: Obj) -> bytes:
    return (json.dumps({"type": kind, "object": obj}) + "\n").encode()


_RESOURCES = {
    "deployment": "deployments",
    "service": "services",
    "pod": "pods",
    "secret": "secrets",
    "config_map": "configmaps",
    "endpoint_slice": "slices",
    "lease": "leases",
}
_VERBS = {"read": "get", "replace": "update"}


def method_rule(method: str) -> tuple[str, str]:
    """The collection and RBAC verb of a client method (``watch:list_namespaced_pod`` -> pods, watch)."""
    watching, _, method = method.rpartition(":")
    verb, _, rest = method.partition("_namespaced_")
    if verb.startswith("delete_collection"):
        verb = "deletecollection"
    resource = rest.removesuffix("_scale").removesuffix("_log")
    return _RESOURCES[resource], "watch" if watching else _VERBS.get(verb, verb)


# --- the API groups ----------------------------------------------------------------------------------------------
class _Api:
    def __init__(self, cluster: FakeCluster, who: str = "") -> None:
        self.cluster = cluster
        self.who = who

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every API method counts as a call in progress while it runs (quiesce() waits for none)."""
        super().__init_subclass__(**kwargs)
        for name, method in list(vars(cls).items()):
            if callable(method) and not name.startswith("_"):
                setattr(cls, name, _counted(method))

    def _record(self, method: str, *args: Any) -> None:
        self.cluster.calls.append((method, copy.deepcopy(args)))
        self.cluster.calls_by.setdefault(self.who, []).append(method)
        actions = self.cluster._before.get(method) or []
        while actions:
            actions.pop(0)(next((a for a in args if isinstance(a, str)), ""))
        if method in self.cluster.denied:
            collection, verb = method_rule(method)
            raise forbidden(collection, verb, next((a for a in args if isinstance(a, str) and a), "default"))

    def _list_or_watch(
        self, method: str, collection: str, kind: str, namespace: str, label_selector: str | None, kwargs: Obj
    ) -> Any:
        """A list (its items and the resourceVersion to watch from), or with ``watch=True`` a watch answer."""
        cluster = self.cluster
        parse_selector(label_selector)  # 400 for a malformed one
        if kwargs.get("watch"):
            self._record(f"watch:{method}", namespace, label_selector)
            assert kwargs.get("_preload_content") is False, "a watch streams"
            return _WatchResponse(
                cluster,
                collection,
                kind.removeprefix("V1"),
                label_selector,
                kwargs.get("resource_version"),
                float(kwargs.get("timeout_seconds") or 1800),
                bool(kwargs.get("allow_watch_bookmarks")),
                (id(self), method, label_selector),
            )
        with cluster.cond:
            self._record(method, namespace, label_selector)
            return _model(cluster._list(collection, label_selector), f"{kind}List")


def _counted(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)  # keeps the docstring: the client's Watch reads the return type (":rtype:") from it
    def call(self: _Api, *args: Any, **kwargs: Any) -> Any:
        with self.cluster.cond:
            self.cluster._calls_in_flight += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            with self.cluster.cond:
                self.cluster._calls_in_flight -= 1
                self.cluster.cond.notify_all()

    return call


def _content_type(kwargs: Obj) -> str | None:
    return kwargs.get("_content_type")


class FakeApps(_Api):
    """AppsV1Api: the Deployment calls the backend makes."""

    def list_namespaced_deployment(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1DeploymentList"""
        return self._list_or_watch(
            "list_namespaced_deployment", "deployments", "V1Deployment", namespace, label_selector, kwargs
        )

    def read_namespaced_deployment(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("read_namespaced_deployment", name, namespace)
            if name not in self.cluster.objects["deployments"]:
                raise not_found("deployments", name)
            return _model(self.cluster.objects["deployments"][name], "V1Deployment")

    def create_namespaced_deployment(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_deployment", namespace, body)
            return _model(self.cluster._create("deployments", namespace, body), "V1Deployment")

    def replace_namespaced_deployment(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("replace_namespaced_deployment", name, namespace, body)
            answer = _model(self.cluster._update("deployments", name, namespace, body), "V1Deployment")
        time.sleep(self.cluster._late.get("replace_namespaced_deployment", 0.0))
        return answer

    def delete_namespaced_deployment(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_deployment", name, namespace)
            return _model(self.cluster._delete("deployments", name), "V1Status")

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: Obj, **kwargs: Any) -> Any:
        """The scale subresource (autoscaling/v1 Scale): only spec.replicas can change."""
        with self.cluster.cond:
            self._record("patch_namespaced_deployment_scale", name, namespace, body)
            current = self.cluster.objects["deployments"].get(name)
            if current is None:
                raise not_found("deployments", name)
            scale = {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {k: current["metadata"][k] for k in ("name", "namespace", "resourceVersion", "uid")},
                "spec": {"replicas": current["spec"]["replicas"]},
            }
            scale = _apply_patch("deployments", name, scale, body, _content_type(kwargs))
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(
                    "deployments",
                    name,
                    [("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")],
                )
            updated = copy.deepcopy(current)
            updated["spec"]["replicas"] = replicas
            obj = self.cluster._update("deployments", name, namespace, updated)
            scale["spec"]["replicas"] = replicas
            scale["metadata"]["resourceVersion"] = obj["metadata"]["resourceVersion"]
            return _model(scale, "V1Scale")


class FakeCore(_Api):
    """CoreV1Api: Services, Pods (list and logs), Secrets and ConfigMaps."""

    def create_namespaced_service(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_service", namespace, body)
            return _model(self.cluster._create("services", namespace, body), "V1Service")

    def patch_namespaced_service(self, name: str, namespace: str, body: Obj, **kwargs: Any) -> Any:
        """A strategic merge patch (the client's choice for a dict body), or a merge patch if asked."""
        with self.cluster.cond:
            self._record("patch_namespaced_service", name, namespace, body)
            current = self.cluster.objects["services"].get(name)
            if current is None:
                raise not_found("services", name)
            merged = _apply_patch("services", name, current, body, _content_type(kwargs))
            return _model(self.cluster._update("services", name, namespace, merged, subresource=True), "V1Service")

    def delete_namespaced_service(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_service", name, namespace)
            return _model(self.cluster._delete("services", name), "V1Status")

    def list_namespaced_service(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1ServiceList"""
        return self._list_or_watch(
            "list_namespaced_service", "services", "V1Service", namespace, label_selector, kwargs
        )

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1PodList"""
        return self._list_or_watch("list_namespaced_pod", "pods", "V1Pod", namespace, label_selector, kwargs)

    def create_namespaced_pod(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_pod", namespace, body)
            name = str((body.get("metadata") or {}).get("name") or "")
            _check("pods", body, name)
            if name in self.cluster.objects["pods"]:
                raise already_exists("pods", name)
            pod = copy.deepcopy(body)
            pod["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=_now())
            self.cluster._start_bare_pod(pod)
            self.cluster._put("pods", pod, "ADDED")
            return _model(pod, "V1Pod")

    def patch_namespaced_pod(self, name: str, namespace: str, body: Obj, **kwargs: Any) -> Any:
        """A strategic merge patch of labels; a resourceVersion in it is a precondition (409 Conflict)."""
        with self.cluster.cond:
            self._record("patch_namespaced_pod", name, namespace, body)
            pod = self.cluster.objects["pods"].get(name)
            if pod is None:
                raise not_found("pods", name)
            assert set(body) == {"metadata"} and set(body["metadata"]) <= {"labels", "resourceVersion"}, body
            merged = _apply_patch("pods", name, pod, body, _content_type(kwargs))
            return _model(self.cluster._update("pods", name, namespace, merged, subresource=True), "V1Pod")

    def delete_namespaced_pod(self, name: str, namespace: str) -> Any:
        """Graceful: the pod is marked terminating and its process gets SIGTERM; it goes when that exits."""
        with self.cluster.cond:
            self._record("delete_namespaced_pod", name, namespace)
            pod = self.cluster.objects["pods"].get(name)
            if pod is None:
                raise not_found("pods", name)
            proc = self.cluster.processes.get(name)
            if name in self.cluster._kubelet_state:
                self.cluster._terminate(pod)
            elif proc is None:
                self.cluster._put("pods", copy.deepcopy(pod), "DELETED")
            elif not _terminating(pod):
                updated = copy.deepcopy(pod)
                updated["metadata"]["deletionTimestamp"] = _now()
                self.cluster._put("pods", updated, "MODIFIED")
                proc.terminate()
            return _model(self.cluster.objects["pods"].get(name, pod), "V1Pod")

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        """A container's log (Pod, "read log"): ``container`` must name one of the pod's (400), ``previous`` asks for
        the last terminated one (400 when there is none), ``tail_lines``, ``since_seconds``."""
        with self.cluster.cond:
            self._record("read_namespaced_pod_log", name, namespace, kwargs)
            pod = self.cluster.objects["pods"].get(name)
            if pod is None:
                raise not_found("pods", name)
            containers = [c["name"] for c in pod["spec"]["containers"]]
            container = kwargs.get("container")
            if container is None and len(containers) > 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: {containers}")
            container = container or containers[0]
            if container not in containers:
                raise bad_request(f"container {container} is not valid for pod {name}")
            if kwargs.get("previous"):
                if name not in self.cluster.previous_logs:
                    raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
                text = self.cluster.previous_logs[name]
            else:
                waiting = ((pod["status"].get("containerStatuses") or [{}])[0].get("state") or {}).get("waiting")
                if waiting and name not in self.cluster.logs:
                    raise bad_request(
                        f'container "{container}" in pod "{name}" is waiting to start: {waiting["reason"]}'
                    )
                text = self.cluster.logs.get(name, "")
            lines = text.splitlines(keepends=True)
            if kwargs.get("since_seconds") is not None:
                since = time.time() - kwargs["since_seconds"]
                lines = [line for line in lines if _stamp(line) >= since]
            if kwargs.get("tail_lines") is not None:
                lines = lines[-kwargs["tail_lines"] :] if kwargs["tail_lines"] else []
            if not kwargs.get("timestamps"):
                lines = [line.partition(" ")[2] for line in lines]
            return "".join(lines)

    def list_namespaced_secret(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1SecretList"""
        return self._list_or_watch("list_namespaced_secret", "secrets", "V1Secret", namespace, label_selector, kwargs)

    def create_namespaced_secret(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_secret", namespace, body)
            body = {**body, "type": body.get("type") or "Opaque"}
            return _model(self.cluster._create("secrets", namespace, body), "V1Secret")

    def replace_namespaced_secret(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("replace_namespaced_secret", name, namespace, body)
            body = {**body, "type": body.get("type") or "Opaque"}
            return _model(self.cluster._update("secrets", name, namespace, body), "V1Secret")

    def delete_namespaced_secret(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_secret", name, namespace)
            return _model(self.cluster._delete("secrets", name), "V1Status")

    def create_namespaced_config_map(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_config_map", namespace, body)
            return _model(self.cluster._create("configmaps", namespace, body), "V1ConfigMap")

    def replace_namespaced_config_map(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("replace_namespaced_config_map", name, namespace, body)
            return _model(self.cluster._update("configmaps", name, namespace, body), "V1ConfigMap")

    def list_namespaced_config_map(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1ConfigMapList"""
        return self._list_or_watch(
            "list_namespaced_config_map", "configmaps", "V1ConfigMap", namespace, label_selector, kwargs
        )

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("read_namespaced_config_map", name, namespace)
            if name not in self.cluster.objects["configmaps"]:
                raise not_found("configmaps", name)
            return _model(self.cluster.objects["configmaps"][name], "V1ConfigMap")

    def delete_namespaced_config_map(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_config_map", name, namespace)
            return _model(self.cluster._delete("configmaps", name), "V1Status")

    def delete_collection_namespaced_config_map(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("delete_collection_namespaced_config_map", namespace, label_selector)
            parse_selector(label_selector)
            for obj in list(self.cluster.objects["configmaps"].values()):
                if selector_matches(_labels_of(obj), label_selector):
                    self.cluster._put("configmaps", copy.deepcopy(obj), "DELETED")
            return _model({"status": "Success"}, "V1Status")


class FakeDiscovery(_Api):
    """DiscoveryV1Api: EndpointSlices."""

    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str | None = None, **kwargs: Any) -> Any:
        """:rtype: V1EndpointSliceList"""
        return self._list_or_watch(
            "list_namespaced_endpoint_slice", "slices", "V1EndpointSlice", namespace, label_selector, kwargs
        )


class FakeCoordination(_Api):
    """CoordinationV1Api: the three Lease calls the controller's elector makes (Lease in the API reference)."""

    def read_namespaced_lease(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("read_namespaced_lease", name, namespace)
            if name not in self.cluster.objects["leases"]:
                raise not_found("leases", name)
            return _model(self.cluster.objects["leases"][name], "V1Lease")

    def create_namespaced_lease(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_lease", namespace, body)
            return _model(self.cluster._create("leases", namespace, body), "V1Lease")

    def replace_namespaced_lease(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("replace_namespaced_lease", name, namespace, body)
            return _model(self.cluster._update("leases", name, namespace, body), "V1Lease")


def _stamp(line: str) -> float:
    try:
        return datetime.fromisoformat(line.partition(" ")[0].replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
