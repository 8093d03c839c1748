"""The Kubernetes install as docs/install.md has an operator do it, against a real cluster (opt-in: the check to run
before a release, with kind as docs/install.md shows; no cluster runs in CI).

``stoker install kubernetes --apply`` (rollouts awaited), the gateway reached through ``kubectl port-forward`` to its
Service, a function deployed from source with the stoker CLI and called, then the documented upgrade (the same
command with another platform image tag) while a client inside the cluster keeps calling the gateway Service with
GETs and POSTs (failed calls counted, printed, and none allowed), then ``stoker uninstall kubernetes`` three ways:
plain (the functions, Redis's volume and the namespaces stay), ``--functions`` (only the namespaces stay),
``--namespaces`` (nothing labelled with the install stays). Timings printed (install, first deploy, first call,
upgrade). Names are unique to the run and everything is removed in a ``finally``.

The load runs in a pod, not through the port-forward: ``kubectl port-forward service/...`` picks one pod of the
Service and ends when that pod goes, which an upgrade does to every gateway; a client inside the cluster goes through
the Service as an Ingress or another pod does.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from stoker.install import kubectl, kubernetes
from stoker.install.values import Values
from tests.fakes.kubernetes import validate
from tests.install import install_support
from tests.install.install_support import RUN, free_port

NAME = f"tk{RUN}"  # the install: its namespace; its functions go to tk<RUN>-fn
FUNCTIONS_NAMESPACE = f"{NAME}-fn"
# What the cluster must be able to pull (kind: `kind load docker-image`, docs/install.md).
IMAGE_VARIABLES = {
    "STOKER_K8S_PLATFORM_IMAGE": "the platform image",
    "STOKER_K8S_PLATFORM_IMAGE_UPGRADE": "another tag of it, to upgrade to",
    "STOKER_K8S_RUNTIME_IMAGE": "the runtime image",
    "STOKER_K8S_REDIS_IMAGE": "the Redis image",
}
IMAGES = {name: os.environ.get(name, "") for name in IMAGE_VARIABLES}
# Every namespaced kind the install makes (stoker install kubernetes | grep kind:), and what those make in turn.
KINDS = (
    "deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,"
    "poddisruptionbudgets,limitranges,persistentvolumeclaims,ingresses"
)
INSTANCE = f"app.kubernetes.io/instance={NAME}"
TEXT = "from kubernetes"


def _missing() -> str:
    missing = [f"{name} ({what})" for name, what in IMAGE_VARIABLES.items() if not IMAGES[name]]
    if not os.environ.get("KUBECONFIG"):
        missing.insert(0, "KUBECONFIG (a cluster this user may create namespaces and RBAC in)")
    if not shutil.which("kubectl"):
        missing.insert(0, "kubectl on PATH")
    if not missing:
        return ""
    return "the real-cluster install test needs " + ", ".join(missing) + "; docs/install.md shows how with kind"


cluster = pytest.mark.skipif(bool(_missing()), reason=_missing() or "runs")

# The load client, run by python3 in the platform image: two GET and two POST threads, one connection per call,
# until /tmp/stop exists; a JSON line of counts every second and one last line with "done".
LOAD = r"""
import json, os, sys, threading, time, urllib.request
url, expect = sys.argv[1], sys.argv[2]
counts = {"GET": [0, 0], "POST": [0, 0]}
errors, slowest, lock = [], [0.0], threading.Lock()
def work(method):
    while not os.path.exists("/tmp/stop"):
        start = time.monotonic()
        try:
            request = urllib.request.Request(url, data=b"x" if method == "POST" else None, method=method)
            with urllib.request.urlopen(request, timeout=30) as r:
                body = r.read().decode()
                ok, why = r.status == 200 and body == expect, f"{r.status} {body[:60]}"
        except Exception as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"[:120]
        with lock:
            counts[method][0 if ok else 1] += 1
            if ok:
                slowest[0] = max(slowest[0], time.monotonic() - start)
            elif len(errors) < 20:
                errors.append(f"{method} {why}")
threads = [threading.Thread(target=work, args=(m,)) for m in ("GET", "GET", "POST", "POST")]
for t in threads:
    t.start()
def report(done):
    with lock:
        print(json.dumps({"counts": counts, "errors": errors, "slowest": slowest[0], "done": done}), flush=True)
while any(t.is_alive() for t in threads):
    report(False)
    time.sleep(1)
report(True)
"""


def load_pod(namespace: str, name: str, image: str, url: str, expect: str) -> dict[str, Any]:
    """The load client's Pod: admitted by the install namespace's ``restricted`` Pod Security level."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/name": "install-test-load"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "load",
                "image": image,
                "command": ["python3", "-c", LOAD, url, expect],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                    "readOnlyRootFilesystem": True},
                "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }  # fmt: skip


