"""An in-memory fake of exactly the Kubernetes API the backend calls, with the controllers behind it simulated.

No cluster can run in CI, so this stands in for the API server, the Deployment controller (pods for the current
version, old pods kept until new ones are ready: maxUnavailable 0), the kubelet (readiness, crash loops, image pull
failures, per image; bare pods of the warm pool, run as real replica processes on loopback addresses with
``run_pool``, probed for startup and readiness, stopped with SIGTERM on delete) and the EndpointSlice controller
(one slice per Service listing the pods its selector matches). Pod patches honour a resourceVersion precondition
(409 Conflict). It records every
call, validates every object written against the official schemas (kubernetes-validate, strict), answers with the
client's real model classes, and serves watches from its own event log, so the backend's list + watch code runs
unchanged. Only the methods the backend calls exist: calling anything else fails the test.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import http.client
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from runtime.backends.kubernetes.clients import KubeClients

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SCHEMA_VERSIONS = ("1.30", kubernetes_validate.latest_version())  # the oldest cluster we support, and the newest
_SLICE_MANAGER = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}


def validate(obj: Obj) -> None:
    """Raise if ``obj`` is not a valid object for the Kubernetes versions we support (unknown fields included)."""
    for version in SCHEMA_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str] | None, selector: str | None) -> bool:
    labels = labels or {}
    for term in (selector or "").split(","):
        key, eq, value = term.partition("=")
        if key and (key not in labels if not eq else labels.get(key) != value):
            return False
    return True


def _error(status: int, reason: str) -> ApiException:
    return ApiException(status=status, reason=reason)


def _model(obj: Any, kind: str) -> Any:
    """The client's own model for ``obj``, as a real API call returns it."""
    cls = getattr(client, kind)
    return cls.from_dict(copy.deepcopy(obj)) if hasattr(cls, "from_dict") else copy.deepcopy(obj)


