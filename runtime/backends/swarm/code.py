"""Function code as Swarm configs: a source deploy that needs nothing installed runs the runtime image, no build.

A bundle that fits a Swarm config (under 1,000 KB, the Engine's limit) and whose requirements the runtime image
already holds (:func:`runtime.backends.containers.needs_image`) is stored once as a config named after its
digest. The function's service runs the plain runtime image with that config mounted read-only as
``BUNDLE_DIR/BUNDLE_FILE``; the replica verifies it with its per-function key and unpacks it into its tmpfs at start
(:mod:`runtime.codesign`, ``STOKER_UNPACK_BUNDLE``), exactly as on the docker backend. Swarm's raft store carries the
config to every node, so such a deploy needs no image build and no registry; the warm pool
(:mod:`runtime.backends.swarm.pool`) reads the same config to specialise a generic replica. Any other source deploy
is built into an image as before.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runtime import codesign
from runtime.backends.containers import BUNDLE_DIR, BUNDLE_FILE, FUNCTION, NAMESPACE, needs_image
from runtime.backends.swarm.config import CODE, PLATFORM, SwarmSettings
from stoker import bundle
from stoker.spec import FunctionDeployment

MAX_CONFIG_BYTES = 1_000_000  # the Engine refuses configs of 1,024,000 bytes or more


@dataclass(frozen=True)
class SwarmCode:
    """Where a function's code comes from when it is not in its image."""

    config: str  # the config's name
    config_id: str
    env: dict[str, str] = field(default_factory=dict)  # codesign variables (no UNPACK_VAR: see service_env)

    def reference(self, uid: str, gid: str) -> dict[str, Any]:
        """The ContainerSpec ``Configs`` entry that mounts it read-only for the replica's user."""
        return {
            "ConfigID": self.config_id,
            "ConfigName": self.config,
            "File": {"Name": f"{BUNDLE_DIR}/{BUNDLE_FILE}", "UID": uid, "GID": gid, "Mode": 0o444},
        }

    def service_env(self) -> dict[str, str]:
        """The variables of a replica started on the runtime image with this code mounted."""
        return {**self.env, codesign.UNPACK_VAR: "1"}


def runs_without_image(data: bytes) -> bool:
    """Whether a source bundle can run on the runtime image from a config (else it is built into an image)."""
    return len(data) < MAX_CONFIG_BYTES and not needs_image(data)


def config_name(settings: SwarmSettings, data: bytes) -> str:
    return f"{settings.platform}-code-{bundle.digest(data)[:24]}"


def store(api: Any, settings: SwarmSettings, platform_key: bytes, dep: FunctionDeployment, data: bytes) -> SwarmCode:
    """The config holding ``data`` (created when missing: one per distinct bundle) and the replica's variables."""
    import docker.errors

    name = config_name(settings, data)
    found = api.configs(filters={"name": name})
    exact = [c for c in found if c.get("Spec", {}).get("Name") == name]
    if exact:
        config_id = str(exact[0]["ID"])
    else:
        labels = {PLATFORM: settings.platform, CODE: "1", FUNCTION: dep.service, NAMESPACE: dep.namespace}
        try:
            config_id = str(api.create_config(name, data, labels=labels)["ID"])
        except docker.errors.APIError as exc:
            if "already exists" not in str(exc):  # another gateway stored the same bundle just now
                raise
            config_id = str(api.inspect_config(name)["ID"])
    env = codesign.replica_env_for_bytes(platform_key, dep.namespace, dep.service, data, f"{BUNDLE_DIR}/{BUNDLE_FILE}")
    return SwarmCode(name, config_id, env)


def read(api: Any, name: str) -> bytes:
    """A stored bundle's bytes (configs, unlike secrets, can be read back through the API)."""
    return base64.b64decode(api.inspect_config(name)["Spec"]["Data"])


def prune(api: Any, settings: SwarmSettings, in_use: set[str], now: float, min_age_s: float = 600.0) -> None:
    """Remove this platform's code configs that no service names any more. The Engine refuses to remove a config a
    service still mounts; a config younger than ``min_age_s`` is kept too, since a deploy in another gateway may
    have stored it and not yet created its service (``now``: epoch seconds)."""
    for config in api.configs(filters={"label": [f"{PLATFORM}={settings.platform}", f"{CODE}=1"]}):
        name = config.get("Spec", {}).get("Name", "")
        if not name or name in in_use or now - created_at(config) < min_age_s:
            continue
        with contextlib.suppress(Exception):
            api.remove_config(config["ID"])


def created_at(obj: dict[str, Any]) -> float:
    """An Engine object's CreatedAt as epoch seconds (0 when missing or unreadable: old enough)."""
    raw = str(obj.get("CreatedAt") or "")[:19]
    try:
        return datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return 0.0
