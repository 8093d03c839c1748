"""readOnlyRootFilesystem on the Docker backend (issue 15, item 11): not given, the root is read-only and the status
says true; ``false`` gives a writable root (every other hardening kept) and the status says false; ``true`` is
read-only. A deployment saved before the field could be absent keeps running read-only (its saved false is read as
not given); one saved false since stays writable across a restart."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.containers import FUNCTION
from stoker import bundle
from stoker.spec import FunctionDeployment
from tests.docker_support import docker_client
from tests.platform_fixture import Platform, start_platform, write_handler

# /var/tmp is world-writable in the image (mode 1777): only a read-only root stops the write, not permissions.
WRITER = """\
import errno


def handle(event, context):
    try:
        with open("/var/tmp/written", "w") as f:
            f.write("x")
    except OSError as exc:
        return "refused: " + errno.errorcode.get(exc.errno, str(exc.errno))
    return "written"
"""


@pytest.fixture(scope="module")
def engine() -> Any:
    return docker_client()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compat-rootfs")


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_handler(tmp_path_factory.mktemp("writer"), WRITER)


@pytest.fixture(scope="module")
def docker_platform(home: Path, engine: Any) -> Iterator[Platform]:
    p = start_platform(home, "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    yield p
    p.stop(timeout=120)


def _call(p: Platform, name: str) -> str:
    return httpx.post(f"{p.url}/function/{name}", content=b"", timeout=30).text


def _read_only(engine: Any, name: str) -> bool:
    (container,) = engine.containers.list(filters={"label": f"{FUNCTION}={name}"})
    return bool(container.attrs["HostConfig"]["ReadonlyRootfs"])


@pytest.mark.parametrize(
    ("name", "fields", "read_only"),
    [
        ("rofs-absent", {}, True),
        ("rofs-true", {"readOnlyRootFilesystem": True}, True),
        ("rofs-false", {"readOnlyRootFilesystem": False}, False),
    ],
)
def test_the_root_filesystem_is_what_the_deployment_says_and_the_status_reports_it(
    docker_platform: Platform, engine: Any, writer: Path, name: str, fields: dict[str, Any], read_only: bool
) -> None:
    r = docker_platform.deploy(name, writer, **fields)
    assert r.status_code == 202, r.text
    assert _call(docker_platform, name) == ("refused: EROFS" if read_only else "written")
    assert _read_only(engine, name) is read_only
    with docker_platform.client() as c:
        status = c.get(f"/system/function/{name}").json()
        assert status["readOnlyRootFilesystem"] is read_only
        listed = next(f for f in c.get("/system/functions").json() if f["name"] == name)
        assert listed["readOnlyRootFilesystem"] is read_only
        # Every other hardening stays: no capabilities, no new privileges, not root.
        (container,) = engine.containers.list(filters={"label": f"{FUNCTION}={name}"})
        host = container.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
        assert container.attrs["Config"]["User"] not in ("", "root", "0")


def test_an_update_changes_the_root_filesystem_both_ways(docker_platform: Platform, writer: Path) -> None:
    assert docker_platform.deploy("rofs-flip", writer).status_code == 202
    assert _call(docker_platform, "rofs-flip") == "refused: EROFS"
    body = {"service": "rofs-flip", "source": base64.b64encode(bundle.pack(writer)).decode()}
    with docker_platform.client() as c:
        assert c.put("/system/functions", json={**body, "readOnlyRootFilesystem": False}, timeout=60).status_code == 202
        assert _call(docker_platform, "rofs-flip") == "written"
        assert c.put("/system/functions", json=body, timeout=60).status_code == 202  # not given: read-only again
        assert _call(docker_platform, "rofs-flip") == "refused: EROFS"
        assert c.get("/system/function/rofs-flip").json()["readOnlyRootFilesystem"] is True


def test_an_explicit_false_survives_a_restart(tmp_path: Path, engine: Any, writer: Path) -> None:
    p = start_platform(tmp_path, "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    try:
        assert p.deploy("rofs-keep", writer, readOnlyRootFilesystem=False).status_code == 202
        assert p.deploy("rofs-default", writer).status_code == 202
    finally:
        p.stop(timeout=120)
    again = start_platform(tmp_path, "--backend", "docker", env={"STOKER_POOL_SIZE": "0"})
    try:
        with again.client() as c:
            assert c.get("/system/function/rofs-keep").json()["readOnlyRootFilesystem"] is False
            assert c.get("/system/function/rofs-default").json()["readOnlyRootFilesystem"] is True
        assert _call(again, "rofs-keep") == "written"
        assert _call(again, "rofs-default") == "refused: EROFS"
        with again.client() as c:
            for name in ("rofs-keep", "rofs-default"):
                assert c.request("DELETE", "/system/functions", json={"functionName": name}).status_code == 202
    finally:
        again.stop(timeout=120)


@pytest.mark.parametrize(("sent", "read_only"), [(None, True), (True, True), (False, False)])
def test_swarm_and_kubernetes_specs_follow_the_field(sent: bool | None, read_only: bool) -> None:
    from runtime.backends.kubernetes import objects as k8s_objects
    from runtime.backends.swarm.config import SwarmSettings, service_spec
    from runtime.backends.swarm.pool import poolable

    body = {"service": "f", "image": "functions/alpine:latest"}
    dep = FunctionDeployment.from_json(body if sent is None else {**body, "readOnlyRootFilesystem": sent})
    common: dict[str, Any] = {"version": "1", "created": 0.0, "replicas": 1, "stoker_image": False, "image_user": ""}
    settings = SwarmSettings.from_env()
    container = service_spec(dep, settings, secrets=[], **common)["task_template"]["ContainerSpec"]
    assert container["ReadOnly"] is read_only and container["CapabilityDrop"] == ["ALL"]
    assert poolable(dep, settings) is read_only  # generic replicas are read-only
    pod = k8s_objects.deployment(dep, 1)["spec"]["template"]["spec"]
    security = pod["containers"][0]["securityContext"]
    assert security["readOnlyRootFilesystem"] is read_only and security["allowPrivilegeEscalation"] is False


def test_kubernetes_pods_of_functions_stored_before_keep_their_version() -> None:
    # A function stored before the field could be absent carried false; read back as absent its pods hash as before
    # (no rollout on upgrade), and an explicit false (other pods) hashes apart.
    from runtime.backends.kubernetes import objects as k8s_objects

    body = {"service": "f", "image": "functions/alpine:latest"}
    absent = FunctionDeployment.from_json(body)
    before = hashlib.sha256(
        json.dumps({**absent.to_json(with_source=False), "readOnlyRootFilesystem": False}, sort_keys=True).encode()
    ).hexdigest()[:16]
    assert k8s_objects.version(absent) == before
    writable = FunctionDeployment.from_json({**body, "readOnlyRootFilesystem": False})
    assert k8s_objects.version(writable) != before
