"""``stoker down`` / ``stoker purge`` on the Docker backend (see runtime/backends/cleanup.py): the containers (function
replicas and warm pool), the secret and code volumes and the network that carry this platform's owner label (a hash
of its ``STOKER_HOME``); another platform's objects on the same engine have another owner and are never touched."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

from builder import engine
from runtime.backends.cleanup import removal
from runtime.backends.containers import FUNCTION, OWNER, DockerSettings, owner_id
from runtime.backends.docker import network as docker_network
from runtime.backends.docker.state import FunctionFiles
from stoker.config import Config
from stoker.errors import BackendUnavailable

BUILT_LABEL = "com.stoker.source-digest"  # on every function image `stoker deploy`/`stoker build` made (builder)


def tear_down(config: Config) -> list[str]:
    owner = owner_id(config.home)
    client = _connect()
    try:
        out = remove_owned(client, owner)
        settings = DockerSettings.from_env()
        name = settings.network or docker_network.default_name(owner)
        if client.networks.list(names=[name]):
            docker_network.remove_if_ours(client, name, owner)
            if not client.networks.list(names=[name]):
                out.append(f"removed network {name}")
    finally:
        client.close()
    return out


def remove_owned(client: Any, owner: str) -> list[str]:
    """Remove the containers, then the volumes, that carry ``owner`` in their owner label (one line each, as
    :func:`runtime.backends.cleanup.removal`); ``stoker uninstall --functions`` of a compose install uses it too."""
    import docker.errors

    out: list[str] = []
    for c in client.containers.list(all=True, filters={"label": f"{OWNER}={owner}"}):
        if c.labels.get(OWNER) != owner:  # the engine filtered already; never trust a filter with a removal
            continue
        with contextlib.suppress(docker.errors.NotFound):  # a container that cannot be removed stops the cleanup
            c.remove(force=True)
            out.append(f"removed container {c.name}")
    for v in client.volumes.list(filters={"label": f"{OWNER}={owner}"}):
        if (v.attrs.get("Labels") or {}).get(OWNER) == owner:
            out += removal("volume", v.name, v.remove)
    return out


def built_images(config: Config) -> list[str]:
    """The function images this platform's saved functions run that stoker built (they carry the builder's label)
    and no container uses (an image two platforms share stays while the other one runs it)."""
    import docker.errors

    saved, _ = FunctionFiles(config.home / "docker" / "functions").load_all()
    refs = sorted({s.deployment.image for s in saved if s.deployment.image})
    client = _connect()
    out: list[str] = []
    try:
        for ref in refs:
            try:
                image: Any = client.images.get(ref)
            except docker.errors.ImageNotFound:
                continue
            labels = image.labels or {}
            if BUILT_LABEL not in labels or FUNCTION not in labels:
                continue  # an image the user named: not ours to remove
            out += removal("image", ref, partial(client.images.remove, ref))
    finally:
        client.close()
    return out


def _connect() -> Any:
    try:
        return engine.connect()
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot clean up the docker backend: {exc}") from None