class FakeCluster:
    """The state of a pretend cluster. ``behaviour[image]`` decides what pods of an image do: ``ready`` (at once),
    ``manual`` (wait for :meth:`make_ready`), ``crash`` (crash loop) or ``pull`` (image pull failure)."""

    def __init__(self, run_pool: bool = False, workdir: Path | None = None) -> None:
        self.cond = threading.Condition()
        self.rv = itertools.count(1000)
        self.ips = itertools.count(2)
        self.objects: dict[str, dict[str, Obj]] = {
            k: {} for k in ("deployments", "services", "pods", "slices", "configmaps")
        }
        self.secrets: dict[str, Obj] = {}
        self.events: list[tuple[int, str, str, Obj]] = []  # (resourceVersion, collection, type, object)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.calls_by: dict[str, list[str]] = {}  # who (see clients()) -> the methods they called
        self.behaviour: dict[str, str] = {}
        self.logs: dict[str, str] = {}  # pod name -> its log, as `timestamps=true` gives it
        self.expired_before = 0  # watches from an older resourceVersion get 410 Gone
        self.watch_timeout_s = 0.5
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
        self._before_patch: list[Callable[[str], None]] = []

    # --- helpers for tests ---------------------------------------------------------------------------------
    def clients(self, who: str = "") -> KubeClients:
        """Clients of the fake; the calls made through them are also recorded under ``who`` (``calls_by``)."""
        return KubeClients(
            FakeApps(self, who),
            FakeCore(self, who),
            FakeDiscovery(self, who),
            client.ApiClient().sanitize_for_serialization,
            self.watch,
        )

    def close(self) -> None:
        """Stop every replica process the fake started."""
        self._closed = True
        with self.cond:
            processes = list(self.processes.values())
        for proc in processes:
            proc.kill()
        for proc in processes:
            proc.wait(10)
        if self._kubelet is not None:
            self._kubelet.join(5)
        self._reserved.close()

    def before_next_pod_patch(self, action: Callable[[str], None]) -> None:
        """Run ``action(pod name)`` (as another client would) just before the next pod patch is applied."""
        self._before_patch.append(action)

    def relabel(self, pod_name: str, labels: dict[str, str]) -> None:
        """Another client changes a pod's labels (its resourceVersion changes with them)."""
        with self.cond:
            pod = self.objects["pods"][pod_name]
            pod["metadata"]["labels"].update(labels)
            self._put("pods", pod, "MODIFIED")

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
                pod = self.objects["pods"][pod_name]
                pod["status"].update({"phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}]})
                self._put("pods", pod, "MODIFIED")
                self._sync_slice(pod["metadata"]["labels"].get("faas_function", ""))
                return
        proc.kill()

    def watch(self) -> FakeWatch:
        return FakeWatch(self)

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    def pods(self, function: str) -> list[Obj]:
        """Every pod labelled as ``function``'s: its Deployment's and any bare pod (a claimed pool pod)."""
        with self.cond:
            return [
                p for p in self.objects["pods"].values() if p["metadata"]["labels"].get("faas_function") == function
            ]

    def _owned(self, function: str) -> list[Obj]:
        """The pods of ``function``'s Deployment (its ReplicaSets': they carry pod-template-hash)."""
        return [p for p in self.pods(function) if "pod-template-hash" in p["metadata"]["labels"]]

    def make_ready(self, function: str) -> None:
        """Every pod of ``function``'s Deployment that waits (``manual``) becomes ready."""
        with self.cond:
            for pod in self._owned(function):
                pod["status"].update(_ready_status(True))
                self._put("pods", pod, "MODIFIED")
            self._reconcile(function)

    def set_ready(self, pod_name: str, ready: bool) -> None:
        """One pod's readiness probe starts failing (or passing again)."""
        with self.cond:
            pod = self.objects["pods"][pod_name]
            pod["status"].update(_ready_status(ready))
            self._put("pods", pod, "MODIFIED")
            self._reconcile(pod["metadata"]["labels"]["faas_function"])

    def expire_watches(self) -> None:
        """Compact history: every open watch ends with 410 Gone and the watchers must list again."""
        with self.cond:
            self.expired_before = next(self.rv)
            self.cond.notify_all()

    # --- storage -------------------------------------------------------------------------------------------
    def _put(self, collection: str, obj: Obj, event: str) -> Obj:
        rv = next(self.rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        if event == "DELETED":
            self.objects[collection].pop(obj["metadata"]["name"], None)
        else:
            self.objects[collection][obj["metadata"]["name"]] = obj
        self.events.append((rv, collection, event, copy.deepcopy(obj)))
        self.cond.notify_all()
        return obj

    def _list(self, collection: str, selector: str | None) -> Obj:
        items = [o for o in self.objects[collection].values() if _matches(o["metadata"].get("labels") or {}, selector)]
        return {"metadata": {"resourceVersion": str(next(self.rv))}, "items": copy.deepcopy(items)}

    # --- the controllers -----------------------------------------------------------------------------------
    def _reconcile(self, function: str) -> None:
        dep = self.objects["deployments"].get(function)
        pods = self._owned(function)
        if dep is None:
            for pod in pods:
                self._put("pods", pod, "DELETED")
        else:
            template = dep["spec"]["template"]
            version = template["metadata"]["labels"]["com.stoker.version"]
            desired = dep["spec"]["replicas"]
            new = [p for p in pods if p["metadata"]["labels"]["com.stoker.version"] == version]
            old = [p for p in pods if p not in new]
            while len(new) < desired:
                new.append(self._start_pod(dep))
            for pod in sorted(new, key=_is_ready)[: max(0, len(new) - desired)]:
                self._put("pods", pod, "DELETED")
                new.remove(pod)
            # maxUnavailable 0: an old pod goes only when a ready new one takes its place.
            keep_old = max(0, desired - sum(map(_is_ready, new)))
            for pod in sorted(old, key=_is_ready)[: max(0, len(old) - keep_old)]:
                self._put("pods", pod, "DELETED")
                old.remove(pod)
            self._set_status(dep, new, old)
        self._sync_slice(function)

    def _set_status(self, dep: Obj, new: list[Obj], old: list[Obj]) -> None:
        """What the Deployment controller reports: pods in all, of the current version, ready."""
        status = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": len(new) + len(old),
            "updatedReplicas": len(new),
            "readyReplicas": sum(map(_is_ready, new + old)),
        }
        if dep.get("status") != status:
            dep["status"] = status
            self._put("deployments", dep, "MODIFIED")

    def _start_pod(self, dep: Obj) -> Obj:
        template = dep["spec"]["template"]
        image = template["spec"]["containers"][0]["image"]
        behaviour = self.behaviour.get(image, "ready")
        version = template["metadata"]["labels"]["com.stoker.version"]
        name = f"{dep['metadata']['name']}-{version[:6]}-{next(self.rv)}"
        n = next(self.ips)
        behaviour = self._code_check(template["spec"], behaviour)
        status = _ready_status(behaviour == "ready")
        if behaviour == "mount":  # the kubelet waits for the ConfigMap it is to mount
            status["containerStatuses"] = [
                {
                    "name": dep["metadata"]["name"],
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                }
            ]
        if behaviour in ("crash", "pull"):
            reason = "CrashLoopBackOff" if behaviour == "crash" else "ImagePullBackOff"
            container: Obj = {
                "name": dep["metadata"]["name"],
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 3 if behaviour == "crash" else 0,
                "state": {"waiting": {"reason": reason, "message": f"{reason} for {image}"}},
            }
            if behaviour == "crash":
                container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
                self.logs[name] = f"{_now()} ModuleNotFoundError: No module named 'missing'\n"
            status["containerStatuses"] = [container]
        status["podIP"] = f"10.1.{n // 250}.{n % 250}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": dep["metadata"]["namespace"],
                "labels": {**template["metadata"]["labels"], "pod-template-hash": version[:10]},
                "creationTimestamp": _now(),
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": status,
        }
        self.logs.setdefault(name, f"{_now()} started {name}\n")
        return self._put("pods", pod, "ADDED")

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
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": container["name"],
                    "image": container["image"],
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": not waiting and not self.run_pool,
                    "state": state,
                }
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
                    function = pod["metadata"]["labels"].get("faas_function", "")
                    status = copy.deepcopy(pod["status"])
                    container = status["containerStatuses"][0]
                    if code is not None:
                        del self.processes[name]
                        if _terminating(pod):
                            self._put("pods", pod, "DELETED")
                            self._sync_slice(function)
                            continue
                        status["phase"] = "Succeeded" if code == 0 else "Failed"
                        container["state"] = {
                            "terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}
                        }
                        container["started"] = False
                        ready = False
                    container["started"] = bool(container.get("started")) or health
                    container["ready"] = ready
                    status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
                    if status != pod["status"]:
                        pod["status"] = status
                        self._put("pods", pod, "MODIFIED")
                        self._sync_slice(function)
            time.sleep(0.05)

    def _sync_slice(self, function: str) -> None:
        name = f"{function}-x7k2p"
        if function not in self.objects["services"]:
            if name in self.objects["slices"]:
                self._put("slices", self.objects["slices"][name], "DELETED")
            return
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
                },
            }
            for pod in sorted(self.pods(function), key=lambda p: p["metadata"]["name"])
        ]
        current = self.objects["slices"].get(name)
        if current is not None and current["endpoints"] == endpoints:
            return
        endpoint_slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": self.objects["services"][function]["metadata"]["namespace"],
                "labels": {"kubernetes.io/service-name": function, **_SLICE_MANAGER},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": self.replica_port, "protocol": "TCP"}],
        }
        validate(endpoint_slice)
        self._put("slices", endpoint_slice, "ADDED" if current is None else "MODIFIED")


