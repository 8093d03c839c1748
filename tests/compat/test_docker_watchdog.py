"""OpenFaaS classic-watchdog images on the Docker backend (issue 15, item 12): their watchdog forks the function for
every path but ``/_/health``, so the readiness probe asks ``/_/health`` only; a replica start runs no call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.backends.readiness import HEALTH, READY, ready_path
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment
from tests.compat import watchdog_image
from tests.docker_support import docker_client
from tests.platform_fixture import Platform, start_platform


def test_which_images_are_probed_where() -> None:
    assert ready_path(["PATH=/bin", "fprocess=cat"]) == HEALTH  # classic watchdog (functions/alpine, classic templates)
    assert ready_path(["fprocess=python index.py", "mode=http"]) == READY  # of-watchdog
    assert ready_path(["PATH=/bin"]) == READY  # stoker's runtime, any other image
    assert ready_path(["fprocessx=1"]) == READY


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def classic_image(engine: Any) -> Iterator[str]:
    tag = watchdog_image.build(engine)
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    env = {"STOKER_POOL_SIZE": "0", "STOKER_DRAIN_TIMEOUT_S": "2"}  # its replicas ignore SIGTERM
    p = start_platform(tmp_path_factory.mktemp("compat-wd"), "--backend", "docker", env=env)
    yield p
    p.stop(timeout=120)


def test_a_classic_watchdog_replica_is_probed_on_health_only(docker_platform: Platform, classic_image: str) -> None:
    with docker_platform.client() as c:
        r = c.post("/system/functions", json={"service": "classic", "image": classic_image}, timeout=120)
        assert r.status_code == 202, r.text
    first = httpx.post(f"{docker_platform.url}/function/classic", content=b"x", timeout=30)
    assert first.status_code == 200
    before = json.loads(first.text)  # every path the replica saw before this call: the probes
    assert before and set(before) == {HEALTH}, before
    with docker_platform.client() as c:
        assert c.request("DELETE", "/system/functions", json={"functionName": "classic"}).status_code == 202


def test_swarm_services_of_classic_images_say_where_to_probe() -> None:
    from runtime.backends.swarm.config import READY_PATH, SwarmSettings, service_spec

    dep = FunctionDeployment.from_json({"service": "classic", "image": "functions/alpine:latest"})
    common: dict[str, Any] = {"version": "1", "created": 0.0, "replicas": 1, "stoker_image": False, "image_user": ""}
    settings = SwarmSettings.from_env()
    classic = service_spec(dep, settings, secrets=[], ready_path=ready_path(["fprocess=cat"]), **common)
    assert classic["labels"][READY_PATH] == HEALTH
    other = service_spec(dep, settings, secrets=[], ready_path=ready_path(["mode=http", "fprocess=x"]), **common)
    assert READY_PATH not in other["labels"]


def test_kubernetes_honours_faas_netes_health_path_annotation() -> None:
    from runtime.backends.kubernetes import objects as k8s_objects

    annotations = {k8s_objects.HEALTH_PATH_ANNOTATION: HEALTH}
    dep = FunctionDeployment.from_json({"service": "classic", "image": "functions/alpine", "annotations": annotations})
    (container,) = k8s_objects.deployment(dep, 1)["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": HEALTH, "port": 8080}
    bad = FunctionDeployment.from_json(
        {"service": "classic", "image": "functions/alpine", "annotations": {k8s_objects.HEALTH_PATH_ANNOTATION: "x y"}}
    )
    with pytest.raises(InvalidRequest, match="not a plain absolute path"):
        k8s_objects.deployment(bad, 1)
