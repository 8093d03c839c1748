"""The swarm backend: each function is a Docker Swarm service on an attachable overlay network.

Everything a gateway knows comes from the engine: functions from the services' labels (the deployment itself is one
of them), replicas from the tasks. Every gateway reads both every ``STOKER_SWARM_POLL_S`` and routes to the tasks it
has seen answer ``/_/ready`` itself, so any number of gateway replicas serve the same functions and a restarted one
knows everything at once (see :mod:`runtime.backends.swarm.config` for the two ways to reach tasks).

- deploy: create or update the service, then wait until this gateway routes to a task of the new version. A version
  that cannot start fails with DeployFailed carrying the reason (an import error names file and line): a new
  function is removed again; an update is put back to the previous spec. Old tasks keep serving meanwhile: updates
  are start-first (a new task must be healthy before an old one stops) and Swarm itself rolls back a failed update.
- scale: the service's replica count. Swarm picks which task stops; the replica's stop delay keeps it serving until
  every gateway has seen it leave, then it drains its own calls.
- remove: leave the routing table, wait for this gateway's calls in flight (bounded), then remove the service.
- secrets: Docker secrets (:mod:`runtime.backends.swarm.secrets`).

Source deploys are built by :mod:`builder` into the engine the gateway talks to (a single-node swarm needs no
registry); with ``STOKER_DOCKER_REGISTRY`` the image is pushed there so every node can pull it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from builder import engine
from builder.function import build_function, push
from builder.reference import validate_reference
from builder.stream import build_output
from runtime import codesign
from runtime.backends.base import Endpoint, FunctionRecord, FunctionTable, LogLine
from runtime.backends.baseimage import RuntimeImage
from runtime.backends.containers import BUNDLE_DIR, BUNDLE_FILE, FUNCTION, NAMESPACE, VERSION, check_resources
from runtime.backends.readiness import READY, probe, ready_path
from runtime.backends.swarm import code as swarm_code
from runtime.backends.swarm import route
from runtime.backends.swarm.code import SwarmCode, runs_without_image
from runtime.backends.swarm.config import (
    CODE,
    PLATFORM,
    POOL_CLAIMED,
    POOL_GENERIC,
    READY_PATH,
    STOKER_IMAGE,
    SwarmSettings,
    replica_environment,
    service_name,
    service_spec,
)
from runtime.backends.swarm.namespaces import SwarmNamespaceStore
from runtime.backends.swarm.pool import SwarmPool, poolable, retire_reason, role, serves, updated_at
from runtime.backends.swarm.secrets import SwarmSecretStore
from runtime.backends.swarm.tasks import (
    Candidate,
    candidate,
    deployment_of,
    failure,
    load_error,
    node_address,
    task_version,
)
from stoker.config import Config
from stoker.errors import ConfigError, DeployFailed, InvalidRequest, NotFound, StokerError
from stoker.names import DEFAULT_NAMESPACE
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)

_RELIST = 3  # reads of services then tasks when a service vanishes in between
_NODES_EVERY_S = 10.0


class _Function:
    """One function as this gateway sees it, and every Endpoint it handed out (their in-flight counts survive)."""

    def __init__(self, record: FunctionRecord, service_id: str) -> None:
        self.record = record
        self.service_id = service_id
        self.version = ""  # of the service's spec
        self.code = ""  # the config holding its code ("" when its image holds it)
        self.ready_path = READY  # what its own tasks are probed on (readiness.ready_path)
        self.by_task: dict[str, Endpoint] = {}
        self.versions: dict[str, str] = {}  # task -> version, of the routed tasks
        self.bridges: dict[str, Candidate] = {}  # task -> pool replica serving this function (pool.py)
        self.claimed_at: dict[str, float] = {}  # task -> when this gateway claimed it (routed before a poll shows it)

    def own_ready(self, ready: dict[str, Candidate]) -> int:
        """Ready tasks of the function's own service at its current version (pool replicas not counted)."""
        return sum(1 for t, v in self.versions.items() if v == self.version and t in ready and t not in self.bridges)


