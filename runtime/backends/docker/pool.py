"""The docker backend's generic replicas: base-image containers in pool mode, for :mod:`runtime.backends.pool`.

Each is hardened like any replica (:func:`runtime.backends.docker.config.generic_spec`: same user, read-only root,
no capabilities, limits, network) and runs ``python -m runtime`` with ``STOKER_POOL=1``. Its one-time key goes in
through the container's standard input, never its environment or image: the container is created with stdin open
and ``StdinOnce``, the backend attaches to stdin before starting it, writes the 32 bytes and closes; the Engine then
closes the container's stdin, so the replica (``STOKER_POOL_KEY_FD=0``) reads the key to end of file and closes fd 0.
Nothing else can attach later and ``docker inspect`` shows only ``STOKER_POOL_KEY_FD=0``. It counts as started once
``/_/health`` answers at its address on the functions network.

Specialising (:meth:`GenericContainer.specialise`) first applies the function's own memory and CPU limits with
``docker update`` when they differ from the pool's, then POSTs the signed request to the container's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import Any

from runtime.backends import pool
from runtime.backends.docker.config import generic_spec
from runtime.backends.readiness import probe
from runtime.contract import DIR_VAR, HEALTH_PATH, KEY_FD_VAR, POOL_VAR, PORT

HEALTH_POLL_S = 0.02
START_TIMEOUT_S = 60.0  # two cores shared with builds: a container start can take seconds
SPECIALISE_TIMEOUT_S = 30.0
POOL_WORKDIR = "/tmp/stoker-fn"  # on the container's tmpfs: the only writable place


class GenericContainer:
    """One started generic container of the warm pool."""

    def __init__(self, instance: str, client: Any, cid: str, host: str, key: bytes, memory: int) -> None:
        self.instance = instance
        self.client = client
        self.cid = cid
        self.host = host
        self.key = key
        self.memory = memory  # its memory limit now

    async def specialise(self, env: dict[str, str], code: bytes, limits: dict[str, int] | None = None) -> str:
        """Give it a function (with ``limits`` as ``docker update`` arguments); "" once it serves, else why not."""
        if limits:
            try:
                await asyncio.to_thread(self.client.api.update_container, self.cid, **limits)
            except Exception as exc:  # refused (a limit below current use): the caller starts a regular replica
                return f"cannot apply the function's limits: {str(exc).splitlines()[0][:200]}"
        return await pool.specialise(self.host, PORT, self.key, env, code, SPECIALISE_TIMEOUT_S)

    async def discard(self) -> None:
        await asyncio.to_thread(_remove_quietly, self.client, self.cid)


class ContainerStarter:
    """Starts generic containers for a :class:`runtime.backends.pool.WarmPool`.

    ``image`` returns the base image reference (it may build it the first time, so it runs in a thread)."""

    def __init__(self, client: Any, settings: Any, image: Callable[[], str], owner: str, memory: int) -> None:
        self.client = client
        self.settings = settings
        self.image = image
        self.owner = owner
        self.memory = memory
        self.serial = 0

    async def __call__(self) -> GenericContainer:
        self.serial += 1
        image = await asyncio.to_thread(self.image)
        instance = f"stoker-pool-{self.owner}-{self.serial}-{int(time.time() * 1000) % 10**8}"
        env = {POOL_VAR: "1", KEY_FD_VAR: "0", DIR_VAR: POOL_WORKDIR, "STOKER_INSTANCE": instance}
        spec = generic_spec(self.settings, image, self.owner, env, self.memory)
        key = pool.new_key()
        creating = asyncio.ensure_future(asyncio.to_thread(_create_with_stdin, self.client, instance, spec))
        try:
            cid = await asyncio.shield(creating)
        except asyncio.CancelledError:  # the pool is closing: the Engine call runs on, so remove what it makes
            with contextlib.suppress(BaseException):
                await asyncio.to_thread(_remove_quietly, self.client, await creating)
            raise
        try:
            await asyncio.to_thread(_start_with_key, self.client, cid, key)
            info = await asyncio.to_thread(self.client.api.inspect_container, cid)
            networks = info.get("NetworkSettings", {}).get("Networks") or {}
            host = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), "")
            if not host or not await _healthy(self.client, cid, host):
                raise RuntimeError(f"generic container {instance} exited or did not answer within {START_TIMEOUT_S:g}s")
        except BaseException:
            await asyncio.to_thread(_remove_quietly, self.client, cid)
            raise
        return GenericContainer(instance, self.client, cid, host, key, self.memory)


def _create_with_stdin(client: Any, name: str, spec: dict[str, Any]) -> str:
    """Create the container of :func:`generic_spec` with stdin open once (``StdinOnce``, which the high-level
    ``containers.create`` cannot set): the low-level calls, with the same hardening."""
    api = client.api
    host = {k: spec[k] for k in _HOST_KEYS}
    host_config = api.create_host_config(network_mode=spec["network"], **host)
    config = api.create_container_config(
        spec["image"],
        None,
        user=spec["user"],
        environment=spec["environment"],
        labels=spec["labels"],
        stdin_open=True,
        detach=True,
        host_config=host_config,
    )
    config["StdinOnce"] = True
    return str(api.create_container_from_config(config, name)["Id"])


_HOST_KEYS = (
    "read_only",
    "tmpfs",
    "cap_drop",
    "security_opt",
    "mem_limit",
    "memswap_limit",
    "pids_limit",
    "restart_policy",
    "init",
)


def _start_with_key(client: Any, cid: str, key: bytes) -> None:
    """Attach to stdin, start, write the key and close: with StdinOnce the Engine closes the container's stdin."""
    attached = client.api.attach_socket(cid, params={"stdin": 1, "stream": 1})
    raw: socket.socket = getattr(attached, "_sock", attached)
    try:
        client.api.start(cid)
        raw.sendall(key)
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_WR)
    finally:
        attached.close()


async def _healthy(client: Any, cid: str, host: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    checked = time.monotonic()
    while time.monotonic() < deadline:
        if await probe(host, PORT, HEALTH_PATH):
            return True
        if time.monotonic() - checked > 1.0:  # an exited container never answers: stop waiting for it
            checked = time.monotonic()
            state = (await asyncio.to_thread(client.api.inspect_container, cid)).get("State") or {}
            if not state.get("Running"):
                return False
        await asyncio.sleep(HEALTH_POLL_S)
    return False


def _remove_quietly(client: Any, cid: str) -> None:
    with contextlib.suppress(Exception):
        client.api.remove_container(cid, force=True)
