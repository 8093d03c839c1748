"""The Kubernetes backend: each function is a Deployment plus a Service in the functions namespace.

Everything the gateway knows comes from the API: functions from Deployments (the deployment spec is in an
annotation), ready replicas from EndpointSlices, both listed at start and then watched. So any number of gateway
replicas serve the same functions, and a restarted one knows everything at once. The gateway routes to pod IPs
directly (fewest requests in flight), not through the Service's virtual IP.

- deploy: create (or replace) the objects, then wait for a ready pod of the new version. A version that cannot
  start (crash loop, image pull failure, no ready pod in ``STOKER_K8S_DEPLOY_TIMEOUT_S``) fails with DeployFailed:
  a new function is deleted again, an update is rolled back to the previous Deployment (which never stopped serving:
  the rolling update keeps every old pod until a new one is ready).
- scale: the Deployment's scale subresource.
- remove: leave the routing table, wait for this gateway's calls in flight (bounded), then delete.
- Stopping pods keep serving for a few seconds (a preStop sleep), so every gateway has seen them leave the
  EndpointSlice before they stop accepting calls; the replica then drains its own calls on SIGTERM.

A function is an image (built with ``stoker build`` and pushed where the cluster pulls from) or source: a bundle that
needs nothing beyond the runtime image runs on that image from a ConfigMap (:mod:`.k8s_code`); the previous
version's ConfigMap goes once its pods are gone, and every one of them when the function is removed.

Warm pool (:mod:`.k8s_pool`, :mod:`.k8s_warm`): generic pool pods, watched by every gateway. Scaling a source
function up claims one (a conditional label patch, so two gateways never get the same pod), specialises it and
routes to it at once, as a bridge while the Deployment's own pod starts; ``tend_pool`` keeps the pool filled and
retires bridges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from typing import Any

from runtime import contract
from runtime.backends.base import Endpoint, FunctionRecord, FunctionTable, LogLine
from runtime.backends.kubernetes import code as k8s_code
from runtime.backends.kubernetes import objects
from runtime.backends.kubernetes import pool as k8s_pool
from runtime.backends.kubernetes.clients import KubeClients as KubeClients
from runtime.backends.kubernetes.clients import status_of as _status
from runtime.backends.kubernetes.logs import read_logs
from runtime.backends.kubernetes.secrets import KubeSecretStore
from runtime.backends.kubernetes.settings import KubeSettings
from runtime.backends.kubernetes.status import (
    Address,
    code_configmap,
    deployment_problem,
    desired_replicas,
    function_of,
    parse_time,
    rollout_complete,
    rollout_state,
    same_version,
    slice_addresses,
)
from runtime.backends.kubernetes.warm import WarmPods
from runtime.backends.kubernetes.watch import Obj, Watcher
from stoker.background import Background
from stoker.config import Config
from stoker.errors import BackendUnavailable, Conflict, DeployFailed, InvalidRequest, NotFound
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)

_FUNCTIONS = objects.FUNCTION_LABEL  # selects every function's Deployments and pods
_SLICES = "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io"
_REPLACE_TRIES = 5  # conflicts from status or scale changes retried before giving up
_PULL_GRACE_S = 30.0  # an image pull failing this long (at most half the deploy timeout) fails the deploy
_WATCH_LAG_S = 5.0  # a pod Kubernetes calls ready counts as deployed this long after, even if no slice showed it


class _Function:
    """One function as this gateway sees it: its record, and every Endpoint object it handed out (so a replica
    that flaps out of and back into readiness keeps its in-flight count)."""

    def __init__(self, record: FunctionRecord, obj: Obj) -> None:
        self.record = record
        self.obj = obj  # its Deployment as last seen
        self.by_instance: dict[str, Endpoint] = {}
        self.bridges: dict[str, Endpoint] = {}  # pool pods this gateway claimed, routed to until a slice lists them
        # resourceVersions the watch delivered: a write's answer the watch already passed is older than fn.obj
        # (resourceVersions are opaque: they may be compared for equality only).
        self.watched: deque[str] = deque(maxlen=64)


class KubernetesBackend(FunctionTable[_Function]):
    name = "kubernetes"

    def __init__(
        self,
        config: Config,
        key: bytes,
        clients: KubeClients | None = None,
        poll_s: float = 0.5,
        settings: KubeSettings | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.settings = settings if settings is not None else KubeSettings.from_env()
        self.namespace = config.k8s_namespace
        self.deploy_timeout_s = config.k8s_deploy_timeout_s
        self.poll_s = poll_s
        self._clients = clients
        self._functions: dict[tuple[str, str], _Function] = {}
        self._slices: dict[str, tuple[str, list[Address]]] = {}  # slice name -> (service, ready addresses)
        self._removing: set[tuple[str, str]] = set()
        self._watchers: list[Watcher] = []
        self._background = Background()
        self.replica_port = contract.PORT  # where pool pods listen (the tests run them on one loopback port)
        self.pool = WarmPods(self)

    @property
    def clients(self) -> KubeClients:
        if self._clients is None:
            self._clients = KubeClients.connect()
        return self._clients

    @property
    def secrets(self) -> KubeSecretStore:
        """Function secrets as Kubernetes Secrets in the functions namespace."""
        return KubeSecretStore(self.clients.core, self.clients.to_dict, self.namespace)

    def warm_replicas(self) -> int:
        """Generic pool pods started and waiting for a function (any gateway may claim them)."""
        return self.pool.ready()

    async def tend_pool(self, now: float | None = None) -> None:
        """Keep ``STOKER_POOL_SIZE`` generic pods, retire bridges whose function's own pods are ready, replace
        pool pods that failed (called once a tick by the one process that autoscales)."""
        functions = {key[0]: k8s_pool.function(fn.obj) for key, fn in self._functions.items()}
        in_use = {code_configmap(fn.obj) for fn in self._functions.values()}
        await self.pool.tend(functions, self.config.pool_size, time.time() if now is None else now, in_use)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        self._background.spawn(work)

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        c = self.clients
        deployments = Watcher(
            c.apps.list_namespaced_deployment, self.namespace, _FUNCTIONS, c.to_dict, c.watch,
            self._reset_deployments, self._on_deployment,
        )  # fmt: skip
        slices = Watcher(
            c.discovery.list_namespaced_endpoint_slice, self.namespace, _SLICES, c.to_dict, c.watch,
            self._reset_slices, self._on_slice,
        )  # fmt: skip
        pool_pods = Watcher(
            c.core.list_namespaced_pod, self.namespace, k8s_pool.POOL_LABEL, c.to_dict, c.watch,
            self._reset_pool, self._on_pool_pod,
        )  # fmt: skip
        try:
            # Slices first: when the functions appear, their addresses are known already.
            for watcher in (slices, pool_pods, deployments):
                items, rv = await asyncio.to_thread(watcher.list)
                watcher.on_reset(items)
                watcher.start(rv)
                self._watchers.append(watcher)
        except Exception as exc:
            await self.close()
            if _status(exc) is None and not isinstance(exc, OSError):
                raise
            raise BackendUnavailable(f"kubernetes: cannot list namespace {self.namespace!r}: {exc}") from None

    async def close(self) -> None:
        """Stop watching. The functions keep running: the cluster, not this process, owns them."""
        await self._background.cancel_and_wait()
        for watcher in self._watchers:
            watcher.stop()
        for watcher in self._watchers:
            await asyncio.to_thread(watcher.join, 1.0)
        self._watchers.clear()

    # --- the mirror of the cluster (called on the loop only) -----------------------------------------------
    def _reset_deployments(self, items: list[Obj]) -> None:
        seen = set()
        for item in items:
            key = self._on_deployment("ADDED", item)
            if key is not None:
                seen.add(key)
        for key in [k for k in self._functions if k not in seen]:
            del self._functions[key]

    def _on_deployment(self, kind: str, obj: Obj, written: bool = False) -> tuple[str, str] | None:
        """A Deployment as the watch delivers it, or (``written``) as a write of this gateway answered it."""
        dep = function_of(obj)
        if dep is None:
            return None
        key = (dep.service, dep.namespace)
        if kind == "DELETED":
            self._functions.pop(key, None)
            return None
        if key in self._removing:
            return None
        fn = self._functions.get(key)
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if written and fn is not None and rv in fn.watched:
            return key  # the watch is past this answer already: fn.obj is newer (status included)
        created = parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or time.time()
        if fn is None:
            fn = self._functions[key] = _Function(FunctionRecord(dep, created, desired_replicas(obj)), obj)
        else:
            fn.record.deployment, fn.record.replicas, fn.record.created_at = dep, desired_replicas(obj), created
            fn.obj = obj
        if not written:
            fn.watched.append(rv)
        fn.record.message = deployment_problem(obj)
        self._refresh(key)
        return key

    def _reset_slices(self, items: list[Obj]) -> None:
        self._slices = {}
        for item in items:
            self._slices[(item.get("metadata") or {}).get("name", "")] = slice_addresses(item)
        for key in self._functions:
            self._refresh(key)

    def _on_slice(self, kind: str, obj: Obj) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        old = self._slices.pop(name, None)
        if kind != "DELETED":
            self._slices[name] = slice_addresses(obj)
        services = {entry[0] for entry in (old, self._slices.get(name)) if entry is not None}
        for service in services:
            self._refresh((service, self.namespace))

    def _reset_pool(self, items: list[Obj]) -> None:
        for function in self.pool.reset(items):
            self._refresh((function, self.namespace))

    def _on_pool_pod(self, kind: str, obj: Obj) -> None:
        for function in self.pool.on_event(kind, obj):
            self._refresh((function, self.namespace))

    def _refresh(self, key: tuple[str, str]) -> None:
        """Rebuild a function's routing list from the slices, in place, reusing its Endpoint objects; with the
        pool pods this gateway claimed until a slice lists them (or they stop)."""
        fn = self._functions.get(key)
        if fn is None:
            return
        addresses = {a.instance: a for service, found in self._slices.values() if service == key[0] for a in found}
        in_slices = {a.instance for _, found in self._slices.values() for a in found}
        for instance, bridge in list(fn.bridges.items()):
            if instance in in_slices or not self.pool.serving(instance):
                del fn.bridges[instance]  # from now on its readiness decides, as for any pod
            else:
                addresses[instance] = Address(instance, bridge.host, bridge.port)
                fn.by_instance.setdefault(instance, bridge)
        endpoints: list[Endpoint] = []
        for instance, a in sorted(addresses.items()):
            endpoint = fn.by_instance.get(instance)
            if endpoint is None or (endpoint.host, endpoint.port) != (a.host, a.port):
                endpoint = fn.by_instance[instance] = Endpoint(instance, a.host, a.port)
            endpoints.append(endpoint)
        fn.record.endpoints[:] = endpoints
        fn.by_instance = {i: e for i, e in fn.by_instance.items() if i in addresses or e.inflight > 0}

    # --- reads ---------------------------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return [self.namespace]

    async def logs(
        self, name: str, namespace: str, tail: int | None, since: float | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        self._known(name, namespace)
        async for line in read_logs(self, name, namespace, tail, since, follow):
            yield line

    # --- changes -------------------------------------------------------------------------------------------
    async def deploy(self, deployment: FunctionDeployment, bundle: bytes | None) -> None:
        dep = deployment
        if dep.namespace != self.namespace:
            raise InvalidRequest(
                f"function {dep.service!r}: this gateway deploys to namespace {self.namespace!r} only "
                f"(STOKER_K8S_NAMESPACE), not {dep.namespace!r}"
            )
        code: objects.Code | None = None
        if bundle is not None:
            problem = k8s_code.refusal(dep, bundle, self.config.max_bundle_bytes)
            if problem:
                raise InvalidRequest(problem)
            dep = replace(dep, image=self.settings.runtime_image)  # the runtime image unpacks and serves the bundle
            code = k8s_code.code_for(self.key, dep, bundle)
        elif not dep.image:
            raise InvalidRequest(
                f"function {dep.service!r}: no image and no code: deploy a source folder, or build an image with "
                "`stoker build`, push it to a registry the cluster can pull from, and deploy it with `image`"
            )
        objects.deployment(dep, 1, code)  # invalid labels, quantities, constraints: refused before anything changes
        missing = await asyncio.to_thread(self.secrets.missing, dep.secrets, dep.namespace)
        if missing:
            raise InvalidRequest(
                f"function {dep.service!r} needs secret(s) {', '.join(missing)} that do not exist in "
                f"{dep.namespace!r} (create them with 'stoker secret create')"
            )
        old = await self._read(dep.service)
        if bundle is not None:
            await self._store_code(dep, bundle)
        if old is None:
            await self._create(dep, code)
        else:
            await self._update(dep, old, code)

    async def _store_code(self, dep: FunctionDeployment, data: bytes) -> None:
        """The ConfigMap of this bundle (named by its content: one that exists already holds the same bytes)."""
        try:
            await self.clients.call(
                self.clients.core.create_namespaced_config_map, self.namespace, k8s_code.configmap(dep, data)
            )
        except Exception as exc:
            if _status(exc) != 409:
                raise

    async def _drop_code(self, configmap: str) -> None:
        try:
            await asyncio.to_thread(self.clients.core.delete_namespaced_config_map, configmap, self.namespace)
        except Exception as exc:
            if _status(exc) != 404:
                raise

    async def _drop_code_after_rollout(self, name: str, configmap: str) -> None:
        """Delete an updated function's previous ConfigMap once no pod of the previous version is left (its pods
        unpacked it at start; a pod of it that restarted would need it). Left in place if the rollout does not
        finish in time: removing the function deletes it at the latest."""
        deadline = time.monotonic() + 2 * self.deploy_timeout_s + 60
        while time.monotonic() < deadline:
            fn = self._functions.get((name, self.namespace))
            if fn is None or code_configmap(fn.obj) == configmap:
                return  # removed (with its ConfigMaps), or its code is back to that bundle
            if rollout_complete(fn.obj):
                await self._drop_code(configmap)
                return
            await asyncio.sleep(self.poll_s)

    async def _read(self, name: str) -> Obj | None:
        try:
            result: Obj = await self.clients.call(self.clients.apps.read_namespaced_deployment, name, self.namespace)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise
        return result

    async def _create(self, dep: FunctionDeployment, code: objects.Code | None) -> None:
        c = self.clients
        replicas = max(dep.settings.min_replicas, 1)
        await self._apply_service(dep)
        try:
            created = await self.clients.call(
                c.apps.create_namespaced_deployment, self.namespace, objects.deployment(dep, replicas, code)
            )
        except Exception as exc:
            if _status(exc) == 409:
                raise Conflict(f"function {dep.service!r} is being created by someone else; retry") from None
            with contextlib.suppress(Exception):  # refused: leave nothing behind (the Service was ours)
                await asyncio.to_thread(c.core.delete_namespaced_service, dep.service, self.namespace)
            raise
        self._on_deployment("ADDED", created, written=True)
        failure = await self._wait_ready(dep, code)
        if failure:
            self._removing.add((dep.service, dep.namespace))
            self._functions.pop((dep.service, dep.namespace), None)
            try:
                await self._delete(dep.service)
            finally:
                self._removing.discard((dep.service, dep.namespace))
            raise DeployFailed(f"function {dep.service!r} failed to start: {failure}")

    async def _replace(self, name: str, current: Obj, body: Callable[[Obj], Obj]) -> Obj | None:
        """Replace a Deployment read as ``current`` with ``body(current)``, with its resourceVersion as a
        precondition, so a change made meanwhile by someone else is never silently overwritten. On 409 it reads
        again: a change of status or scale only (the controller's, the autoscaler's) is retried; a new version
        (another gateway's deploy) gives None."""
        apps = self.clients.apps
        for _ in range(_REPLACE_TRIES):
            new = body(current)
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                result: Obj = await self.clients.call(apps.replace_namespaced_deployment, name, self.namespace, new)
                return result
            except Exception as exc:
                if _status(exc) != 409:
                    raise
            latest = await self._read(name)
            if latest is None or not same_version(latest, current):
                return None
            current = latest
        return None

    async def _update(self, dep: FunctionDeployment, old: Obj, code: objects.Code | None) -> None:
        settings = dep.settings
        old_code = code_configmap(old)
        new_code = code.configmap if code is not None else ""

        def new_version(current: Obj) -> Obj:
            replicas = min(max(desired_replicas(current), settings.min_replicas, 1), settings.max_replicas)
            return objects.deployment(dep, replicas, code)

        updated = await self._replace(dep.service, old, new_version)
        if updated is None:
            raise Conflict(f"function {dep.service!r} was changed by someone else during this deploy; retry")
        await self._apply_service(dep)
        self._on_deployment("MODIFIED", updated, written=True)
        failure = await self._wait_ready(dep, code)
        if failure:
            # The old pods never stopped (maxUnavailable 0); put their Deployment back as it was (at today's scale),
            # unless someone deployed another version meanwhile.
            def previous(current: Obj) -> Obj:
                meta = {k: v for k, v in old["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
                spec = {**old["spec"], "replicas": desired_replicas(current)}
                return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": dict(meta), "spec": spec}

            restored = await self._replace(dep.service, updated, previous)
            if restored is not None:
                self._on_deployment("MODIFIED", restored, written=True)
            if new_code and new_code != old_code:  # the old version keeps its own
                await self._drop_code(new_code)
            raise DeployFailed(
                f"function {dep.service!r} failed to start; the previous version keeps serving: {failure}"
            )
        if old_code and old_code != new_code:
            self._in_background(self._drop_code_after_rollout(dep.service, old_code))

    async def _apply_service(self, dep: FunctionDeployment) -> None:
        core = self.clients.core
        body = objects.service(dep)
        try:
            await self.clients.call(core.create_namespaced_service, self.namespace, body)
        except Exception as exc:
            if _status(exc) != 409:
                raise
            await self.clients.call(core.patch_namespaced_service, dep.service, self.namespace, body)

    async def _wait_ready(self, dep: FunctionDeployment, code: objects.Code | None) -> str:
        """ "" once a pod of this version is ready (and, normally, routed to); else why not."""
        selector = f"{_FUNCTIONS}={dep.service},{objects.VERSION_LABEL}={objects.version(dep, code)}"
        deadline = time.monotonic() + self.deploy_timeout_s
        ready_since: float | None = None
        pull_since: float | None = None  # an image pull failing since (the kubelet retries: it may recover)
        progress = ""
        while True:
            pods = (
                await self.clients.call(self.clients.core.list_namespaced_pod, self.namespace, label_selector=selector)
            )["items"]
            state = rollout_state([p for p in pods if k8s_pool.POOL_LABEL not in p["metadata"].get("labels", {})])
            fn = self._functions.get((dep.service, dep.namespace))
            routed = fn is not None and any(e.instance in state.ready for e in fn.record.endpoints)
            if routed or (ready_since is not None and time.monotonic() - ready_since > _WATCH_LAG_S):
                return ""
            if state.ready and ready_since is None:
                ready_since = time.monotonic()
            problem = deployment_problem(fn.obj) if fn is not None else ""
            if problem and not state.ready:
                return problem  # pods cannot be created (quota), or the rollout is past its progress deadline
            if state.failure and not state.ready:
                pull_since = pull_since if pull_since is not None else time.monotonic()
                if not state.retrying or time.monotonic() - pull_since >= self._pull_grace_s():
                    return state.failure + await self._last_words(state.failure.partition(":")[0], dep.service)
            else:
                pull_since = None
            progress = state.progress or progress
            if time.monotonic() >= deadline:
                return f"no replica became ready within {self.deploy_timeout_s:g}s" + (
                    f" ({progress})" if progress else ""
                )
            await asyncio.sleep(self.poll_s)

    def _pull_grace_s(self) -> float:
        return min(_PULL_GRACE_S, self.deploy_timeout_s / 2)

    async def _last_words(self, pod: str, container: str) -> str:
        """The end of a crashed container's log (an import error says which line), or nothing if unavailable."""
        try:
            text = await asyncio.to_thread(
                self.clients.core.read_namespaced_pod_log,
                pod,
                self.namespace,
                container=container,
                previous=True,
                tail_lines=10,
            )
        except Exception:  # the failure itself is reported either way
            return ""
        return f"\n{text.strip()}" if isinstance(text, str) and text.strip() else ""

    async def remove(self, name: str, namespace: str) -> None:
        key = (name, namespace)
        fn = self._functions.get(key)
        if fn is None and (namespace != self.namespace or await self._read(name) is None):
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        self._removing.add(key)
        try:
            self._functions.pop(key, None)
            if fn is not None:
                # Out of the routing table first, then let this gateway's calls in flight finish (bounded).
                draining = list(fn.by_instance.values())
                deadline = time.monotonic() + self.config.drain_timeout_s
                while any(e.inflight for e in draining) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            await self._delete(name)
            for bridge in self.pool.bridges(name):  # they would serve the old code to a function of that name
                await self.pool.delete(bridge)
        finally:
            self._removing.discard(key)

    async def _delete(self, name: str) -> None:
        c = self.clients
        for call in (c.apps.delete_namespaced_deployment, c.core.delete_namespaced_service):
            try:
                await asyncio.to_thread(call, name, self.namespace)
            except Exception as exc:
                if _status(exc) != 404:
                    raise
        # Every version's code, including any an interrupted deploy left behind: listed, then deleted one by one by
        # name, so the Role needs no deletecollection (which could take any ConfigMap of the namespace).
        selector = f"{_FUNCTIONS}={name},{objects.CODE_LABEL}"
        listed = await self.clients.call(c.core.list_namespaced_config_map, self.namespace, label_selector=selector)
        for item in listed.get("items") or []:
            try:
                await asyncio.to_thread(c.core.delete_namespaced_config_map, item["metadata"]["name"], self.namespace)
            except Exception as exc:
                if _status(exc) != 404:
                    raise

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        fn = self._known(name, namespace)
        before = fn.record.replicas
        try:
            await self.clients.call(
                self.clients.apps.patch_namespaced_deployment_scale, name, namespace, objects.scale(replicas)
            )
        except Exception as exc:
            if _status(exc) == 404:
                raise NotFound(f"function {name!r} not found in namespace {namespace!r}") from None
            raise
        fn.record.replicas = replicas
        if replicas > before and len(fn.record.endpoints) < replicas:
            # A bridge from the warm pool serves in milliseconds while the Deployment's own pod starts.
            try:
                bridge = await self.pool.claim(fn.obj)
            except Exception as exc:  # the pool is an optimisation: the Deployment scales either way
                logger.warning("kubernetes warm pool: claim for %s: %s", name, exc)
                bridge = None
            if bridge is not None and self._functions.get((name, namespace)) is fn:
                fn.bridges[bridge.instance] = bridge
                self._refresh((name, namespace))
