"""The ``kubectl`` runs of a Kubernetes install, upgrade and uninstall (stoker/install/kubectl.py): their order, every
object piped to them valid under the strict schemas, the namespaces never deleted unless asked, secret values never on
a command line. No cluster runs here: the last tests put a stand-in ``kubectl`` on PATH (as test_service_monitor.py
does) to see what ``stoker install kubernetes --apply`` and ``stoker uninstall kubernetes`` really run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stoker.install import kubectl, kubernetes
from stoker.install.values import Values
from tests.fakes.kubernetes import validate
from tests.install.test_render import VALUE_SETS

SECRET_VALUE = "s3cret-" + "x" * 20


def _values(given: dict[str, Any]) -> Values:
    return Values(target="kubernetes", **given)


@pytest.mark.parametrize("given", [*VALUE_SETS, {"service_monitor": True}])
def test_apply_pipes_namespaces_then_new_secrets_then_the_rest_every_object_valid(given: dict[str, Any]) -> None:
    values = _values(given)
    objects = kubernetes.render(values)
    new = {role: SECRET_VALUE for role in kubernetes.secret_names(values)}
    steps = kubectl.apply_steps(values, objects, new)
    assert [s.args for s in steps] == [("apply", "-f", "-"), ("create", "-f", "-"), ("apply", "-f", "-")]
    namespaces, made, rest = (list(s.objects) for s in steps)
    assert {o["kind"] for o in namespaces} == {"Namespace"}
    assert {o["metadata"]["name"] for o in namespaces} == {values.name, values.functions_namespace}
    assert [o["metadata"]["name"] for o in made] == list(kubernetes.secret_names(values).values())
    assert "Namespace" not in {o["kind"] for o in rest} and len(namespaces) + len(rest) == len(objects)
    for step in steps:
        piped = [o for o in yaml.safe_load_all(step.stdin()) if o]
        assert piped == list(step.objects)  # what kubectl reads is what was decided
        for obj in piped:
            if obj["kind"] != "ServiceMonitor":  # a CRD: checked against its schema in test_service_monitor.py
                validate(obj)
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == values.name
        assert SECRET_VALUE not in " ".join(step.argv)


def test_apply_creates_only_the_secrets_that_do_not_exist() -> None:
    values = Values(target="kubernetes", name="demo")
    lookup = kubectl.secrets_lookup(values)
    assert lookup.args == ("-n", "demo", "get", "secret", "demo-admin", "demo-platform-key", "demo-redis",
                           "--ignore-not-found", "-o", "name")  # fmt: skip
    # An upgrade: the platform key exists (it signs the functions' code), so it is kept.
    assert kubectl.missing_secrets(values, "secret/demo-platform-key\n") == ["admin-password", "redis-password"]
    assert kubectl.missing_secrets(values, "secret/demo-admin\nsecret/demo-platform-key\nsecret/demo-redis\n") == []
    assert kubectl.missing_secrets(values, "") == ["admin-password", "platform-key", "redis-password"]
    steps = kubectl.apply_steps(values, kubernetes.render(values), {})
    assert [s.args[0] for s in steps] == ["apply", "apply"]  # nothing to create: no empty `kubectl create`
    secret = kubectl.secret_object(values, "redis-password", "pw")
    assert secret["stringData"] == {"redis-password": "pw"} and secret["metadata"]["namespace"] == "demo"


def test_rollouts_are_awaited_for_every_deployment_in_its_namespace() -> None:
    values = Values(target="kubernetes", name="demo")
    steps = kubectl.rollout_steps(values, kubernetes.render(values), 180)
    assert [s.args for s in steps] == [
        ("-n", "demo", "rollout", "status", f"deployment/{name}", "--timeout=180s")
        for name in ("redis", "gateway", "controller")
    ]
    external = Values(target="kubernetes", redis_url="redis://r:6379/0")
    assert "deployment/redis" not in {
        s.args[4] for s in kubectl.rollout_steps(external, kubernetes.render(external), 9)
    }


@pytest.mark.parametrize("functions", [False, True])
@pytest.mark.parametrize("namespaces", [False, True])
@pytest.mark.parametrize("given", VALUE_SETS)
def test_uninstall_never_deletes_a_namespace_unless_asked(
    given: dict[str, Any], functions: bool, namespaces: bool
) -> None:
    values = _values(given)
    steps = kubectl.uninstall_steps(values, kubernetes.render(values), functions, namespaces)
    for step in steps:
        for obj in yaml.safe_load_all(step.stdin()):
            if obj:
                validate(obj)
                assert obj["kind"] != "Namespace"
    deleting_namespaces = [s for s in steps if "namespace" in s.args or "namespaces" in s.args]
    if namespaces:
        assert deleting_namespaces == [steps[-1]]  # last: everything else is gone through its own step first
        assert steps[-1].args[-2:] == (values.name, values.functions_namespace)
    else:
        assert deleting_namespaces == []
    function_steps = [s for s in steps if kubectl.FUNCTION_KINDS in s.args]
    assert bool(function_steps) == functions
    assert all(s.args[:2] == ("-n", values.functions_namespace) and "-l" in s.args for s in function_steps)
    (first,) = [s for s in steps if s.objects]
    kinds = {o["kind"] for o in first.objects}
    assert ("PersistentVolumeClaim" in kinds) == (not values.redis_url and (functions or namespaces))
    assert all(s.required for s in steps if kubectl.SERVICE_MONITOR not in s.args)


@pytest.mark.parametrize("given", VALUE_SETS)
def test_uninstall_keeps_the_functions_fenced_while_they_stay(given: dict[str, Any]) -> None:
    """Functions kept by a plain uninstall keep running: their default-deny and egress policies and default limits
    stay with them (deleting them let kept functions reach the metadata address and private ranges)."""
    values = _values(given)
    objects = kubernetes.render(values)

    def deleted(functions: bool, namespaces: bool) -> set[tuple[str, str, str]]:
        (step,) = [s for s in kubectl.uninstall_steps(values, objects, functions, namespaces) if s.objects]
        return {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in step.objects}

    def ids(kinds: tuple[str, ...], namespace: str) -> set[tuple[str, str, str]]:
        return {(o["kind"], namespace, o["metadata"]["name"]) for o in objects
                if o["kind"] in kinds and o["metadata"].get("namespace") == namespace}  # fmt: skip

    fences = ids(("NetworkPolicy", "LimitRange"), values.functions_namespace)
    assert {kind for kind, _, _ in fences} == {"NetworkPolicy", "LimitRange"}
    assert not fences & deleted(False, False)
    assert ids(("NetworkPolicy",), values.name) <= deleted(False, False)  # the platform's own go with it
    assert fences <= deleted(True, False) and fences <= deleted(False, True)


def _stand_in_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: str = "") -> Path:
    """A ``kubectl`` that logs each run's arguments and standard input, and answers the secrets lookup."""
    log = tmp_path / "calls"
    log.mkdir()
    script = tmp_path / "bin" / "kubectl"
    script.parent.mkdir()
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(ls {log} | grep -c args); echo "$*" > {log}/$n.args; cat > {log}/$n.stdin\n'
        f'case "$*" in *" get secret "*) printf "{existing}";; esac\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    return log