class SwarmBackend(FunctionTable[_Function]):
    name = "swarm"

    def __init__(self, config: Config, key: bytes) -> None:
        self.config = config
        self.settings = SwarmSettings.from_env()
        try:
            self.client = engine.connect()
        except StokerError as exc:
            raise ConfigError(f"the swarm backend cannot start: {exc}") from None
        # Before anything makes a service spec: the route decides how services publish their port.
        self.settings = replace(
            self.settings, route=route.resolve(self.client, self.settings.route, self.settings.network)
        )
        self.api = self.client.api
        self.key = key
        self.secrets = SwarmSecretStore(self.api, self.settings.platform)
        self.namespace_store = SwarmNamespaceStore(self.api, self.settings.platform)
        self.pool = SwarmPool(self.api, self.settings, key, self._base_image)
        self._generic: list[tuple[dict[str, Any], Candidate]] = []  # warm pool replicas with a running task
        self._last: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])  # services, tasks of the last poll
        self._code: dict[str, bytes] = {}  # config name -> bundle, read once
        self._functions: dict[tuple[str, str], _Function] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._removing: set[tuple[str, str]] = set()
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, Candidate] = {}  # task -> candidate that answered /_/ready
        self._nodes: dict[str, str] = {}
        self._nodes_at = 0.0
        self._watch: asyncio.Task[None] | None = None
        self.runtime = RuntimeImage(self.client, self.settings.docker.base_image)

    def warm_replicas(self) -> int:
        """Generic replicas of the warm pool that run now, as this gateway saw them at its last poll."""
        return len(self._generic)

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        info = await asyncio.to_thread(self.client.info)
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise ConfigError(
                "the swarm backend needs a Swarm manager: this Docker Engine is not one "
                f"(state {swarm.get('LocalNodeState')!r}); run `docker swarm init` or point DOCKER_HOST at a manager"
            )
        self.runtime.prepare()  # built now if missing, its progress in the log (it takes minutes the first time)
        await asyncio.to_thread(self._ensure_network)
        await self._poll()
        self._watch = asyncio.create_task(self._watch_loop(), name="swarm watch")

    def _ensure_network(self) -> None:
        if not self.api.networks(names=[self.settings.network]):
            self.api.create_network(
                self.settings.network, driver="overlay", attachable=True, labels={PLATFORM: self.settings.platform}
            )

    async def close(self) -> None:
        """Stop watching. The functions keep running: the swarm, not this process, owns them."""
        for task in [self._watch, *self._probing.values()]:
            if task is not None:
                task.cancel()
        self._probing.clear()
        self.client.close()

    # --- the mirror of the swarm ---------------------------------------------------------------------------
    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_s)
            try:
                await self._poll()
            except Exception as exc:  # the engine restarting: keep routing to what we know, say it once per poll
                logger.warning("swarm backend cannot read the services: %s", str(exc)[:200])

    async def _poll(self, ended: bool = False) -> None:
        """Read the platform's services and their tasks: those Swarm wants running, or with ``ended`` every task it
        still keeps (the pool's upkeep looks for failed ones)."""
        import docker.errors

        for attempt in range(_RELIST):
            services = await asyncio.to_thread(
                self.api.services, filters={"label": f"{PLATFORM}={self.settings.platform}"}
            )
            ids = [s["ID"] for s in services]
            wanted: dict[str, Any] = {"service": ids} if ended else {"service": ids, "desired-state": "running"}
            try:
                tasks = await asyncio.to_thread(self.api.tasks, filters=wanted) if ids else []
                break
            except docker.errors.NotFound:  # a service removed between the two reads (another gateway's remove)
                if attempt + 1 == _RELIST:
                    raise
        if self.settings.route == "published" and time.monotonic() - self._nodes_at > _NODES_EVERY_S:
            nodes = await asyncio.to_thread(self.api.nodes)
            self._nodes = {n["ID"]: node_address(n) for n in nodes}
            self._nodes_at = time.monotonic()
        self._apply(services, tasks)

    def _apply(self, services: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> None:
        self._last = (services, tasks)
        running = [candidate(t, self.settings.route, self.settings.network, self._nodes) for t in tasks]
        by_service: dict[str, list[Candidate]] = {}
        for c, t in zip(running, tasks, strict=True):
            if c is not None:
                by_service.setdefault(t["ServiceID"], []).append(c)
        self._generic = []
        bridges: dict[tuple[str, str, str], list[Candidate]] = {}  # (name, namespace, version) -> pool tasks
        for service in services:
            kind = role(service)
            if kind == POOL_GENERIC and by_service.get(service["ID"]):
                self._generic.append((service, by_service[service["ID"]][0]))
            elif kind == POOL_CLAIMED:
                labels = service["Spec"].get("Labels") or {}
                key3 = (labels.get(FUNCTION, ""), labels.get(NAMESPACE, ""), labels.get(VERSION, ""))
                bridges.setdefault(key3, []).extend(by_service.get(service["ID"], []))
        self.pool.taken &= {s["ID"] for s, _ in self._generic}
        seen: set[tuple[str, str]] = set()
        for service in services:
            found = deployment_of(service)
            if found is None:
                continue
            dep, created, replicas = found
            key = (dep.service, dep.namespace)
            if key in self._removing:
                continue
            seen.add(key)
            fn = self._functions.get(key)
            if fn is None:
                fn = self._functions[key] = _Function(FunctionRecord(dep, created, replicas), service["ID"])
            else:
                fn.record.deployment, fn.record.created_at, fn.record.replicas = dep, created, replicas
                fn.service_id = service["ID"]
            labels = service["Spec"].get("Labels") or {}
            fn.version, fn.code = labels.get(VERSION, ""), labels.get(CODE, "")
            fn.ready_path = labels.get(READY_PATH, READY)
            pool = bridges.get((*key, fn.version), [])
            recent = time.monotonic() - 5.0  # claimed here just now: routed even if this poll began before
            pool += [c for t, c in fn.bridges.items() if fn.claimed_at.get(t, 0) > recent and c not in pool]
            fn.bridges = {c.task: c for c in pool}
            fn.claimed_at = {t: at for t, at in fn.claimed_at.items() if at > recent}
            self._route(fn, [*by_service.get(service["ID"], []), *pool])
        for key in [k for k in self._functions if k not in seen]:
            self._drop(self._functions.pop(key))

    def _route(self, fn: _Function, candidates: list[Candidate]) -> None:
        """Route to the candidates that answered /_/ready; probe the new ones. In place: the gateway holds the list."""
        current = {c.task: c for c in candidates}
        for task, c in current.items():
            if task not in self._ready and task not in self._probing:
                path = READY if task in fn.bridges else fn.ready_path  # pool replicas run stoker's runtime
                self._probing[task] = asyncio.create_task(self._probe(c, path), name=f"probe {task}")
        endpoints: list[Endpoint] = []
        for task, c in sorted(current.items()):
            if self._ready.get(task) != c:
                continue
            endpoint = fn.by_task.get(task)
            if endpoint is None:
                endpoint = fn.by_task[task] = Endpoint(task[:12], c.host, c.port)
                fn.versions[task] = c.version
            endpoints.append(endpoint)
        fn.record.endpoints[:] = endpoints
        for task in [t for t in fn.by_task if t not in current]:
            self._ready.pop(task, None)
            fn.versions.pop(task, None)
            if fn.by_task[task].inflight == 0:
                del fn.by_task[task]
        if fn.record.available:
            fn.record.message = ""

    def _drop(self, fn: _Function) -> None:
        fn.record.endpoints.clear()
        for task in fn.by_task:
            self._ready.pop(task, None)
            probe = self._probing.pop(task, None)
            if probe is not None:
                probe.cancel()

    async def _probe(self, c: Candidate, path: str = READY) -> None:
        """Wait until the task answers ``path`` (/_/ready: 200, or 429: busy but up), then mark it routable."""
        deadline = time.monotonic() + self.settings.deploy_timeout_s
        try:
            while time.monotonic() < deadline:
                if await probe(c.host, c.port, path):
                    self._ready[c.task] = c  # routed from the next poll on
                    return
                await asyncio.sleep(0.1)
        finally:
            self._probing.pop(c.task, None)

    # --- reads ---------------------------------------------------------------------------------------------
    def namespaces(self) -> list[str]:
        return sorted({DEFAULT_NAMESPACE, *(ns for _, ns in self._functions)})

    async def logs(
        self, name: str, namespace: str, tail: int | None, since: float | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        self._known(name, namespace)
        from runtime.backends.swarm.logs import service_logs

        def services() -> list[str]:
            """The function's service, then the pool replicas that served it (claimed now, or retired lately)."""
            fn = self._functions.get((name, namespace))
            if fn is None:
                return []
            return [fn.service_id, *(s["ID"] for s in self._last[0] if serves(s, name, namespace))]

        async for line in service_logs(self.api, services, name, namespace, tail, since, follow):
            yield line

    # --- changes -------------------------------------------------------------------------------------------
    async def deploy(self, deployment: FunctionDeployment, bundle: bytes | None) -> None:
        dep = deployment
        check_resources(dep)
        refs = []
        for secret in dep.secrets:
            ref = await asyncio.to_thread(self.secrets.newest, secret, dep.namespace)
            if ref is None:
                raise InvalidRequest(
                    f"function {dep.service!r} needs secret {secret!r} that does not exist in {dep.namespace!r} "
                    "(create it with 'stoker secret create')"
                )
            refs.append(ref)
        code: SwarmCode | None = None
        if bundle is not None and runs_without_image(bundle):  # no build: the runtime image runs it from a config
            code = await asyncio.to_thread(swarm_code.store, self.api, self.settings, self.key, dep, bundle)
            dep = replace(dep, image=await asyncio.to_thread(self._base_image))
        elif bundle is not None:
            dep = replace(dep, image=await self._build(dep, bundle))
        else:
            validate_reference(dep.image)
        stoker_image, user, image_env = await asyncio.to_thread(self._image_facts, dep.image)
        key = (dep.service, dep.namespace)
        async with self._locks.setdefault(key, asyncio.Lock()):
            name = service_name(self.settings, dep.service, dep.namespace)
            old = await asyncio.to_thread(self._inspect, name)
            now = time.time()
            version = f"{int(now * 1e6):020d}"
            if old is None:
                replicas = max(dep.settings.min_replicas, 1)
            else:
                current = deployment_of(old)
                replicas = current[2] if current else 1
                replicas = min(max(replicas, dep.settings.min_replicas, 1), dep.settings.max_replicas)
                now = current[1] if current else now
            spec = service_spec(
                dep, self.settings, version=version, created=now, replicas=replicas,
                stoker_image=stoker_image, image_user=user, secrets=refs, code=code, ready_path=ready_path(image_env),
            )  # fmt: skip
            if old is None:
                created = await asyncio.to_thread(self.api.create_service, **spec)
                problem = await self._wait_version(key, created["ID"], version)
                if problem:
                    self._removing.add(key)
                    try:
                        self._functions.pop(key, None)
                        with contextlib.suppress(Exception):
                            await asyncio.to_thread(self.api.remove_service, created["ID"])
                    finally:
                        self._removing.discard(key)
                    raise DeployFailed(f"function {dep.service!r} failed to start: {problem}")
                return
            await asyncio.to_thread(self._update, old["ID"], spec)
            problem = await self._wait_version(key, old["ID"], version)
            if problem:
                await asyncio.to_thread(self._restore, old)
                raise DeployFailed(
                    f"function {dep.service!r} failed to start; the previous version keeps serving: {problem}"
                )

    def _base_image(self) -> str:
        """The runtime image's reference (built offline the first time when the engine lacks it)."""
        return self.runtime.ref()

    async def _build(self, dep: FunctionDeployment, data: bytes) -> str:
        docker = self.settings.docker
        base = await asyncio.to_thread(self._base_image)
        image = await asyncio.to_thread(
            build_function, self.client, dep.service, data, base,
            registry=docker.registry, max_bundle_bytes=self.config.max_bundle_bytes, out=build_output.get(),
        )  # fmt: skip
        if docker.registry:  # other nodes pull it from there
            await asyncio.to_thread(push, self.client, image.ref)
        return image.ref

    def _image_facts(self, ref: str) -> tuple[bool, str, list[str]]:
        """(built on stoker's base image, the image's user, its environment), from the local engine when it has the
        image."""
        with contextlib.suppress(Exception):
            config = self.client.images.get(ref).attrs.get("Config") or {}
            env = [str(e) for e in config.get("Env") or []]
            return (config.get("Labels") or {}).get(STOKER_IMAGE) == "true", str(config.get("User") or ""), env
        return False, "", []

    def _inspect(self, name: str) -> dict[str, Any] | None:
        import docker.errors

        try:
            found: dict[str, Any] = self.api.inspect_service(name)
        except docker.errors.NotFound:
            return None
        return found

    def _update(self, service_id: str, spec: dict[str, Any]) -> None:
        current = self.api.inspect_service(service_id)
        self.api.update_service(service_id, current["Version"]["Index"], **spec)

    def _restore(self, old: dict[str, Any]) -> None:
        """Put a service back to the spec it had (Swarm may be rolling back already: the same spec again)."""
        spec = old["Spec"]
        self._update(
            old["ID"],
            {
                "task_template": spec["TaskTemplate"], "name": spec["Name"], "labels": spec.get("Labels"),
                "mode": spec.get("Mode"), "update_config": spec.get("UpdateConfig"),
                "rollback_config": spec.get("RollbackConfig"), "endpoint_spec": spec.get("EndpointSpec"),
            },
        )  # fmt: skip

    async def _wait_version(self, key: tuple[str, str], service_id: str, version: str) -> str:
        """ "" once this gateway routes to a task of ``version``; else why not (the first failure, or time)."""
        deadline = time.monotonic() + self.settings.deploy_timeout_s
        while time.monotonic() < deadline:
            await self._poll()
            fn = self._functions.get(key)
            if fn is not None and any(fn.versions.get(t) == version for t in fn.by_task if t in self._ready):
                return ""
            tasks = await asyncio.to_thread(self.api.tasks, filters={"service": service_id})
            ours = [t for t in tasks if task_version(t) == version]
            problems = [(t, failure(t)) for t in ours if failure(t)]
            if problems:
                return await self._explain(service_id, problems[0][1])
            service = await asyncio.to_thread(self.api.inspect_service, service_id)
            update = service.get("UpdateStatus") or {}
            if update.get("State") in ("rollback_started", "rollback_completed", "paused"):
                return f"Swarm rolled the update back: {update.get('Message', '')}"
            await asyncio.sleep(self.settings.poll_s)
        return f"no replica became ready within {self.settings.deploy_timeout_s:g}s"

    async def _explain(self, service_id: str, problem: str) -> str:
        """The replica's own words when it printed an import error (file and line), else Swarm's."""
        from runtime.backends.swarm.logs import tail_lines

        lines = await asyncio.to_thread(tail_lines, self.api, service_id, 50)
        return load_error(lines) or problem + (": " + " | ".join(lines[-6:]) if lines else "")

    async def remove(self, name: str, namespace: str) -> None:
        key = (name, namespace)
        async with self._locks.setdefault(key, asyncio.Lock()):
            fn = self._functions.get(key)
            service = await asyncio.to_thread(self._inspect, service_name(self.settings, name, namespace))
            if service is None:
                raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
            self._removing.add(key)
            try:
                if fn is not None:
                    # Out of the routing table first, then let this gateway's calls in flight finish (bounded).
                    self._functions.pop(key, None)
                    draining = list(fn.by_task.values())
                    self._drop(fn)
                    deadline = time.monotonic() + self.config.drain_timeout_s
                    while any(e.inflight for e in draining) and time.monotonic() < deadline:
                        await asyncio.sleep(0.05)
                import docker.errors

                with contextlib.suppress(docker.errors.NotFound):
                    await asyncio.to_thread(self.api.remove_service, service["ID"])
            finally:
                self._removing.discard(key)

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        fn = self._known(name, namespace)
        import docker.errors

        for attempt in range(5):  # another gateway may have changed the service in between: read and try again
            try:
                current = await asyncio.to_thread(self.api.inspect_service, fn.service_id)
                await asyncio.to_thread(
                    self.api.update_service, fn.service_id, current["Version"]["Index"],
                    mode={"Replicated": {"Replicas": replicas}}, fetch_current_spec=True,
                )  # fmt: skip
                break
            except docker.errors.NotFound:
                raise NotFound(f"function {name!r} not found in namespace {namespace!r}") from None
            except docker.errors.APIError as exc:
                if "out of sequence" not in str(exc) or attempt == 4:
                    raise
        fn.record.replicas = replicas
        await self._bridge(fn, replicas)

    # --- the warm pool (runtime.backends.swarm.pool) -------------------------------------------------------
    async def _bridge(self, fn: _Function, replicas: int) -> None:
        """Serve the replicas still missing from warm pool replicas while the service's own tasks start."""
        dep = fn.record.deployment
        missing = replicas - fn.record.available
        if missing <= 0 or not fn.code or not self._generic or not poolable(dep, self.settings):
            return
        try:
            code = self._code.get(fn.code, b"") or await asyncio.to_thread(swarm_code.read, self.api, fn.code)
        except Exception as exc:  # the config is gone (a redeploy just now): the service's own tasks serve
            logger.warning("warm pool: cannot read the code of %s: %s", dep.service, str(exc)[:200])
            return
        if len(self._code) > 64:  # one entry per version deployed: bounded, the next claim reads it again
            self._code.clear()
        self._code[fn.code] = code
        path = f"{BUNDLE_DIR}/{BUNDLE_FILE}"
        env = {
            **replica_environment(dep, self.settings),
            **codesign.replica_env_for_bytes(self.key, dep.namespace, dep.service, code, path),
        }
        for _ in range(missing):
            claimed = await self.pool.claim(self._generic, dep, fn.version, env, code)
            if claimed is None:
                return
            c = claimed.candidate
            self._ready[c.task] = c
            fn.bridges[c.task] = c
            fn.claimed_at[c.task] = time.monotonic()
            endpoint = fn.by_task[c.task] = Endpoint(c.task[:12], c.host, c.port)
            fn.versions[c.task] = c.version
            fn.record.endpoints.append(endpoint)  # routed now; every gateway's poll finds it from the labels

    async def tend_pool(self) -> None:
        """Refill the warm pool and retire bridges (called once a tick by the process that autoscales)."""
        await self._poll(ended=True)
        services, tasks = self._last
        running: dict[str, list[Candidate]] = {}
        failed: set[str] = set()
        for t in tasks:
            c = candidate(t, self.settings.route, self.settings.network, self._nodes)
            if c is not None:
                running.setdefault(t["ServiceID"], []).append(c)
            elif failure(t):
                failed.add(t["ServiceID"])
        now = time.time()

        def verdict(service: dict[str, Any], is_running: bool) -> str:
            labels = service["Spec"].get("Labels") or {}
            fn = self._functions.get((labels.get(FUNCTION, ""), labels.get(NAMESPACE, "")))
            return retire_reason(
                exists=fn is not None,
                replicas=fn.record.replicas if fn else 0,
                current=fn is not None and labels.get(VERSION) == fn.version,
                own_ready=fn.own_ready(self._ready) if fn else 0,
                running=is_running,
                age_s=now - updated_at(service),
            )

        def has_function(service: dict[str, Any]) -> bool:
            labels = service["Spec"].get("Labels") or {}
            return (labels.get(FUNCTION, ""), labels.get(NAMESPACE, "")) in self._functions

        await self.pool.tend(services, running, failed, verdict, has_function, self.config.pool_size, now)
        in_use = {fn.code for fn in self._functions.values() if fn.code}
        await asyncio.to_thread(swarm_code.prune, self.api, self.settings, in_use, now)
