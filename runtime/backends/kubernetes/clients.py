"""The Kubernetes API clients the backend calls, behind one small seam (the tests put an in-memory fake in their
place: tests/fakes/kubernetes.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stoker.errors import BackendUnavailable, InvalidRequest, StokerError


@dataclass
class KubeClients:
    """The parts of the official client the backend calls (the tests put an in-memory fake in their place)."""

    apps: Any  # kubernetes.client.AppsV1Api
    core: Any  # kubernetes.client.CoreV1Api
    discovery: Any  # kubernetes.client.DiscoveryV1Api
    to_dict: Callable[[Any], Any]  # ApiClient.sanitize_for_serialization: any model -> its JSON form
    watch: Callable[[], Any]  # kubernetes.watch.Watch

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One blocking API call off the loop; the answer in its JSON form. An invalid object (400, 422) or a call
        RBAC forbids (403) becomes the error to answer with, carrying the API server's message."""
        try:
            return self.to_dict(await asyncio.to_thread(fn, *args, **kwargs))
        except Exception as exc:
            what = getattr(fn, "__name__", "a call").replace("_namespaced_", " ").replace("_", " ")
            error = refusal(exc, what)
            if error is not None:
                raise error from None
            raise

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


def status_message(exc: BaseException) -> str:
    """What the API server said: the ``message`` of the Status body of a failed call, else the exception's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, (str, bytes)) and body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str) and message:
            return message
    return str(getattr(exc, "reason", None) or exc).strip()


def refusal(exc: BaseException, what: str) -> StokerError | None:
    """The error to answer with when the API server refused a call for a reason the user or operator must fix:
    400/422 (the object is invalid: the request) and 403 (RBAC: the gateway's service account may not). None for
    any other failure, which the caller handles (404, 409) or lets through."""
    status = status_of(exc)
    if status in (400, 422):
        return InvalidRequest(f"kubernetes refused {what}: {status_message(exc)}")
    if status == 403:
        return BackendUnavailable(
            f"kubernetes refused {what}: {status_message(exc)} (grant it in the gateway's Role: "
            "deploy/kubernetes/rbac.yaml)"
        )
    return None