def _calls(log: Path) -> list[tuple[str, str]]:
    count = len(list(log.glob("*.args")))
    return [((log / f"{i}.args").read_text().strip(), (log / f"{i}.stdin").read_text()) for i in range(count)]


def test_apply_through_the_cli_keeps_secret_values_off_command_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--from-literal=admin-password=...`` (before) put the admin password on a command line any user of the
    machine reads in ``ps``; the secrets now go on standard input, and an existing one is not made again."""
    log = _stand_in_kubectl(tmp_path, monkeypatch, existing="secret/demo-platform-key\\n")
    env = {**os.environ, "STOKER_HOME": str(tmp_path / "home"), "STOKER_ADMIN_PASSWORD": SECRET_VALUE}
    command = [sys.executable, "-m", "stoker", "install", "kubernetes", "--name", "demo", "--apply", "--wait", "30"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    calls = _calls(log)
    assert [args.split(" -f ")[0].split(" --timeout")[0] for args, _ in calls] == [
        "apply",
        "-n demo get secret demo-admin demo-platform-key demo-redis --ignore-not-found -o name",
        "create",
        "apply",
        "-n demo rollout status deployment/redis",
        "-n demo rollout status deployment/gateway",
        "-n demo rollout status deployment/controller",
    ]
    assert all(SECRET_VALUE not in args for args, _ in calls)
    made = [o for o in yaml.safe_load_all(calls[2][1]) if o]
    assert [o["metadata"]["name"] for o in made] == ["demo-admin", "demo-redis"]
    assert made[0]["stringData"] == {"admin-password": SECRET_VALUE}
    assert "Applied stoker to namespace demo (its Deployments rolled out)" in done.stdout


def test_uninstall_through_the_cli_runs_the_planned_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _stand_in_kubectl(tmp_path, monkeypatch)
    env = {**os.environ, "STOKER_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-m", "stoker", "uninstall", "kubernetes", "--name", "demo", "--functions"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    values = Values(target="kubernetes", name="demo")
    planned = kubectl.uninstall_steps(values, kubernetes.render(values), functions=True, namespaces=False)
    assert [args for args, _ in _calls(log)] == [" ".join(s.args) for s in planned]
    assert not any(args.startswith("delete namespace") for args, _ in _calls(log))


UNREACHABLE = """\
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl is not installed")
def test_the_real_kubectl_accepts_every_command_line(tmp_path: Path) -> None:
    """No cluster answers here, but kubectl parses its flags before it connects: every command line the install,
    upgrade, uninstall and the real-cluster test run gets as far as "connection refused", never a usage error."""
    from tests.install import test_kubernetes_install as cluster_test

    config = tmp_path / "config"
    config.write_text(UNREACHABLE)
    values = Values(target="kubernetes", name="demo", service_monitor=True)
    objects = kubernetes.render(values)
    steps = [
        *kubectl.apply_steps(values, objects, {"admin-password": "x"}),
        kubectl.secrets_lookup(values),
        *kubectl.rollout_steps(values, objects, 60),
        *kubectl.uninstall_steps(values, objects, functions=True, namespaces=True),
    ]
    runs = [(s.argv, s.stdin()) for s in steps] + [
        (["kubectl", "get", cluster_test.KINDS, "--all-namespaces", "-l", cluster_test.INSTANCE, "-o", "json"], ""),
        (["kubectl", "get", "namespaces", "-l", cluster_test.INSTANCE, "-o", "name"], ""),
        (["kubectl", "-n", "demo", "get", "secret", "demo-admin", "-o", "jsonpath={.data.admin-password}"], ""),
        (["kubectl", "-n", "demo", "port-forward", "service/gateway", "18080:8080"], ""),
        (["kubectl", "-n", "demo", "logs", "load-x", "--tail=1"], ""),
        (["kubectl", "-n", "demo", "exec", "load-x", "--", "python3", "-c", "open('/tmp/stop', 'w').close()"], ""),
        (["kubectl", "-n", "demo", "delete", "pod", "load-x", "--ignore-not-found", "--wait=false"], ""),
    ]
    for argv, stdin in runs:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "KUBECONFIG": str(config)})  # fmt: skip
        assert done.returncode != 0 and "refused" in done.stderr, (argv, done.stderr[-300:])
        assert "unknown flag" not in done.stderr and "Usage:" not in done.stderr, (argv, done.stderr[-300:])
