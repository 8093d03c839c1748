"""Source deploys on Kubernetes: the signed bundle in a ConfigMap, run by the runtime image. Pure, no API calls.

A bundle that needs nothing beyond the runtime image (:func:`needs_image`) and fits a ConfigMap is stored as
``binaryData["bundle.tar.gz"]`` of an immutable ConfigMap named by the function and the bundle's digest
(``<name>-code-<digest12>``), so an unchanged redeploy reuses it and each version has its own. The Deployment mounts
it read-only at :data:`BUNDLE_DIR` and gives the replica the variables of :func:`codesign.replica_env_for_bytes`
(the per-function key, never the platform key) plus ``STOKER_UNPACK_BUNDLE=1``: the replica verifies the bundle and
unpacks it into its emptyDir ``/tmp`` before it imports anything, exactly as with the docker backend's bundle volume.
"""

from __future__ import annotations

import base64
from typing import Any

from runtime import codesign
from runtime.backends.containers import BUNDLE_DIR, BUNDLE_FILE, needs_image
from runtime.backends.kubernetes.objects import CODE_LABEL, FUNCTION_LABEL, MANAGED_BY, Code
from runtime.backends.kubernetes.status import parse_time
from stoker import bundle
from stoker.errors import StokerError
from stoker.spec import FunctionDeployment

MAX_CONFIGMAP_BUNDLE_BYTES = 1_000_000  # a ConfigMap holds at most 1 MiB, metadata included
_BUILD = (
    "build an image with `stoker build`, push it to a registry the cluster can pull from, and deploy it with `image`"
)


def refusal(dep: FunctionDeployment, data: bytes, max_unpacked: int) -> str:
    """Why this bundle cannot run from a ConfigMap on the runtime image ("" when it can)."""
    try:
        bundle.check(data, max_unpacked, required=None)
    except StokerError as exc:
        return f"function {dep.service!r}: bad code bundle: {exc}"
    if len(data) > MAX_CONFIGMAP_BUNDLE_BYTES:
        return (
            f"function {dep.service!r}: its code bundle is {len(data):,} bytes, more than a ConfigMap holds "
            f"({MAX_CONFIGMAP_BUNDLE_BYTES:,}): {_BUILD}"
        )
    if needs_image(data):
        return f"function {dep.service!r}: its requirements.txt asks for packages the runtime image lacks: {_BUILD}"
    return ""


def configmap_name(dep: FunctionDeployment, data: bytes) -> str:
    return f"{dep.service}-code-{bundle.digest(data)[:12]}"


def code_for(platform_key: bytes, dep: FunctionDeployment, data: bytes) -> Code:
    """How the function's pods get this bundle: its ConfigMap and the variables to verify and unpack it."""
    path = f"{BUNDLE_DIR}/{BUNDLE_FILE}"
    env = codesign.replica_env_for_bytes(platform_key, dep.namespace, dep.service, data, path)
    env[codesign.UNPACK_VAR] = "1"
    return Code(configmap_name(dep, data), bundle.digest(data)[:12], env)


def configmap(dep: FunctionDeployment, data: bytes) -> dict[str, Any]:
    """The v1 ConfigMap holding one version of a function's signed bundle (immutable: its name is its content)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(dep, data),
            "namespace": dep.namespace,
            "labels": {**MANAGED_BY, FUNCTION_LABEL: dep.service, CODE_LABEL: bundle.digest(data)[:12]},
        },
        "immutable": True,
        "binaryData": {BUNDLE_FILE: base64.b64encode(data).decode()},
    }


STALE_AFTER_S = 3600.0


def stale(configmaps: list[dict[str, Any]], in_use: set[str], now: float, after_s: float = STALE_AFTER_S) -> list[str]:
    """The code ConfigMaps no Deployment names and older than ``after_s`` (``now``: epoch seconds). A gateway deletes
    an updated function's previous one once its rollout is over; these are what a gateway that died meanwhile
    left. The age keeps one that a deploy in another gateway just created, before its Deployment names it."""
    return [
        name
        for c in configmaps
        if (name := str((c.get("metadata") or {}).get("name") or ""))
        and name not in in_use
        and now - parse_time((c.get("metadata") or {}).get("creationTimestamp")) > after_s
    ]


def bundle_of(obj: dict[str, Any]) -> bytes | None:
    """The bundle in a code ConfigMap as the API returns it (None when it holds none)."""
    raw = (obj.get("binaryData") or {}).get(BUNDLE_FILE)
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return None
