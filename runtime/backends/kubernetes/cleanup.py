"""``stoker down`` on the Kubernetes backend (see runtime/backends/cleanup.py): in the platform's one functions
namespace (``STOKER_K8S_NAMESPACE``, to which the gateway's Role is scoped), every Deployment, Service, ConfigMap,
Secret and warm pool Pod labelled ``app.kubernetes.io/managed-by=stoker``. Objects without the label (made by hand, or
by ``stoker install``'s manifests) stay. On Kubernetes functions and their secrets live in the cluster, so they go
too: ``stoker deploy`` and ``stoker secret create`` make them again."""

from __future__ import annotations

import contextlib
from typing import Any

from runtime.backends.kubernetes.clients import KubeClients
from runtime.backends.kubernetes.objects import MANAGED_BY
from stoker.config import Config

SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


def tear_down(config: Config, clients: KubeClients | None = None) -> list[str]:
    clients = clients if clients is not None else KubeClients.connect()
    namespace = config.k8s_namespace
    out: list[str] = []
    for kind, api, plural in (
        ("deployment", clients.apps, "deployment"),
        ("service", clients.core, "service"),
        ("configmap", clients.core, "config_map"),
        ("secret", clients.core, "secret"),
        ("pod", clients.core, "pod"),
    ):
        listing = getattr(api, f"list_namespaced_{plural}")
        items = clients.to_dict(listing(namespace, label_selector=SELECTOR)).get("items") or []
        for obj in items:
            meta: dict[str, Any] = obj.get("metadata") or {}
            labels = meta.get("labels") or {}
            if any(labels.get(k) != v for k, v in MANAGED_BY.items()) or meta.get("namespace", namespace) != namespace:
                continue  # never trust a selector with a removal
            with contextlib.suppress(Exception):  # gone meanwhile (a pod its Deployment took along)
                getattr(api, f"delete_namespaced_{plural}")(meta["name"], namespace)
                out.append(f"removed {kind} {namespace}/{meta['name']}")
    return out


def built_images(config: Config) -> list[str]:
    """Function images on Kubernetes live in the registry they were pushed to; stoker removes none of them."""
    return []
