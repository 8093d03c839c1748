"""The Kubernetes warm pool, API part: the pool pods as this process sees them (watched), claiming one for a function
(any gateway, or the controller, when it scales a function up), and tending the pool (the one process that
autoscales, once a tick). What the objects are and what tending decides is in :mod:`runtime.backends.kubernetes.pool`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from typing import Any, Protocol

from runtime import codesign
from runtime.backends import pool
from runtime.backends.base import Endpoint
from runtime.backends.kubernetes import code as k8s_code
from runtime.backends.kubernetes import pool as kp
from runtime.backends.kubernetes.clients import KubeClients
from runtime.backends.kubernetes.clients import status_of as _status
from runtime.backends.kubernetes.objects import CODE_LABEL
from runtime.backends.kubernetes.settings import KubeSettings
from stoker import bundle

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
SPECIALISE_TIMEOUT_S = 20.0
SECRET_SWEEP_S = 60.0  # how often tending lists the pool Secrets to find orphans
PENDING_S = 60.0  # a pod created but not yet seen through the watch counts as in the pool this long
_BUNDLES_KEPT = 8  # at most 1 MB each


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class PoolHost(Protocol):
    """What the pool needs of the backend that holds it."""

    @property
    def clients(self) -> KubeClients: ...

    namespace: str
    key: bytes  # the platform key: pool keys and code signatures derive from it
    replica_port: int
    settings: KubeSettings


class WarmPods:
    """The pool pods (generic and claimed) of one namespace, mirrored from a watch; claims and tending."""

    def __init__(self, backend: PoolHost) -> None:
        self.backend = backend
        self.pods: dict[str, Obj] = {}
        self._bundles: OrderedDict[str, bytes] = OrderedDict()  # code ConfigMap -> verified bundle
        self._pending: dict[str, float] = {}  # created here, not seen yet -> when
        self._swept = float("-inf")
        self.claimed = 0  # claims that served (for tests and metrics)

    # --- the mirror (loop only) ----------------------------------------------------------------------------
    def reset(self, items: list[Obj]) -> set[str]:
        """Replace the view; return the functions whose bridges may have changed."""
        before = {kp.function_of(p) for p in self.pods.values()}
        self.pods = {p["metadata"]["name"]: p for p in items}
        return {f for f in before | {kp.function_of(p) for p in items} if f}

    def on_event(self, kind: str, obj: Obj) -> set[str]:
        name = obj["metadata"]["name"]
        old = self.pods.pop(name, None)
        if kind != "DELETED":
            self.pods[name] = obj
            self._pending.pop(name, None)
        return {f for f in (kp.function_of(old) if old else "", kp.function_of(obj)) if f}

    def _see(self, obj: Obj) -> None:
        """A newer state of a pod from an API answer (the watch brings it too, maybe later)."""
        name = obj["metadata"]["name"]
        current = self.pods.get(name)
        if current is not None and _rv(obj) > _rv(current):
            self.pods[name] = obj

    def ready(self) -> int:
        """Generic pods started and waiting for a function."""
        return sum(1 for p in self.pods.values() if kp.state(p) == kp.GENERIC and kp.started(p))

    def serving(self, name: str) -> bool:
        """Whether the pool pod ``name`` still exists and is not stopping."""
        p = self.pods.get(name)
        return p is not None and not kp.terminating(p)

    def bridges(self, function: str) -> list[str]:
        return [n for n, p in self.pods.items() if kp.state(p) == kp.CLAIMED and kp.function_of(p) == function]

    # --- claiming ------------------------------------------------------------------------------------------
    async def claim(self, deployment: Obj) -> Endpoint | None:
        """Take a started generic pod for the function of ``deployment`` and specialise it; its Endpoint, or None
        when the function cannot use the pool, none is free, or specialising failed (that pod is deleted)."""
        b = self.backend
        target = kp.target(deployment, b.settings)
        if target is None:
            return None
        candidates = [p for p in self.pods.values() if kp.state(p) == kp.GENERIC and kp.started(p)]
        if not candidates:
            return None
        code = await self._bundle(target)
        if code is None:
            return None
        candidates.sort(key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        for candidate in candidates:
            name = candidate["metadata"]["name"]
            seen = self.pods.get(name)
            if seen is None or kp.state(seen) != kp.GENERIC:
                continue  # taken or gone while we were reading the code
            try:
                claimed: Obj = await b.clients.call(
                    b.clients.core.patch_namespaced_pod,
                    name,
                    b.namespace,
                    kp.claim_patch(str(seen["metadata"]["resourceVersion"]), target),
                )
            except Exception as exc:
                if _status(exc) in (404, 409):  # another gateway claimed it first, or it is gone: the next one
                    continue
                raise
            self._see(claimed)
            host = str((claimed.get("status") or {}).get("podIP") or "")
            key = pool.replica_key(b.key, name)
            problem = await pool.specialise(host, b.replica_port, key, target.env, code, SPECIALISE_TIMEOUT_S)
            if problem:
                logger.warning("kubernetes warm pool: %s for %s: %s; deleting it", name, target.function, problem)
                await self.delete(name)
                return None
            self.claimed += 1
            return Endpoint(name, host, b.replica_port)
        return None

    async def _bundle(self, target: kp.Target) -> bytes | None:
        """The function's bundle from its ConfigMap (cached by name: the name is the content), checked against
        the signature its replicas check, with this process's platform key."""
        data = self._bundles.get(target.configmap)
        if data is not None:
            self._bundles.move_to_end(target.configmap)
            return data
        b = self.backend
        try:
            obj = await b.clients.call(b.clients.core.read_namespaced_config_map, target.configmap, b.namespace)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise
        data = k8s_code.bundle_of(obj)
        key = codesign.function_key(b.key, b.namespace, target.function)
        expected = target.env.get(codesign.SIGNATURE_VAR, "")
        if data is None or not hmac.compare_digest(bundle.sign(key, data), expected):
            logger.error(
                "kubernetes warm pool: the code of %s (%s) does not match its signature: not claiming (do every "
                "gateway and the controller share one platform key, STOKER_PLATFORM_KEY_FILE?)",
                target.function,
                target.configmap,
            )
            return None
        self._bundles[target.configmap] = data
        while len(self._bundles) > _BUNDLES_KEPT:
            self._bundles.popitem(last=False)
        return data

    # --- tending -------------------------------------------------------------------------------------------
    async def tend(self, functions: dict[str, kp.Function], size: int, now: float, code_in_use: set[str]) -> None:
        """Delete dead pool pods and retired bridges, refill to ``size``, and now and then delete orphaned keys and
        code ConfigMaps no Deployment names any more (``code_in_use``: those the Deployments name)."""
        b = self.backend
        core = b.clients.core
        secrets: list[Obj] | None = None
        if now - self._swept >= SECRET_SWEEP_S:
            listed = await b.clients.call(core.list_namespaced_secret, b.namespace, label_selector=kp.POOL_LABEL)
            secrets = list(listed.get("items") or [])
            self._swept = now
            code = await b.clients.call(core.list_namespaced_config_map, b.namespace, label_selector=CODE_LABEL)
            for name in k8s_code.stale(list(code.get("items") or []), code_in_use, now):
                logger.info("kubernetes warm pool: deleting code ConfigMap %s: no Deployment uses it", name)
                await self._ignore_404(core.delete_namespaced_config_map, name)
        self._pending = {n: t for n, t in self._pending.items() if n not in self.pods and now - t < PENDING_S}
        plan = kp.plan(list(self.pods.values()), secrets, functions, size, now, len(self._pending))
        for name, why in plan.delete.items():
            logger.info("kubernetes warm pool: deleting %s: %s", name, why)
            await self.delete(name)
        for name in plan.orphans:
            await self._ignore_404(b.clients.core.delete_namespaced_secret, name)
        for _ in range(plan.create):
            await self._create(now)

    async def _create(self, now: float) -> None:
        b = self.backend
        core = b.clients.core
        name = kp.new_name()
        # The Secret first: a pod whose Secret is missing would wait for it.
        await b.clients.call(
            core.create_namespaced_secret, b.namespace, kp.secret(name, b.namespace, pool.replica_key(b.key, name))
        )
        try:
            await b.clients.call(core.create_namespaced_pod, b.namespace, kp.pod(name, b.namespace, b.settings))
        except BaseException:
            await self._ignore_404(core.delete_namespaced_secret, name)
            raise
        self._pending[name] = now

    async def delete(self, name: str) -> None:
        """Delete a pool pod (it drains: preStop, then SIGTERM) and its key."""
        core = self.backend.clients.core
        await self._ignore_404(core.delete_namespaced_pod, name)
        await self._ignore_404(core.delete_namespaced_secret, name)

    async def _ignore_404(self, call: Any, name: str) -> None:
        try:
            await asyncio.to_thread(call, name, self.backend.namespace)
        except Exception as exc:
            if _status(exc) != 404:
                raise
