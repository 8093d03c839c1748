"""Apply and remove an install on a real engine: ``docker-compose``, ``docker stack`` and ``kubectl`` run as an operator
would run them, plus the secrets an install needs (random values made here, never printed)."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from runtime.backends.docker import cleanup as docker_cleanup
from runtime.backends.swarm import cleanup as swarm_cleanup
from runtime.backends.swarm.config import PLATFORM
from stoker.errors import StokerError
from stoker.install import kubectl, swarm
from stoker.install.values import INSTALL_LABEL, Values

logger = logging.getLogger(__name__)


class InstallError(StokerError):
    """An engine refused a step of an install or uninstall (the message names the step)."""

    status = 500


def run(cmd: list[str], stdin: str = "", env: dict[str, str] | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise InstallError(f"{' '.join(cmd[:3])} failed: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def docker_gid() -> str:
    try:
        return str(os.stat("/var/run/docker.sock").st_gid)
    except OSError:
        return "999"


def wait_healthy(url: str, timeout: float) -> float:
    """Seconds until ``url`` answered 200 (raises after ``timeout``)."""
    import httpx

    start = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > timeout:
            raise InstallError(f"{url} did not answer 200 within {timeout:g}s")
        time.sleep(0.5)


def running_edge_image(values: Values) -> str:
    """The image the install's edge runs now ("" when there is none): an upgrade keeps it, since replacing the edge,
    the one published port, drops the connections a replaced gateway does not (docs/install.md)."""
    import docker
    import docker.errors

    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return ""
    try:
        if values.target == "compose":
            labels = [f"com.docker.compose.project={values.name}", "com.docker.compose.service=edge"]
            for container in client.containers.list(filters={"label": labels}):
                return str(container.attrs["Config"]["Image"])
            return ""
        for service in client.api.services(filters={"name": f"{values.name}_edge"}):
            if service["Spec"]["Name"] == f"{values.name}_edge":
                image = str(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
                return image.split("@sha256:")[0] if ":" in image.split("@")[0].rsplit("/", 1)[-1] else image
        return ""
    except docker.errors.DockerException:
        return ""
    finally:
        client.close()


# --- compose ------------------------------------------------------------------------------------------------


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def compose_owner(values: Values) -> str:
    """The docker backend's owner id of the install's gateway: a hash of its STOKER_HOME (runtime/backends/docker)."""
    return hashlib.sha256(f"/var/lib/stoker/{values.name}".encode()).hexdigest()[:12]


def compose_apply(values: Values, folder: Path, text: str, admin_password: str) -> None:
    """Write the file and its ``.env`` (passwords kept from an earlier install) into ``folder``, then ``up -d``."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    env_file = folder / ".env"
    env: dict[str, str] = {}
    if env_file.is_file():
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    env.setdefault("STOKER_REDIS_PASSWORD", secrets.token_hex(24))
    env["STOKER_ADMIN_PASSWORD"] = admin_password or env.get("STOKER_ADMIN_PASSWORD") or secrets.token_hex(16)
    env["DOCKER_GID"] = docker_gid()
    fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    (folder / "compose.yaml").write_text(text)
    run([*compose_command(), "-p", values.name, "-f", str(folder / "compose.yaml"), "up", "-d"])


def compose_uninstall(values: Values, folder: Path, functions: bool) -> None:
    """``down`` (the gateway removes its function containers as it stops); with ``functions`` also every volume:
    the platform's state, Redis's data, and the functions' code and secret volumes."""
    import docker

    cmd = [*compose_command(), "-p", values.name, "-f", str(folder / "compose.yaml"), "down"]
    run([*cmd, "-v", "--remove-orphans"] if functions else cmd)
    if functions:
        client = docker.from_env()
        try:
            _removed_all(docker_cleanup.remove_owned(client, compose_owner(values)))
        finally:
            client.close()
        shutil.rmtree(folder, ignore_errors=True)


# --- swarm --------------------------------------------------------------------------------------------------


def swarm_secrets(values: Values, admin_password: str) -> None:
    """Create the install's secrets that do not exist yet (an existing one is kept: its key signs the code)."""
    import docker

    client = docker.from_env()
    try:
        existing = {s.name for s in client.secrets.list(filters={"label": f"{INSTALL_LABEL}={values.name}"})}
        labels = {INSTALL_LABEL: values.name, PLATFORM: values.name}
        for role, name in swarm.secret_names(values).items():
            if name in existing:
                continue
            value = admin_password if role == "admin-password" and admin_password else secrets.token_hex(32)
            client.secrets.create(name=name, data=value.encode(), labels=labels)
    finally:
        client.close()