def test_the_load_client_pod_is_valid_and_restricted() -> None:
    """Runs everywhere: the one object the cluster test pipes to kubectl itself, checked as the install's are."""
    pod = load_pod("ns", "load-x", "stoker/platform:0.1.0", "http://gateway.ns.svc:8080/function/hello", TEXT)
    validate(pod)
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] and container["securityContext"]["capabilities"] == {
        "drop": ["ALL"]
    }
    compile(LOAD, "load", "exec")


def kube(*args: str, stdin: str = "", check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          check=False)  # fmt: skip
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args[:6])}: {done.stderr.strip()}"
    return done.stdout


def stoker(*args: str, home: Path, env: dict[str, str] | None = None) -> str:
    return install_support.stoker(*args, home=home, env=env, timeout=900)  # a cluster pulls images: slower


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``check()``'s first truthy value; its errors count as not yet (a pod starting, a port not yet forwarded)."""
    return install_support.wait_for(check, timeout, what, (httpx.HTTPError, AssertionError, ValueError), 0.5)


def labelled() -> set[str]:
    """Every object labelled with the install, in any namespace, and its namespaces."""
    found = json.loads(kube("get", KINDS, "--all-namespaces", "-l", INSTANCE, "-o", "json"))["items"]
    names = {f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}" for o in found}
    namespaces = kube("get", "namespaces", "-l", INSTANCE, "-o", "name").split()  # namespace/<name>
    return names | {f"Namespace {n.split('/', 1)[-1]}" for n in namespaces}


def kept_by_plain_uninstall() -> set[str]:
    """What ``stoker uninstall kubernetes`` without flags leaves of the install (stoker/install/kubectl.py)."""
    objects = kubernetes.render(Values(target="kubernetes", name=NAME))
    deleted = kubectl.uninstall_objects(objects, False, False, FUNCTIONS_NAMESPACE)
    kept = [o for o in objects if o not in deleted]
    return {
        f"Namespace {o['metadata']['name']}"
        if o["kind"] == "Namespace"
        else f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}"
        for o in kept
    }


def test_a_plain_uninstall_leaves_the_namespaces_redis_data_and_the_functions_fences() -> None:
    """Runs everywhere: what the cluster test expects to find after a plain uninstall."""
    kept = kept_by_plain_uninstall()
    assert {f"Namespace {NAME}", f"Namespace {FUNCTIONS_NAMESPACE}", f"PersistentVolumeClaim {NAME}/redis"} <= kept
    assert f"NetworkPolicy {FUNCTIONS_NAMESPACE}/default-deny" in kept
    assert not {k for k in kept if k.startswith(("Deployment", "Role", "Service ", "Secret"))}


def functions() -> set[str]:
    """What the platform made for functions (labelled managed-by stoker) in the install's functions namespace."""
    out = kube("-n", FUNCTIONS_NAMESPACE, "get", "deployments,services,configmaps", "-l",
               "app.kubernetes.io/managed-by=stoker", "-o", "name", check=False)  # fmt: skip
    return set(out.split())


def install(platform_image: str, home: Path, password: str) -> float:
    start = time.monotonic()
    stoker("install", "kubernetes", "--name", NAME, "--platform-image", platform_image,
           "--runtime-image", IMAGES["STOKER_K8S_RUNTIME_IMAGE"], "--redis-image", IMAGES["STOKER_K8S_REDIS_IMAGE"],
           "--pool-size", "1", "--controller-replicas", "1", "--apply", "--wait", "300",
           home=home, env={"STOKER_ADMIN_PASSWORD": password})  # fmt: skip
    return time.monotonic() - start


