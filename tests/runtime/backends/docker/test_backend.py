"""`stoker up --backend docker` end to end against the real Docker Engine: deploy, invoke, hardening, bad input."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.backends.containers import OWNER
from stoker import bundle
from tests.docker_support import platform_containers
from tests.platform_fixture import FUNCTIONS, ROOT, Platform, write_handler
from tests.wait_support import wait_for

pytestmark = pytest.mark.slow


def _containers(docker_engine: Any, platform: Platform, name: str) -> list[Any]:
    """This platform's containers of function ``name``: another run's (or a leftover of an interrupted one) on the
    same engine do not count."""
    return platform_containers(docker_engine, platform.home, name)


def test_stack_deploys_with_the_cli_and_answers_through_the_gateway(
    docker_platform: Platform, docker_engine: Any
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "deploy", "-f", str(FUNCTIONS / "stack.yml")],
        capture_output=True, text=True, env=docker_platform.env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reply = httpx.post(f"{docker_platform.url}/function/hello", content=b"docker", timeout=30)
    assert reply.status_code == 200 and reply.text == "Hello, docker!\n"
    with docker_platform.client() as c:
        status = c.get("/system/function/hello").json()
    # no requirements: no image of its own, the base image runs the signed bundle
    assert status["image"].startswith("stoker/runtime:") and status["availableReplicas"] == 1
    assert len(_containers(docker_engine, docker_platform, "hello")) == 1


def test_replicas_are_hardened(docker_platform: Platform, docker_engine: Any, tmp_path: Path) -> None:
    folder = write_handler(tmp_path / "hard", "def handle(event, context):\n    return 'ok'\n")
    assert docker_platform.deploy("hard", folder, limits={"memory": "96Mi", "cpu": "0.5"}).status_code == 202
    (container,) = _containers(docker_engine, docker_platform, "hard")
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] not in ("", "root", "0")
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == 96 * 1024 * 1024 and host["NanoCpus"] == 500_000_000 and host["PidsLimit"] > 0
    assert host["Privileged"] is False and not host.get("Binds")
    assert all(m["Type"] != "bind" for m in container.attrs["Mounts"])  # no host path, no docker_engine.sock
    (network,) = container.attrs["NetworkSettings"]["Networks"]  # the platform's own, isolated network
    assert network.startswith("stoker-fn-") and container.labels[OWNER] in network
    # From inside: not root, and the root filesystem cannot be written.
    probe = "import os\ntry:\n    open('/x', 'w'); w = 'writable'\nexcept OSError:\n    w = 'ro'\nprint(os.getuid(), w)"
    code, out = container.exec_run(["python3", "-c", probe])
    assert code == 0 and out.decode().split() == [out.decode().split()[0], "ro"] and out.decode().split()[0] != "0"
    # What docs/docker.md promises besides: docker-init as PID 1, a noexec 64 MB /tmp, 512 pids, no swap.
    assert host["Init"] is True and host["PidsLimit"] == 512
    assert host["MemorySwap"] == host["Memory"]  # swap limit = memory limit: no extra swap
    tmp_options = host["Tmpfs"]["/tmp"].split(",")
    assert "noexec" in tmp_options and "size=64m" in tmp_options, tmp_options
    probe = (
        "import os\n"
        "print(open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode())\n"
        "print([m.split()[3] for m in open('/proc/mounts') if m.split()[1] == '/tmp'][0])\n"
        "print(os.statvfs('/tmp').f_blocks * os.statvfs('/tmp').f_frsize)"
    )
    code, out = container.exec_run(["python3", "-c", probe])
    init, mount_options, tmp_bytes = out.decode().split()
    assert code == 0 and init.endswith("docker-init"), out
    assert "noexec" in mount_options.split(","), mount_options
    assert tmp_bytes == str(64 * 1024 * 1024)


def _wheel(folder: Path, version: str) -> Path:
    """A pure-Python wheel of a package ``stoker_testdep`` whose VERSION is ``version``: a requirement that pip
    installs without a network or a cache an earlier online run filled (the test used six from PyPI)."""
    name = "stoker_testdep"
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: stoker-testdep\nVersion: 1.0\n",
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: stoker-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def test_a_function_with_a_third_party_requirement(docker_platform: Platform, tmp_path: Path) -> None:
    run = uuid.uuid4().hex
    source = "import stoker_testdep\n\ndef handle(event, context):\n    return 'dep ' + stoker_testdep.VERSION\n"
    # A wheel unique to this run (so are the requirements, the cache key of the dependency layer): pip installs it
    # now, and the code layer is built now, not found from an earlier run on this engine.
    folder = write_handler(tmp_path / "req", source)
    (folder / "requirements.txt").write_text(f"{_wheel(tmp_path / 'wheels', run)}\n")
    # `stoker deploy` shows the gateway's build of the image as it happens (streamed by the deploy request).
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "deploy", "--name", "with-req", "--handler", str(folder)],
        capture_output=True, text=True, env=docker_platform.env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("with-req: ")]
    assert any(line.startswith("with-req: installing requirements.txt") for line in progress), proc.stderr
    assert any(line.startswith("with-req: Step ") for line in progress), proc.stderr
    assert "with-req: built stoker-fn/with-req:" in progress[-1], proc.stderr
    assert httpx.get(f"{docker_platform.url}/function/with-req", timeout=30).text == f"dep {run}"


def test_an_import_crash_fails_the_deploy_and_the_gateway_stays_up(
    docker_platform: Platform, docker_engine: Any, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "boom", "import json\nraise RuntimeError('no config')\n")
    reply = docker_platform.deploy("boom", folder)
    assert reply.status_code == 422
    assert "handler.py" in reply.json()["error"] and "no config" in reply.json()["error"]
    assert _containers(docker_engine, docker_platform, "boom") == []  # nothing half-deployed
    with docker_platform.client() as c:
        assert c.get("/system/function/boom").status_code == 404
        assert c.get("/healthz").status_code == 200


def test_a_failed_update_keeps_the_old_version_serving(docker_platform: Platform, tmp_path: Path) -> None:
    folder = write_handler(tmp_path / "upd", "def handle(event, context):\n    return 'v1'\n")
    assert docker_platform.deploy("upd", folder).status_code == 202
    write_handler(folder, "raise ImportError('broken v2')\n")
    body = {
        "service": "upd",
        "source": base64.b64encode(bundle.pack(folder)).decode(),
    }
    with docker_platform.client() as c:
        reply = c.put("/system/functions", json=body, timeout=120)
    assert reply.status_code == 422 and "previous version keeps serving" in reply.json()["error"]
    assert httpx.get(f"{docker_platform.url}/function/upd", timeout=30).text == "v1"


def test_bad_image_references_and_missing_images_are_refused(docker_platform: Platform) -> None:
    with docker_platform.client() as c:
        bad = c.post("/system/functions", json={"service": "badref", "image": "Not A::Ref"})
        assert bad.status_code == 400 and "not a valid image reference" in bad.json()["error"]
        missing = c.post("/system/functions", json={"service": "noimg", "image": "stoker-test/none-such:1"}, timeout=60)
        assert missing.status_code == 422 and "cannot be pulled" in missing.json()["error"]
        assert c.get("/system/function/noimg").status_code == 404


def test_an_image_deploys_without_source(docker_platform: Platform, docker_engine: Any) -> None:
    # Any image following the replica contract (HTTP on 8080): here one built in this test (as `stoker build` does,
    # under a repository unique to the run), as it would run on OpenFaaS. Nothing left by an earlier run is used.
    from builder.base import ensure_base_image
    from builder.function import build_function
    from runtime.backends.docker.config import DockerSettings

    base = ensure_base_image(docker_engine, DockerSettings.from_env().base_image, out=lambda line: None)
    image = build_function(
        docker_engine, "hello", bundle.pack(FUNCTIONS / "hello"), base.ref, prefix=f"stoker-test-{uuid.uuid4().hex[:8]}"
    ).ref
    try:
        with docker_platform.client() as c:
            reply = c.post("/system/functions", json={"service": "from-image", "image": image}, timeout=120)
            assert reply.status_code == 202, reply.text
            assert c.get("/system/function/from-image").json()["image"] == image
        reply = httpx.post(f"{docker_platform.url}/function/from-image", content=b"image", timeout=30)
        assert reply.text == "Hello, image!\n"
        with docker_platform.client() as c:
            assert c.request("DELETE", "/system/functions", json={"functionName": "from-image"}).status_code == 202
    finally:
        docker_engine.images.remove(image, force=True)  # untags it even while a container still uses it


def test_a_container_killed_from_outside_is_replaced(
    docker_platform: Platform, docker_engine: Any, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "kill", "def handle(event, context):\n    return 'alive'\n")
    assert docker_platform.deploy("killme", folder).status_code == 202
    (first,) = _containers(docker_engine, docker_platform, "killme")
    first.kill()

    def replaced() -> list[Any]:
        return [
            c
            for c in _containers(docker_engine, docker_platform, "killme")
            if c.id != first.id and c.status == "running"
        ]

    wait_for(replaced, 90, "a replacement container", poll_s=0.2)
    wait_for(
        lambda: httpx.get(f"{docker_platform.url}/function/killme", timeout=30).text == "alive",
        90,
        "serving again",
        poll_s=0.2,
    )


def test_a_crash_loop_backs_off_and_shows_in_the_status(
    docker_platform: Platform, docker_engine: Any, tmp_path: Path
) -> None:
    # Ready first, then exits a second later: the deploy succeeds, then the replica keeps dying.
    source = (
        "import os, threading\n"
        "threading.Timer(1.0, lambda: os._exit(7)).start()\n"
        "def handle(event, context):\n    return 'soon gone'\n"
    )
    folder = write_handler(tmp_path / "flaky", source)
    assert docker_platform.deploy("flaky", folder).status_code == 202
    with docker_platform.client() as c:
        message = wait_for(
            lambda: "restart 3" in (m := c.get("/system/function/flaky").json()["message"]) and m,
            90,
            "three restarts",
            poll_s=0.2,
        )
    assert "exited with code 7" in message
    delay = float(message.rsplit(" in ", 1)[1].rstrip("s"))
    assert delay >= 0.8  # 0.2, 0.4, 0.8, ...: backoff, not a tight loop
    with docker_platform.client() as c:
        assert c.delete("/system/functions", params={"functionName": "flaky"}).status_code == 202
    wait_for(lambda: _containers(docker_engine, docker_platform, "flaky") == [], 90, "containers removed", poll_s=0.2)


def test_remove_deletes_the_containers_and_nothing_else(
    docker_platform: Platform, docker_engine: Any, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "rm", "def handle(event, context):\n    return 'x'\n")
    assert docker_platform.deploy("rmme", folder).status_code == 202
    image = _containers(docker_engine, docker_platform, "rmme")[0].image.id
    with docker_platform.client() as c:
        assert c.delete("/system/functions", params={"functionName": "rmme"}).status_code == 202
    # 202 once it gets no traffic; the containers drain and go in the background (docs/openfaas.md)
    wait_for(lambda: _containers(docker_engine, docker_platform, "rmme") == [], 90, "containers removed", poll_s=0.2)
    assert docker_engine.images.get(image) is not None  # images stay (rebuilds are free)
    owner = hashlib.sha256(str(docker_platform.home.resolve()).encode()).hexdigest()[:12]
    assert docker_engine.networks.get(f"stoker-fn-{owner}") is not None  # the platform's network stays


def test_logs_come_from_the_containers(docker_platform: Platform) -> None:
    # Its own function: this test may run first, or after another removed the examples (random order).
    assert docker_platform.deploy("logsfn", FUNCTIONS / "hello").status_code == 202
    assert httpx.post(f"{docker_platform.url}/function/logsfn", content=b"logs", timeout=30).status_code == 200
    with docker_platform.client() as c:

        def call_lines() -> list[str]:
            text = c.get("/system/logs", params={"name": "logsfn"}).text
            return [ln for ln in text.splitlines() if "call_id=" in ln]

        lines = wait_for(call_lines, 90, "a call log line", poll_s=0.2)
        assert c.delete("/system/functions", params={"functionName": "logsfn"}).status_code == 202
    assert '"instance": "stoker-openfaas-fn-logsfn' in lines[-1]


def test_an_updated_secret_rolls_the_functions_that_use_it_without_a_failed_call(
    docker_platform: Platform, docker_engine: Any, tmp_path: Path
) -> None:
    handler = "def handle(event, context):\n    return context.secret('rot-token')\n"
    folder = write_handler(tmp_path / "rot", handler)
    with docker_platform.client() as c:
        assert c.post("/system/secrets", json={"name": "rot-token", "value": "first"}).status_code == 201
        assert docker_platform.deploy("rotating", folder, secrets=["rot-token"]).status_code == 202
        url = f"{docker_platform.url}/function/rotating"
        assert httpx.get(url, timeout=30).text == "first"
        (before,) = [c.id for c in _containers(docker_engine, docker_platform, "rotating")]
        volumes = {m["Name"] for m in docker_engine.containers.get(before).attrs["Mounts"] if m.get("Name")}

        assert c.put("/system/secrets", json={"name": "rot-token", "value": "second"}).status_code == 200
        answers = []
        deadline = time.monotonic() + 120
        while not answers or answers[-1] != (200, "second"):
            assert time.monotonic() < deadline, answers[-5:]
            r = httpx.get(url, timeout=30)
            answers.append((r.status_code, r.text))
        assert {status for status, _ in answers} == {200}  # the old container served until the new one was ready
        assert {text for _, text in answers} <= {"first", "second"}

        # The old container and its secrets volume go; the code volume stays with the new container.
        wait_for(
            lambda: [c.id for c in _containers(docker_engine, docker_platform, "rotating")] not in ([before], []),
            90,
            "the roll",
            poll_s=0.2,
        )
        wait_for(
            lambda: before not in [c.id for c in _containers(docker_engine, docker_platform, "rotating")],
            90,
            "the old container",
            poll_s=0.2,
        )
        secrets_volumes = [v for v in volumes if v.startswith("stoker-secrets-")]
        assert secrets_volumes
        wait_for(
            lambda: not docker_engine.volumes.list(filters={"name": secrets_volumes[0]}),
            90,
            "the old volume",
            poll_s=0.2,
        )
        assert c.delete("/system/functions", params={"functionName": "rotating"}).status_code == 202
