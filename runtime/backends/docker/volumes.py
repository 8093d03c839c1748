"""Volumes the docker backend mounts read-only into replicas: a function's secrets and its signed code bundle.

A volume, not a bind mount: no host path is ever mounted into a function. Each is filled through a container that
is created and never started, and named by its content, so an unchanged deploy reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import codesign
from runtime.backends.containers import BUNDLE_DIR, BUNDLE_FILE, FUNCTION, NAMESPACE, OWNER, needs_image
from stoker import bundle
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment


@dataclass
class FunctionCode:
    """A source deploy's signed bundle as its replicas get it."""

    volume: str = ""  # holds bundle.tar.gz, mounted read-only at BUNDLE_DIR
    env: dict[str, str] = field(default_factory=dict)  # codesign.replica_env variables
    data: bytes = b""  # the bundle, kept for warm starts; empty when the function cannot use the pool


def function_code(client: Any, owner: str, platform_key: bytes, dep: FunctionDeployment, data: bytes) -> FunctionCode:
    """The bundle volume and codesign variables of a source deploy (the key given is the per-function one)."""
    volume = bundle_volume(client, owner, dep, data)
    path = f"{BUNDLE_DIR}/{BUNDLE_FILE}"
    env = codesign.replica_env_for_bytes(platform_key, dep.namespace, dep.service, data, path)
    # The pool's containers run the base image: only a function that needs nothing more can start in one.
    poolable = not dep.secrets and not dep.envProcess and dep.read_only_root and not needs_image(data)
    return FunctionCode(volume, env, data if poolable else b"")


def secrets_volume(client: Any, home: Path, owner: str, dep: FunctionDeployment) -> str:
    """A volume holding the function's secrets as files (mounted at /var/openfaas/secrets); "" when it has none.

    Values come from ``$STOKER_HOME/secrets/<namespace>/<name>``."""
    if not dep.secrets:
        return ""
    values: dict[str, bytes] = {}
    for name in dep.secrets:
        path = home / "secrets" / dep.namespace / name
        try:
            values[name] = path.read_bytes()
        except OSError:
            raise InvalidRequest(f"secret {name!r} not found in namespace {dep.namespace!r} ({path})") from None
    digest = hashlib.sha256(json.dumps({k: v.hex() for k, v in sorted(values.items())}).encode()).hexdigest()
    volume = f"stoker-secrets-{owner}-{dep.namespace}-{dep.service}-{digest[:12]}"
    _fill(client, dep, owner, volume, values)
    return volume


def bundle_volume(client: Any, owner: str, dep: FunctionDeployment, data: bytes) -> str:
    """A volume holding the function's signed bundle as ``bundle.tar.gz`` (mounted at ``BUNDLE_DIR``), so the
    replica can check its own code before it unpickles anything (:mod:`runtime.codesign`)."""
    volume = f"stoker-bundle-{owner}-{dep.namespace}-{dep.service}-{bundle.digest(data)[:12]}"
    if not _exists(client, volume):
        _fill(client, dep, owner, volume, {BUNDLE_FILE: data})
    return volume


def remove_volume(client: Any, volume: str) -> None:
    with contextlib.suppress(Exception):
        client.volumes.get(volume).remove(force=True)


def _exists(client: Any, volume: str) -> bool:
    import docker.errors

    try:
        client.volumes.get(volume)
    except docker.errors.NotFound:
        return False
    return True


def _fill(client: Any, dep: FunctionDeployment, owner: str, volume: str, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o444
            tar.addfile(info, io.BytesIO(data))
    client.volumes.create(volume, labels={OWNER: owner, FUNCTION: dep.service, NAMESPACE: dep.namespace})
    filler = client.containers.create(dep.image, volumes={volume: {"bind": "/s", "mode": "rw"}}, command="-")
    try:
        filler.put_archive("/s", buf.getvalue())
    finally:
        filler.remove(force=True)
