"""``stoker install kubernetes --service-monitor``: a prometheus-operator ServiceMonitor that finds the gateway's and
the controller's metrics ports, valid for the operator's CRD schema (checked with Node and
@kubernetes-models/prometheus-operator, generated from the operator's CRDs; scripts/setup.d/45-crd-models.sh
installs them), kept in deploy/ and removed by uninstall on its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stoker.errors import ConfigError
from stoker.install import engines, kubernetes
from stoker.install.values import Values
from tests.fakes.kubernetes import validate

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("crd_check.mjs")
VALUE_SETS: list[dict[str, Any]] = [
    {},
    {"name": "team-a", "service_monitor_labels": "release=kube-prometheus-stack,example.com/team=a"},
    {"name": "ext", "redis_url": "rediss://:pw@redis.example:6380/1", "functions_namespace": "ext-functions"},
]


def _models() -> Path:
    where = os.environ.get("STOKER_TEST_CRD_MODELS")
    if not where:
        pytest.skip("STOKER_TEST_CRD_MODELS is not set (scripts/setup.d/45-crd-models.sh installs the CRD models)")
    path = Path(where)
    assert (path / "node_modules/@kubernetes-models/prometheus-operator").is_dir(), f"no CRD models in {path}"
    assert shutil.which("node"), "node is not installed"
    return path


def crd_check(objects: list[dict[str, Any]]) -> list[str]:
    """One line per object: ``ok`` or what the CRD schema refuses."""
    done = subprocess.run(["node", str(CHECK), str(_models())], input=json.dumps(objects), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return done.stdout.splitlines()


def _monitor(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    return monitor


@pytest.mark.parametrize("given", VALUE_SETS)
def test_the_service_monitor_is_valid_for_the_crd_and_finds_gateway_and_controller(given: dict[str, Any]) -> None:
    values = Values(target="kubernetes", service_monitor=True, **given)
    objects = kubernetes.render(values)
    monitor = _monitor(objects)
    assert crd_check([monitor]) == ["ok"]
    for obj in objects:
        if obj is not monitor:
            validate(obj)
    assert monitor["metadata"]["namespace"] == values.name
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == values.name
    for key, value in values.monitor_labels().items():
        assert monitor["metadata"]["labels"][key] == value
    # What Prometheus will scrape: the Services its selector matches, on the ports its endpoints name.
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [values.name]}
    wanted = spec["selector"]["matchLabels"]
    (expression,) = spec["selector"]["matchExpressions"]
    scraped = set()
    for service in (o for o in objects if o["kind"] == "Service" and o["metadata"]["namespace"] == values.name):
        labels = service["metadata"]["labels"]
        if all(labels.get(k) == v for k, v in wanted.items()) and labels.get(expression["key"]) in expression["values"]:
            ports = {p["name"] for p in service["spec"]["ports"]}
            name = service["metadata"]["name"]
            scraped |= {(name, e["port"], e["path"]) for e in spec["endpoints"] if e["port"] in ports}
    assert scraped == {("gateway", "http", "/metrics"), ("controller-metrics", "metrics", "/metrics")}
    # No credentials (/metrics is open), but the controller's port admits the namespaces labelled for scraping.
    assert not any("basicAuth" in e or "authorization" in e for e in spec["endpoints"])
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "controller-metrics")
    assert {"namespaceSelector": {"matchLabels": {"stoker.dev/scrape": "true"}}} in policy["spec"]["ingress"][0]["from"]


def test_the_crd_check_refuses_what_the_operator_would_refuse_or_drop() -> None:
    good = kubernetes.service_monitor(Values(target="kubernetes", service_monitor=True))
    bad_interval = json.loads(json.dumps(good))
    bad_interval["spec"]["endpoints"][0]["interval"] = "30 seconds"
    typo = json.loads(json.dumps(good))
    typo["spec"]["endpoints"][1]["prot"] = typo["spec"]["endpoints"][1].pop("port")
    no_selector = json.loads(json.dumps(good))
    del no_selector["spec"]["selector"]
    lines = crd_check([good, bad_interval, typo, no_selector])
    assert lines[0] == "ok"
    assert "interval" in lines[1]
    assert "spec.endpoints[1].prot is not a field of Endpoint" in lines[2]
    assert "selector" in lines[3]


def test_only_with_the_flag_and_bad_labels_are_refused_naming_the_flag() -> None:
    assert not [o for o in kubernetes.render(Values(target="kubernetes")) if o["kind"] == "ServiceMonitor"]
    for bad in ("release", "a b=c", "release=-x", "=x"):
        with pytest.raises(ConfigError, match="--service-monitor-labels"):
            Values(target="kubernetes", service_monitor=True, service_monitor_labels=bad)


def test_the_command_line_renders_it_and_says_how() -> None:
    done = subprocess.run([sys.executable, "-m", "stoker", "install", "kubernetes", "--service-monitor",
                           "--service-monitor-labels", "release=prom"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stoker install kubernetes --service-monitor --service-monitor-labels release=prom" in done.stdout
    monitor = _monitor([o for o in yaml.safe_load_all(done.stdout) if o])
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_uninstall_deletes_the_monitor_apart_from_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in ``kubectl`` (no cluster here) records what uninstall asks, and refuses the ServiceMonitor type as a
    cluster without prometheus-operator does: the rest is deleted all the same."""
    log = tmp_path / "calls"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in *servicemonitors*) echo "no such resource type" >&2; exit 1;; esac\n'
        "cat > /dev/null\n"
    )
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    values = Values(target="kubernetes", service_monitor=True)
    engines.kube_uninstall(values, kubernetes.render(values), functions=False, namespaces=False)
    calls = log.read_text().splitlines()
    assert "-n stoker delete servicemonitors.monitoring.coreos.com stoker --ignore-not-found" in calls
    assert any(c.startswith("delete --ignore-not-found --wait=false -f -") for c in calls)
    objects = kubernetes.render(values)
    assert "ServiceMonitor" not in {o["kind"] for o in engines.uninstall_objects(objects, True, True)}


def test_deploy_has_the_default_monitor() -> None:
    text = (ROOT / "deploy/kubernetes/servicemonitor.yaml").read_text()
    assert [o for o in yaml.safe_load_all(text) if o] == [kubernetes.service_monitor(Values(target="kubernetes"))]
    assert crd_check([kubernetes.service_monitor(Values(target="kubernetes"))]) == ["ok"]