@contextmanager
def port_forward() -> Iterator[str]:
    """``kubectl port-forward`` to the gateway Service on a free local port, stopped on the way out."""
    port = free_port()
    process = subprocess.Popen(["kubectl", "-n", NAME, "port-forward", "service/gateway", f"{port}:8080"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: httpx.get(f"{url}/healthz", timeout=5).status_code == 200, 120, "the forwarded gateway")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def pods(component: str) -> list[dict[str, Any]]:
    """The component's pods that are not on their way out."""
    found = json.loads(kube("-n", NAME, "get", "pods", "-l", f"app.kubernetes.io/name={component}", "-o", "json"))
    return [p for p in found["items"] if not p["metadata"].get("deletionTimestamp")]


def progress(pod: str) -> dict[str, Any]:
    return dict(json.loads(kube("-n", NAME, "logs", pod, "--tail=1").strip()))


def calls(report: dict[str, Any]) -> int:
    return sum(sum(pair) for pair in report["counts"].values())


@cluster
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_install_deploy_upgrade_under_load_and_uninstall_on_a_real_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    password = f"pw-{RUN}-{os.urandom(8).hex()}"
    upgraded = IMAGES["STOKER_K8S_PLATFORM_IMAGE_UPGRADE"]
    load = f"load-{RUN}"
    timings: dict[str, float] = {}
    try:
        timings["install"] = install(IMAGES["STOKER_K8S_PLATFORM_IMAGE"], home, password)
        # The password the docs say to read back (docs/install.md, Kubernetes).
        secret = kube("-n", NAME, "get", "secret", f"{NAME}-admin", "-o", "jsonpath={.data.admin-password}")
        assert base64.b64decode(secret).decode() == password

        folder = tmp_path / "hello"
        folder.mkdir()
        (folder / "handler.py").write_text(f"def handle(event, context):\n    return {TEXT!r}\n")
        with port_forward() as url:
            env = {"STOKER_GATEWAY": url, "STOKER_ADMIN_PASSWORD": password}
            start = time.monotonic()
            stoker("deploy", "--name", "hello", "--handler", str(folder), home=home, env=env)
            timings["first deploy"] = time.monotonic() - start
            start = time.monotonic()
            first = httpx.get(f"{url}/function/hello", timeout=120)
            timings["first call"] = time.monotonic() - start
            assert (first.status_code, first.text) == (200, TEXT)

        # The upgrade under load: a client in the cluster calls the gateway Service without pause.
        target = f"http://gateway.{NAME}.svc:8080/function/hello"
        pod = load_pod(NAME, load, IMAGES["STOKER_K8S_PLATFORM_IMAGE"], target, TEXT)
        kube("apply", "-f", "-", stdin=json.dumps(pod))
        until(lambda: calls(progress(load)) > 40, 180, "calls before the upgrade")
        start = time.monotonic()
        install(upgraded, home, password)  # the documented upgrade: the same command, the new reference

        def rolled() -> bool:
            found = [c["image"] for p in pods("gateway") + pods("controller") for c in p["spec"]["containers"]]
            return len(found) == 3 and set(found) == {upgraded}

        until(rolled, 300, "gateways and controller on the new image")
        timings["upgrade"] = time.monotonic() - start
        seen = calls(progress(load))
        until(lambda: calls(progress(load)) > seen + 40, 180, "calls after the upgrade")
        kube("-n", NAME, "exec", load, "--", "python3", "-c", "open('/tmp/stop', 'w').close()")
        report = until(lambda: (r := progress(load))["done"] and r, 120, "the load client's last count")
        kube("-n", NAME, "delete", "pod", load, "--ignore-not-found")
        with capsys.disabled():
            for method, (ok, failed) in report["counts"].items():
                print(f"\nkubernetes upgrade (two gateways, rolling, maxUnavailable 0), {method}: "
                      f"{failed} failed of {ok + failed} calls, slowest {report['slowest']:.1f}s")  # fmt: skip
        assert all(failed == 0 for _, failed in report["counts"].values()), report["errors"]

        # Uninstall, plain: the platform goes; the functions, Redis's volume and the namespaces stay.
        kept = functions()
        assert any(name.startswith("deployment") and "hello" in name for name in kept), kept
        stoker("uninstall", "kubernetes", "--name", NAME, home=home)
        expect = kept_by_plain_uninstall()  # the namespaces, Redis's volume, the functions' policies and limits
        until(lambda: labelled() == expect, 300, f"only {sorted(expect)} left")
        assert functions() == kept

        # --functions: the functions and Redis's volume too; the namespaces stay.
        stoker("uninstall", "kubernetes", "--name", NAME, "--functions", home=home)
        until(lambda: not functions(), 300, "the functions gone")
        namespaces = {f"Namespace {NAME}", f"Namespace {FUNCTIONS_NAMESPACE}"}
        until(lambda: labelled() == namespaces, 300, "only the namespaces left")

        # --namespaces: nothing of the install is left.
        stoker("uninstall", "kubernetes", "--name", NAME, "--namespaces", home=home)
        until(lambda: labelled() == set(), 600, "nothing labelled with the install")
        with capsys.disabled():
            print("\nkubernetes timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    finally:
        subprocess.run(["kubectl", "-n", NAME, "delete", "pod", load, "--ignore-not-found", "--wait=false"],
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        subprocess.run([sys.executable, "-m", "stoker", "uninstall", "kubernetes", "--name", NAME, "--functions",
                        "--namespaces"], env={**os.environ, "STOKER_HOME": str(home)}, capture_output=True,
                       timeout=900, check=False)  # fmt: skip
    until(lambda: labelled() == set(), 600, "nothing labelled with the install after the cleanup")