def swarm_apply(values: Values, text: str, admin_password: str) -> None:
    swarm_secrets(values, admin_password)
    run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", "-", values.name], stdin=text,
        env={"DOCKER_GID": docker_gid()})  # fmt: skip


def swarm_uninstall(values: Values, functions: bool, timeout: float = 120) -> None:
    """``docker stack rm``, then (``functions``) the function and pool services, secrets, code configs, network and
    volumes the platform made; without it those stay (with the platform key, which their code is signed with) for
    an install of the same name to take over."""
    import docker

    client = docker.from_env()
    try:
        # Its services go at once; its networks may be refused while tasks stop (and the functions network while
        # function services use it): they are removed below, once free.
        subprocess.run(["docker", "stack", "rm", values.name], capture_output=True, timeout=120, check=False)
        stack = {"label": f"com.docker.stack.namespace={values.name}"}
        _until(lambda: not client.api.containers(all=True, filters=stack), timeout, "the stack's containers to stop")
        install = {"label": f"{INSTALL_LABEL}={values.name}"}
        keep = set() if functions else {swarm.secret_names(values)["platform-key"]}
        if functions:
            _removed_all(swarm_cleanup.remove_platform(client.api, values.name, tasks_gone_s=timeout))
            for volume in (client.api.volumes(filters=stack) or {}).get("Volumes") or []:
                _retry(lambda v=volume: client.api.remove_volume(v["Name"]), timeout)
        functions_network = f"{values.name}-functions"
        for network in client.api.networks(filters=stack):
            if functions or network["Name"] != functions_network:
                _retry(lambda n=network: client.api.remove_network(n["Id"]), timeout)
        # Made by --apply (labelled) or by hand (docs/install.md): found by label and by name.
        found = client.api.secrets(filters=install) + [
            secret
            for name in swarm.secret_names(values).values()
            for secret in client.api.secrets(filters={"name": name})
            if secret["Spec"]["Name"] == name
        ]
        for secret in {s["ID"]: s for s in found}.values():
            if secret["Spec"]["Name"] not in keep:
                _retry(lambda s=secret: client.api.remove_secret(s["ID"]), timeout)
    finally:
        client.close()


def _removed_all(lines: list[str]) -> None:
    """Fail an uninstall that had to keep something (``kept <kind> <name>: <why>``, the engine refused to remove it)."""
    kept = [line for line in lines if line.startswith("kept ")]
    if kept:
        raise InstallError("; ".join(kept))


def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise InstallError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _retry(action: Any, timeout: float) -> None:
    """Removals the Engine refuses while a task that used the object is still being torn down: retried."""
    import docker.errors

    deadline = time.monotonic() + timeout
    while True:
        try:
            action()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


# --- kubernetes ---------------------------------------------------------------------------------------------


def _kubectl(steps: list[kubectl.Step], timeout: float = 600) -> str:
    """Run ``steps`` in order; a refused required step stops there (the message names it)."""
    out = ""
    for step in steps:
        if step.required:
            out += run(step.argv, stdin=step.stdin(), timeout=timeout)
        else:
            subprocess.run(step.argv, input=step.stdin(), capture_output=True, text=True, timeout=timeout, check=False)
    return out


def kube_apply(values: Values, objects: list[dict[str, Any]], admin_password: str, wait_s: float = 0) -> None:
    """Namespaces, the secrets that do not exist yet (random values; ``admin_password`` for the admin's), the rest;
    then, with ``wait_s``, every Deployment's rollout awaited."""
    _kubectl(kubectl.apply_steps(values, objects, {})[:1])
    missing = kubectl.missing_secrets(values, _kubectl([kubectl.secrets_lookup(values)]))
    made = {r: admin_password if r == "admin-password" and admin_password else secrets.token_hex(32) for r in missing}
    _kubectl(kubectl.apply_steps(values, objects, made)[1:])
    if wait_s:
        _kubectl(kubectl.rollout_steps(values, objects, wait_s), timeout=wait_s + 60)


uninstall_objects = kubectl.uninstall_objects


def kube_uninstall(values: Values, objects: list[dict[str, Any]], functions: bool, namespaces: bool) -> None:
    """Everything the install applied but its namespaces and Redis's volume (unless asked); its secrets; with
    ``functions`` the functions' objects in the functions namespace too (:func:`kubectl.uninstall_steps`)."""
    _kubectl(kubectl.uninstall_steps(values, objects, functions, namespaces))