def _ready_status(ready: bool) -> Obj:
    return {
        "phase": "Running" if ready else "Pending",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }


def _terminating(pod: Obj) -> bool:
    return pod["metadata"].get("deletionTimestamp") is not None


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


def _is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


class _Api:
    def __init__(self, cluster: FakeCluster, who: str = "") -> None:
        self.cluster = cluster
        self.who = who

    def _record(self, method: str, *args: Any) -> None:
        self.cluster.calls.append((method, copy.deepcopy(args)))
        self.cluster.calls_by.setdefault(self.who, []).append(method)


class FakeApps(_Api):
    """AppsV1Api: the Deployment calls the backend makes."""

    def list_namespaced_deployment(self, namespace: str, label_selector: str | None = None, **_: Any) -> Any:
        with self.cluster.cond:
            self._record("list_namespaced_deployment", namespace, label_selector)
            return _model(self.cluster._list("deployments", label_selector), "V1DeploymentList")

    def read_namespaced_deployment(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("read_namespaced_deployment", name, namespace)
            if name not in self.cluster.objects["deployments"]:
                raise _error(404, "Not Found")
            return _model(self.cluster.objects["deployments"][name], "V1Deployment")

    def _write(self, method: str, name: str, namespace: str, body: Obj, create: bool) -> Any:
        with self.cluster.cond:
            self._record(method, namespace, body)
            validate(body)
            assert body["metadata"]["namespace"] == namespace and body["metadata"]["name"] == name
            exists = name in self.cluster.objects["deployments"]
            if create and exists:
                raise _error(409, "AlreadyExists")
            if not create and not exists:
                raise _error(404, "Not Found")
            obj = copy.deepcopy(body)
            previous = self.cluster.objects["deployments"].get(name)
            obj["metadata"]["creationTimestamp"] = previous["metadata"]["creationTimestamp"] if previous else _now()
            self.cluster._put("deployments", obj, "ADDED" if create else "MODIFIED")
            self.cluster._reconcile(name)
            return _model(obj, "V1Deployment")

    def create_namespaced_deployment(self, namespace: str, body: Obj) -> Any:
        return self._write("create_namespaced_deployment", body["metadata"]["name"], namespace, body, True)

    def replace_namespaced_deployment(self, name: str, namespace: str, body: Obj) -> Any:
        return self._write("replace_namespaced_deployment", name, namespace, body, False)

    def delete_namespaced_deployment(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_deployment", name, namespace)
            obj = self.cluster.objects["deployments"].get(name)
            if obj is None:
                raise _error(404, "Not Found")
            self.cluster._put("deployments", obj, "DELETED")
            self.cluster._reconcile(name)
            return _model({"status": "Success"}, "V1Status")

    def patch_namespaced_deployment_scale(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("patch_namespaced_deployment_scale", name, namespace, body)
            obj = self.cluster.objects["deployments"].get(name)
            if obj is None:
                raise _error(404, "Not Found")
            assert set(body) == {"spec"} and set(body["spec"]) == {"replicas"}, body
            obj["spec"]["replicas"] = body["spec"]["replicas"]
            self.cluster._put("deployments", obj, "MODIFIED")
            self.cluster._reconcile(name)
            return _model({"spec": {"replicas": obj["spec"]["replicas"]}}, "V1Scale")


class FakeCore(_Api):
    """CoreV1Api: Services, Pods (list and logs) and Secrets."""

    def create_namespaced_service(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_service", namespace, body)
            validate(body)
            name = body["metadata"]["name"]
            if name in self.cluster.objects["services"]:
                raise _error(409, "AlreadyExists")
            self.cluster._put("services", copy.deepcopy(body), "ADDED")
            self.cluster._reconcile(name)
            return _model(body, "V1Service")

    def patch_namespaced_service(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("patch_namespaced_service", name, namespace, body)
            validate(body)
            if name not in self.cluster.objects["services"]:
                raise _error(404, "Not Found")
            self.cluster._put("services", copy.deepcopy(body), "MODIFIED")
            return _model(body, "V1Service")

    def delete_namespaced_service(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_service", name, namespace)
            obj = self.cluster.objects["services"].get(name)
            if obj is None:
                raise _error(404, "Not Found")
            self.cluster._put("services", obj, "DELETED")
            self.cluster._sync_slice(name)
            return _model({"status": "Success"}, "V1Status")

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("list_namespaced_pod", namespace, label_selector)
            return _model(self.cluster._list("pods", label_selector), "V1PodList")

    def create_namespaced_pod(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_pod", namespace, body)
            validate(body)
            assert body["metadata"]["namespace"] == namespace
            name = body["metadata"]["name"]
            if name in self.cluster.objects["pods"]:
                raise _error(409, "AlreadyExists")
            pod = copy.deepcopy(body)
            pod["metadata"]["creationTimestamp"] = _now()
            self.cluster._start_bare_pod(pod)
            self.cluster._put("pods", pod, "ADDED")
            return _model(pod, "V1Pod")

    def patch_namespaced_pod(self, name: str, namespace: str, body: Obj) -> Any:
        """A strategic merge patch of labels; a resourceVersion in it is a precondition (409 Conflict)."""
        with self.cluster.cond:
            self._record("patch_namespaced_pod", name, namespace, body)
            while self.cluster._before_patch:
                self.cluster._before_patch.pop(0)(name)
            pod = self.cluster.objects["pods"].get(name)
            if pod is None:
                raise _error(404, "Not Found")
            assert set(body) == {"metadata"} and set(body["metadata"]) <= {"labels", "resourceVersion"}, body
            expected = body["metadata"].get("resourceVersion")
            if expected is not None and expected != pod["metadata"]["resourceVersion"]:
                raise _error(409, "Conflict")
            before = pod["metadata"]["labels"].get("faas_function", "")
            pod["metadata"]["labels"].update(body["metadata"].get("labels") or {})
            validate({k: v for k, v in pod.items() if k != "status"})
            self.cluster._put("pods", pod, "MODIFIED")
            for function in {before, pod["metadata"]["labels"].get("faas_function", "")} - {""}:
                self.cluster._sync_slice(function)
            return _model(pod, "V1Pod")

    def delete_namespaced_pod(self, name: str, namespace: str) -> Any:
        """Graceful: the pod is marked terminating and its process gets SIGTERM; it goes when that exits."""
        with self.cluster.cond:
            self._record("delete_namespaced_pod", name, namespace)
            pod = self.cluster.objects["pods"].get(name)
            if pod is None:
                raise _error(404, "Not Found")
            function = pod["metadata"]["labels"].get("faas_function", "")
            proc = self.cluster.processes.get(name)
            if proc is None:
                self.cluster._put("pods", pod, "DELETED")
            elif not _terminating(pod):
                pod["metadata"]["deletionTimestamp"] = _now()
                self.cluster._put("pods", pod, "MODIFIED")
                proc.terminate()
            self.cluster._sync_slice(function)
            return _model(pod, "V1Pod")

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        with self.cluster.cond:
            self._record("read_namespaced_pod_log", name, namespace, kwargs)
            if name not in self.cluster.objects["pods"]:
                raise _error(404, "Not Found")
            lines = self.cluster.logs.get(name, "").splitlines(keepends=True)
            if kwargs.get("tail_lines") is not None:
                lines = lines[-kwargs["tail_lines"] :] if kwargs["tail_lines"] else []
            return "".join(lines)

    def list_namespaced_secret(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("list_namespaced_secret", namespace, label_selector)
            found = [s for s in self.cluster.secrets.values() if _matches(s["metadata"].get("labels"), label_selector)]
            items = copy.deepcopy(found)
            return _model({"metadata": {"resourceVersion": "1"}, "items": items}, "V1SecretList")

    def create_namespaced_secret(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_secret", namespace, body)
            validate(body)
            if body["metadata"]["name"] in self.cluster.secrets:
                raise _error(409, "AlreadyExists")
            stored = copy.deepcopy(body)
            stored["metadata"]["creationTimestamp"] = _now()
            self.cluster.secrets[body["metadata"]["name"]] = stored
            return _model(body, "V1Secret")

    def replace_namespaced_secret(self, name: str, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("replace_namespaced_secret", name, namespace, body)
            validate(body)
            if name not in self.cluster.secrets:
                raise _error(404, "Not Found")
            self.cluster.secrets[name] = copy.deepcopy(body)
            return _model(body, "V1Secret")

    def delete_namespaced_secret(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_secret", name, namespace)
            if self.cluster.secrets.pop(name, None) is None:
                raise _error(404, "Not Found")
            return _model({"status": "Success"}, "V1Status")

    def create_namespaced_config_map(self, namespace: str, body: Obj) -> Any:
        with self.cluster.cond:
            self._record("create_namespaced_config_map", namespace, body)
            validate(body)
            assert body["metadata"]["namespace"] == namespace
            if body["metadata"]["name"] in self.cluster.objects["configmaps"]:
                raise _error(409, "AlreadyExists")
            obj = copy.deepcopy(body)
            obj["metadata"]["creationTimestamp"] = _now()
            self.cluster._put("configmaps", obj, "ADDED")
            return _model(obj, "V1ConfigMap")

    def list_namespaced_config_map(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("list_namespaced_config_map", namespace, label_selector)
            return _model(self.cluster._list("configmaps", label_selector), "V1ConfigMapList")

    def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("read_namespaced_config_map", name, namespace)
            if name not in self.cluster.objects["configmaps"]:
                raise _error(404, "Not Found")
            return _model(self.cluster.objects["configmaps"][name], "V1ConfigMap")

    def delete_namespaced_config_map(self, name: str, namespace: str) -> Any:
        with self.cluster.cond:
            self._record("delete_namespaced_config_map", name, namespace)
            obj = self.cluster.objects["configmaps"].get(name)
            if obj is None:
                raise _error(404, "Not Found")
            self.cluster._put("configmaps", obj, "DELETED")
            return _model({"status": "Success"}, "V1Status")

    def delete_collection_namespaced_config_map(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("delete_collection_namespaced_config_map", namespace, label_selector)
            for obj in list(self.cluster.objects["configmaps"].values()):
                if _matches(obj["metadata"].get("labels"), label_selector):
                    self.cluster._put("configmaps", obj, "DELETED")
            return _model({"status": "Success"}, "V1Status")


class FakeDiscovery(_Api):
    """DiscoveryV1Api: EndpointSlices."""

    def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str | None = None) -> Any:
        with self.cluster.cond:
            self._record("list_namespaced_endpoint_slice", namespace, label_selector)
            return _model(self.cluster._list("slices", label_selector), "V1EndpointSliceList")


_COLLECTIONS = {
    "list_namespaced_pod": ("pods", "V1Pod"),
    "list_namespaced_deployment": ("deployments", "V1Deployment"),
    "list_namespaced_endpoint_slice": ("slices", "V1EndpointSlice"),
}


class FakeWatch:
    """kubernetes.watch.Watch over the fake's event log: events newer than ``resource_version`` matching the
    selector, ``{"type", "object" (a model), "raw_object" (a dict)}``; ends after the server timeout."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self._stop = False

    def stop(self) -> None:
        with self.cluster.cond:
            self._stop = True
            self.cluster.cond.notify_all()

    def stream(
        self, func: Any, namespace: str, label_selector: str, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        collection, kind = _COLLECTIONS[func.__name__]
        cluster = self.cluster
        rv = int(resource_version)
        deadline = time.monotonic() + min(timeout_seconds, cluster.watch_timeout_s)
        while not self._stop and time.monotonic() < deadline:
            with cluster.cond:
                if rv < cluster.expired_before:
                    raise ApiException(status=410, reason="Expired: too old resource version")
                pending = [
                    e
                    for e in cluster.events
                    if e[0] > rv and e[1] == collection and _matches(e[3]["metadata"].get("labels"), label_selector)
                ]
                if not pending:
                    cluster.cond.wait(0.05)
                    continue
            for event_rv, _, event_type, obj in pending:
                rv = event_rv
                yield {"type": event_type, "object": _model(obj, kind), "raw_object": copy.deepcopy(obj)}


class FakeLeases:
    """read, create and replace with resourceVersion checks, like the API server."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.version = 0

    def read_namespaced_lease(self, name: str, namespace: str) -> dict[str, Any]:
        self.calls.append("read_namespaced_lease")
        if (namespace, name) not in self.leases:
            raise ApiException(status=404)
        return copy.deepcopy(self.leases[(namespace, name)])

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append("create_namespaced_lease")
        if (namespace, body["metadata"]["name"]) in self.leases:
            raise ApiException(status=409)
        self._store(namespace, body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append("replace_namespaced_lease")
        if self.leases[(namespace, name)]["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        self._store(namespace, body)

    def _store(self, namespace: str, body: dict[str, Any]) -> None:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(namespace, body["metadata"]["name"])] = body
