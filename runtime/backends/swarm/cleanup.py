"""``stoker down`` on the Swarm backend (see runtime/backends/cleanup.py): the services (functions and warm pool
replicas), then, once their containers are gone, the secrets, code configs and network labelled with this platform's
name (``STOKER_SWARM_PLATFORM``). On Swarm a function and its secrets live in the swarm itself, so they go too:
``stoker deploy`` and ``stoker secret create`` make them again."""

from __future__ import annotations

import time
from typing import Any

from builder import engine
from builder.engine import engine_message
from runtime.backends.swarm.config import PLATFORM, SwarmSettings
from stoker.config import Config
from stoker.errors import BackendUnavailable

_TASKS_GONE_S = 60.0  # how long the removed services' containers may take to stop before their secrets are removed


def tear_down(config: Config) -> list[str]:
    import docker.errors

    settings = SwarmSettings.from_env()
    try:
        client = engine.connect()
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot clean up the swarm backend: {exc}") from None
    api = client.api
    label = {"label": f"{PLATFORM}={settings.platform}"}
    out: list[str] = []

    def ours(obj: dict[str, Any]) -> bool:  # never trust a filter with a removal
        return bool((obj.get("Spec", {}).get("Labels") or {}).get(PLATFORM) == settings.platform)

    try:
        names = set()
        for service in api.services(filters=label):
            if not ours(service):
                continue
            name = service["Spec"]["Name"]
            try:
                api.remove_service(service["ID"])
                names.add(name)
                out.append(f"removed service {name}")
            except docker.errors.NotFound:
                pass
        deadline = time.monotonic() + _TASKS_GONE_S
        while names and time.monotonic() < deadline:
            running = api.containers(all=True, filters={"label": "com.docker.swarm.service.name"})
            if not any(c["Labels"].get("com.docker.swarm.service.name") in names for c in running):
                break
            time.sleep(0.2)
        for kind, listing, remove in (
            ("secret", api.secrets, api.remove_secret),
            ("config", api.configs, api.remove_config),
        ):
            for obj in listing(filters=label):
                if not ours(obj):
                    continue
                try:
                    remove(obj["ID"])
                    out.append(f"removed {kind} {obj['Spec']['Name']}")
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:  # still mounted by a container slow to stop
                    out.append(f"kept {kind} {obj['Spec']['Name']}: {engine_message(exc)}")
        for network in api.networks(names=[settings.network]):
            if (network.get("Labels") or {}).get(PLATFORM) != settings.platform:
                continue  # made by `stoker install swarm` (the stack's own), or another platform's
            try:
                api.remove_network(network["Id"])
                out.append(f"removed network {settings.network}")
            except docker.errors.APIError as exc:
                out.append(f"kept network {settings.network}: {engine_message(exc)}")
    finally:
        client.close()
    return out


def built_images(config: Config) -> list[str]:
    """Function images on Swarm live in the registry they were pushed to; stoker removes none of them."""
    return []
