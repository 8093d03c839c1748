"""``stoker down`` on the Swarm backend (see runtime/backends/cleanup.py): the services (functions and warm pool
replicas), then, once their containers are gone, the secrets, code configs and network labelled with this platform's
name (``STOKER_SWARM_PLATFORM``). On Swarm a function and its secrets live in the swarm itself, so they go too:
``stoker deploy`` and ``stoker secret create`` make them again."""

from __future__ import annotations

import contextlib
import time
from functools import partial
from typing import Any

from builder import engine
from runtime.backends.cleanup import removal
from runtime.backends.swarm.config import PLATFORM, SwarmSettings
from stoker.config import Config
from stoker.errors import BackendUnavailable

_TASKS_GONE_S = 60.0  # how long the removed services' containers may take to stop before their secrets are removed


def tear_down(config: Config) -> list[str]:
    settings = SwarmSettings.from_env()
    try:
        client = engine.connect()
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"cannot clean up the swarm backend: {exc}") from None
    api = client.api
    try:
        out = remove_platform(api, settings.platform)
        for network in api.networks(names=[settings.network]):
            if (network.get("Labels") or {}).get(PLATFORM) != settings.platform:
                continue  # made by `stoker install swarm` (the stack's own), or another platform's
            out += removal("network", settings.network, partial(api.remove_network, network["Id"]))
    finally:
        client.close()
    return out


def remove_platform(api: Any, platform: str, tasks_gone_s: float = _TASKS_GONE_S) -> list[str]:
    """Remove the services labelled with ``platform`` (functions and warm pool replicas), wait (up to
    ``tasks_gone_s``) for their containers to stop, then remove its secrets and code configs; one line each, as
    :func:`runtime.backends.cleanup.removal` (a secret still mounted by a container slow to stop is kept). The
    network is left to the caller. ``stoker down``, ``stoker uninstall --functions`` and the tests use it."""
    import docker.errors

    label = {"label": f"{PLATFORM}={platform}"}

    def ours(obj: dict[str, Any]) -> bool:  # never trust a filter with a removal
        return bool((obj.get("Spec", {}).get("Labels") or {}).get(PLATFORM) == platform)

    out: list[str] = []
    names = set()
    for service in api.services(filters=label):
        if not ours(service):
            continue
        name = service["Spec"]["Name"]
        with contextlib.suppress(docker.errors.NotFound):  # a service that cannot be removed stops the cleanup
            api.remove_service(service["ID"])
            names.add(name)
            out.append(f"removed service {name}")
    deadline = time.monotonic() + tasks_gone_s
    while names and time.monotonic() < deadline:
        running = api.containers(all=True, filters={"label": "com.docker.swarm.service.name"})
        if not any(c["Labels"].get("com.docker.swarm.service.name") in names for c in running):
            break
        time.sleep(0.2)
    kinds = (("secret", api.secrets, api.remove_secret), ("config", api.configs, api.remove_config))
    for kind, listing, remove in kinds:
        for obj in listing(filters=label):
            if ours(obj):
                out += removal(kind, obj["Spec"]["Name"], partial(remove, obj["ID"]))
    return out


def built_images(config: Config) -> list[str]:
    """Function images on Swarm live in the registry they were pushed to; stoker removes none of them."""
    return []
