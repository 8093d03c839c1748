"""Created namespaces on Swarm: one Docker config each, so every gateway of the Swarm sees the same ones.

A config cannot change, so a namespace has versions, ``<platform>-ns-<digest of the name>-<n>`` (a config's name
is at most 64 characters), labelled with the platform, the
namespace and the version; saving creates the next version and then removes the older ones, and readers take the
newest. The config's data is the namespace's JSON (:class:`runtime.backends.namespaces.FunctionNamespace`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from typing import Any

from runtime.backends.namespaces import FunctionNamespace, implicit
from runtime.backends.swarm.config import PLATFORM

NAMESPACE = "com.stoker.namespace"
NAMESPACE_VERSION = "com.stoker.namespace-version"


class SwarmNamespaceStore:
    """A :class:`runtime.backends.namespaces.NamespaceStore` over the Docker configs of one platform."""

    def __init__(self, api: Any, platform: str) -> None:
        self.api = api  # docker.APIClient
        self.platform = platform

    def _versions(self, name: str | None) -> list[dict[str, Any]]:
        wanted = [f"{PLATFORM}={self.platform}", *([f"{NAMESPACE}={name}"] if name else [NAMESPACE])]
        found = self.api.configs(filters={"label": wanted})
        return sorted(found, key=lambda c: int(c["Spec"]["Labels"].get(NAMESPACE_VERSION, "0")))

    def get(self, name: str) -> FunctionNamespace | None:
        versions = self._versions(name)
        if not versions:
            return None
        try:
            data = json.loads(base64.b64decode(versions[-1]["Spec"]["Data"]))
            return FunctionNamespace(name, dict(data.get("labels") or {}), dict(data.get("annotations") or {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            return implicit(name)

    def names(self) -> list[str]:
        return sorted({c["Spec"]["Labels"][NAMESPACE] for c in self._versions(None)})

    def save(self, namespace: FunctionNamespace) -> None:
        versions = self._versions(namespace.name)
        number = int(versions[-1]["Spec"]["Labels"][NAMESPACE_VERSION]) + 1 if versions else 1
        labels = {PLATFORM: self.platform, NAMESPACE: namespace.name, NAMESPACE_VERSION: str(number)}
        data = json.dumps(namespace.to_json(), sort_keys=True).encode()
        digest = hashlib.sha256(namespace.name.encode()).hexdigest()[:16]
        self.api.create_config(f"{self.platform}-ns-{digest}-{number}", data, labels=labels)
        for old in versions:
            self._remove_quietly(old["ID"])

    def delete(self, name: str) -> None:
        for version in self._versions(name):
            self._remove_quietly(version["ID"])

    def _remove_quietly(self, config_id: str) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.api.remove_config(config_id)
