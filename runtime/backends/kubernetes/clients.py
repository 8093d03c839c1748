"""The Kubernetes API clients the backend calls, behind one small seam (the tests put an in-memory fake in their
place: tests/fakes/kubernetes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stoker.errors import BackendUnavailable


@dataclass
class KubeClients:
    """The parts of the official client the backend calls (the tests put an in-memory fake in their place)."""

    apps: Any  # kubernetes.client.AppsV1Api
    core: Any  # kubernetes.client.CoreV1Api
    discovery: Any  # kubernetes.client.DiscoveryV1Api
    to_dict: Callable[[Any], Any]  # ApiClient.sanitize_for_serialization: any model -> its JSON form
    watch: Callable[[], Any]  # kubernetes.watch.Watch

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One blocking API call off the loop; the answer in its JSON form."""
        return self.to_dict(await asyncio.to_thread(fn, *args, **kwargs))

    @classmethod
    def connect(cls) -> KubeClients:
        """Clients for the cluster this process runs in (service account), else the current kubeconfig context."""
        from kubernetes import client, config, watch

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            try:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            except (config.ConfigException, OSError) as exc:
                raise BackendUnavailable(
                    f"kubernetes: no in-cluster service account and no kubeconfig: {exc}"
                ) from None
        api = client.ApiClient()
        return cls(
            client.AppsV1Api(api),
            client.CoreV1Api(api),
            client.DiscoveryV1Api(api),
            api.sanitize_for_serialization,
            watch.Watch,
        )


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a failed API call (None when it is not an API error)."""
    return getattr(exc, "status", None)
