"""OpenFaaS compatibility on the Docker backend (issue 15): a memory amount below the Engine's 6 MiB minimum, which
OpenFaaS accepts (the certifier deploys ``limits.memory: 5Mi``), is raised to the minimum and said in the status."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runtime.backends.containers import FUNCTION, DockerSettings
from runtime.backends.docker.config import container_spec
from stoker.spec import FunctionDeployment
from tests.docker_support import docker_client
from tests.platform_fixture import FUNCTIONS, Platform, start_platform

MIB = 1024 * 1024


def test_a_limit_below_the_engine_minimum_becomes_the_minimum_in_the_container_spec() -> None:
    dep = FunctionDeployment.from_json(
        {"service": "tiny", "image": "functions/alpine:latest", "limits": {"memory": "5Mi"}}
    )
    spec = container_spec(dep, DockerSettings(), "", {})
    assert spec["mem_limit"] == 6 * MIB and spec["memswap_limit"] == 6 * MIB


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def docker_platform(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("compat-docker"), "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    yield p
    p.stop(timeout=120)


def test_a_request_below_the_engine_minimum_is_raised_and_said(docker_platform: Platform, engine: Any) -> None:
    fields = {"limits": {"memory": "96Mi"}, "requests": {"memory": "5Mi"}}
    r = docker_platform.deploy("tinyreq", FUNCTIONS / "hello", **fields)
    assert r.status_code == 202, r.text
    with docker_platform.client() as c:
        status = c.get("/system/function/tinyreq").json()
        assert status["requests"] == {"memory": "5Mi"}  # the deployment as sent
        assert "requests.memory 5Mi" in status["message"] and "rounded up to 6Mi" in status["message"]
        (container,) = engine.containers.list(filters={"label": f"{FUNCTION}=tinyreq"})
        assert container.attrs["HostConfig"]["MemoryReservation"] == 6 * MIB
        assert c.request("DELETE", "/system/functions", json={"functionName": "tinyreq"}).status_code == 202
