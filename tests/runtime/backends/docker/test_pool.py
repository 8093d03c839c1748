"""Generic containers of the docker backend's warm pool, on the real engine: hardened like replicas, the one-time
key in no environment, and a specialisation request not signed with that key refused."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from builder.base import ensure_base_image
from runtime.backends import pool
from runtime.backends.containers import DockerSettings
from runtime.backends.docker import network as docker_network
from runtime.backends.docker.pool import ContainerStarter
from stoker import bundle
from tests.platform_fixture import FUNCTIONS

pytestmark = pytest.mark.slow


def test_generic_container_is_hardened_keeps_its_key_out_of_sight_and_refuses_a_foreign_signature(
    docker_engine: Any,
) -> None:
    base = ensure_base_image(docker_engine, "stoker/runtime", out=lambda _: None).ref
    owner = f"pooltest{uuid.uuid4().hex[:6]}"
    settings = DockerSettings(network=docker_network.default_name(owner))
    network = docker_engine.networks.create(settings.network, **docker_network.create_options(owner))

    async def scenario() -> None:
        starter = ContainerStarter(docker_engine, settings, lambda: base, "pooltest", 256 * 1024 * 1024)
        generic = await starter()
        try:
            info = docker_engine.api.inspect_container(generic.cid)
            host = info["HostConfig"]
            assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["Memory"] == 256 * 1024 * 1024
            assert info["Config"]["User"] == "10001:10001"
            env = "\n".join(info["Config"]["Env"])
            assert generic.key.hex() not in env and "STOKER_POOL_KEY_FD=0" in env
            code = bundle.pack(FUNCTIONS / "hello")
            forged = await pool.specialise(generic.host, 8080, pool.new_key(), {}, code, 30)
            assert "403" in forged
            assert await generic.specialise({"STOKER_FUNCTION_NAME": "hello"}, code) == ""
            again = await generic.specialise({}, code)  # the key was used once and wiped
            assert "409" in again
        finally:
            await generic.discard()

    try:
        asyncio.run(scenario())
    finally:
        network.remove()
