"""``/system/secrets`` on Kubernetes: each secret is a Kubernetes Secret in the functions namespace.

A secret named NAME holds one key, NAME (as ``faas-cli secret create`` makes them), so a function that lists it
reads ``/var/openfaas/secrets/NAME`` (see :func:`runtime.backends.kubernetes.objects.deployment`). Values never pass
through the gateway's disk or environment. The calls are synchronous, like the :class:`SecretStore` interface;
they are rare management calls of one round trip each.
"""

from __future__ import annotations

import base64
from typing import Any

from runtime.backends.kubernetes.clients import refusal
from runtime.backends.kubernetes.objects import MANAGED_BY
from runtime.backends.secrets import check_secret
from stoker.errors import Conflict, InvalidRequest, NotFound


def secret(name: str, namespace: str, value: bytes) -> dict[str, Any]:
    """The v1 Secret object of one function secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)},
        "type": "Opaque",
        "data": {name: base64.b64encode(value).decode()},
    }


class KubeSecretStore:
    """A :class:`runtime.backends.secrets.SecretStore` over the Secrets of one namespace."""

    def __init__(self, core: Any, to_dict: Any, namespace: str) -> None:
        self.core = core
        self.to_dict = to_dict
        self.namespace = namespace

    def _scope(self, namespace: str) -> None:
        if namespace != self.namespace:
            raise InvalidRequest(
                f"this gateway keeps secrets in namespace {self.namespace!r} only (STOKER_K8S_NAMESPACE)"
            )

    def names(self, namespace: str) -> list[str]:
        self._scope(namespace)
        items = self.to_dict(self.core.list_namespaced_secret(namespace)).get("items") or []
        # Opaque only: service account tokens, TLS and registry credentials are not function secrets.
        return sorted(s["metadata"]["name"] for s in items if s.get("type", "Opaque") == "Opaque")

    def set(self, name: str, namespace: str, value: bytes, create: bool) -> None:
        check_secret(name, value)
        self._scope(namespace)
        body = secret(name, namespace, value)
        try:
            if create:
                self.core.create_namespaced_secret(namespace, body)
            else:
                self.core.replace_namespaced_secret(name, namespace, body)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 409:
                raise Conflict(f"secret {name!r} already exists in {namespace!r}; use PUT to update it") from None
            if status == 404:
                raise NotFound(f"secret {name!r} not found in namespace {namespace!r}") from None
            error = refusal(exc, f"secret {name!r}")
            if error is not None:
                raise error from None
            raise

    def delete(self, name: str, namespace: str) -> None:
        check_secret(name)
        self._scope(namespace)
        try:
            self.core.delete_namespaced_secret(name, namespace)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                raise NotFound(f"secret {name!r} not found in namespace {namespace!r}") from None
            raise

    def missing(self, names: list[str], namespace: str) -> list[str]:
        if not names:
            return []
        self._scope(namespace)
        existing = set(self.names(namespace))
        return [name for name in names if name not in existing]
