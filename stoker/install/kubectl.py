"""The ``kubectl`` command lines of a Kubernetes install, upgrade and uninstall, decided here without running any.

Each function returns :class:`Step` s in the order they must run, with the objects piped to each on standard input;
:mod:`stoker.install.engines` runs them. Kept apart so the order, the objects and what is never deleted (the
namespaces, unless asked) are tested on machines with no cluster (tests/install/test_kubectl_plan.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stoker.install import kubernetes
from stoker.install.render import dump
from stoker.install.values import Values

Obj = dict[str, Any]

# What a ServiceMonitor is called on the command line: a cluster without prometheus-operator refuses the type.
SERVICE_MONITOR = "servicemonitors.monitoring.coreos.com"
# Labels the Kubernetes backend puts on what it makes in the functions namespace (runtime/backends/kubernetes).
FUNCTION_SELECTORS = ("app.kubernetes.io/managed-by=stoker", "stoker.dev/pool")
FUNCTION_KINDS = "deployment,service,configmap,secret,pod"


@dataclass(frozen=True)
class Step:
    """One ``kubectl`` run: its arguments (after ``kubectl``), the objects piped to it, and whether a refusal fails
    the install (``required``) or is expected on some clusters (the ServiceMonitor type without its CRD)."""

    args: tuple[str, ...]
    objects: tuple[Obj, ...] = ()
    header: str = ""
    required: bool = True
    why: str = field(default="", compare=False)

    @property
    def argv(self) -> list[str]:
        return ["kubectl", *self.args]

    def stdin(self) -> str:
        return dump(list(self.objects), self.header) if self.objects else ""


def secret_object(values: Values, role: str, value: str) -> Obj:
    """The install's Secret for ``role`` (one key, named after the role), labelled like every object of the install.
    Piped on standard input, never on the command line: ``--from-literal`` puts the value in every user's ``ps``."""
    name = kubernetes.secret_names(values)[role]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": values.name, "labels": dict(values.labels)},
        "type": "Opaque",
        "stringData": {role: value},
    }


def secrets_lookup(values: Values) -> Step:
    """Which of the install's secrets exist: ``kubectl get`` prints ``secret/<name>`` for each, nothing for the rest."""
    names = kubernetes.secret_names(values).values()
    return Step(("-n", values.name, "get", "secret", *names, "--ignore-not-found", "-o", "name"),
                why="the secrets that exist are kept (the platform key signs the functions' code)")  # fmt: skip


def missing_secrets(values: Values, lookup_output: str) -> list[str]:
    """The roles whose secret :func:`secrets_lookup` did not print, in the order of ``secret_names``."""
    found = {line.strip().rsplit("/", 1)[-1] for line in lookup_output.splitlines() if line.strip()}
    return [role for role, name in kubernetes.secret_names(values).items() if name not in found]


def apply_steps(values: Values, objects: list[Obj], new_secrets: dict[str, str]) -> list[Step]:
    """Install or upgrade: the namespaces, then the secrets that did not exist (``new_secrets``: role to value),
    then everything else (the pods mount the secrets, so they come first). Applied again with new values: the
    upgrade."""
    namespaces = tuple(o for o in objects if o["kind"] == "Namespace")
    rest = tuple(o for o in objects if o["kind"] != "Namespace")
    steps = [Step(("apply", "-f", "-"), namespaces, "namespaces", why="the namespaces the rest lives in")]
    if new_secrets:
        made = tuple(secret_object(values, role, value) for role, value in new_secrets.items())
        steps.append(Step(("create", "-f", "-"), made, "secrets", why="the secrets that did not exist"))
    steps.append(Step(("apply", "-f", "-"), rest, "install", why="the platform"))
    return steps


def rollout_steps(values: Values, objects: list[Obj], timeout_s: float) -> list[Step]:
    """Wait for every Deployment of the install to finish rolling out (a new install or an upgrade)."""
    timeout = f"--timeout={max(1, int(timeout_s))}s"
    deployments = [o["metadata"] for o in objects if o["kind"] == "Deployment"]
    return [
        Step(("-n", m["namespace"], "rollout", "status", f"deployment/{m['name']}", timeout), why="the rollout")
        for m in deployments
    ]


# What fences the functions in (default-deny and egress policies, default limits): kept while the functions are.
FENCES = {"NetworkPolicy", "LimitRange"}


def uninstall_objects(
    objects: list[Obj], functions: bool, namespaces: bool, functions_namespace: str = ""
) -> list[Obj]:
    """What ``kubectl delete -f -`` gets: never the namespaces (``--namespaces`` deletes them on their own, with all
    they hold), and Redis's volume (queued calls) and the fences of ``functions_namespace`` (its NetworkPolicies and
    LimitRange) only when the functions go too: functions kept running keep their default-deny and egress policies.
    The ServiceMonitor is deleted on its own: a cluster without prometheus-operator refuses the whole ``delete -f``
    over it."""
    if functions or namespaces:
        return [o for o in objects if o["kind"] not in {"Namespace", "ServiceMonitor"}]

    def kept(o: Obj) -> bool:
        fence = o["kind"] in FENCES and o["metadata"].get("namespace") == functions_namespace
        return fence or o["kind"] in {"Namespace", "ServiceMonitor", "PersistentVolumeClaim"}

    return [o for o in objects if not kept(o)]


def uninstall_steps(values: Values, objects: list[Obj], functions: bool, namespaces: bool) -> list[Step]:
    """Everything the install applied but its namespaces, Redis's volume and the functions' fences (unless asked); its
    secrets; with ``functions`` the functions' objects in the functions namespace; with ``namespaces`` both
    namespaces, last."""
    platform = tuple(uninstall_objects(objects, functions, namespaces, values.functions_namespace))
    steps = [
        Step(("delete", "--ignore-not-found", "--wait=false", "-f", "-"), platform, "uninstall", why="the platform"),
        Step(("-n", values.name, "delete", "secret", "--ignore-not-found", *kubernetes.secret_names(values).values()),
             why="the install's secrets"),
        Step(("-n", values.name, "delete", SERVICE_MONITOR, "stoker", "--ignore-not-found"), required=False,
             why="--service-monitor's, if any; 'no such resource type' without prometheus-operator is fine"),
    ]  # fmt: skip
    if functions:
        fns = values.functions_namespace
        steps += [
            Step(("-n", fns, "delete", FUNCTION_KINDS, "-l", selector, "--ignore-not-found"), why="the functions")
            for selector in FUNCTION_SELECTORS
        ]
    if namespaces:
        steps.append(Step(("delete", "namespace", "--ignore-not-found", values.name, values.functions_namespace),
                          why="both namespaces, with everything left in them"))  # fmt: skip
    return steps
