"""The docker backend: every replica is a hardened container on the local Docker Engine.

Source bundles are built into images by :mod:`builder` (base, dependency layer, code layer; content-tagged, so an
unchanged function is not rebuilt); a deployment with ``image`` and no source runs that image (any OpenFaaS-style
image serving HTTP on 8080). Replicas join the platform's own bridge network, on which containers cannot reach one
another (:mod:`.network`), and the gateway, on the host, reaches their addresses directly. The containers'
labels carry the owner, function, version and the deployment itself, and
:mod:`.state` keeps each function in ``$STOKER_HOME/docker`` too (for functions at zero and replicas that came
from the pool), so a restarted platform restores every function and adopts the containers it finds instead of
starting duplicates.

Deploys mirror the local backend: wait for the first ready replica or fail with the reason (an import error names
file and line) leaving nothing behind; an update that fails keeps the previous version serving; replicas that exit
are replaced after an exponential backoff shown in the function's status message.

Every replica of a source deploy gets its signed bundle read-only at ``/var/stoker/bundle/bundle.tar.gz`` (a volume)
with the per-function key and signature (:mod:`runtime.codesign`), so SDK functions verify their code before they
unpickle it. With ``STOKER_POOL_SIZE`` > 0 a warm pool of generic base-image containers (:mod:`.pool`) serves
scale-ups of functions that need nothing beyond the base image (no requirements, no secrets, no ``fprocess``); the
others, and every restart, create containers of the function's own image.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import replace
from typing import Any

from builder import engine
from builder.function import build_function
from builder.reference import validate_reference
from builder.stream import build_output
from runtime import codesign
from runtime.backends.base import FunctionRecord
from runtime.backends.baseimage import RuntimeImage
from runtime.backends.containers import (
    BUNDLE_DIR,
    CREATED,
    DEPLOYMENT,
    FUNCTION,
    NAMESPACE,
    OWNER,
    POOL,
    VERSION,
    DockerSettings,
    check_resources,
    labels,
    memory_bytes,
    needs_image,
    owner_id,
)
from runtime.backends.docker import network as docker_network
from runtime.backends.docker.config import container_spec, limits_update, with_bundle
from runtime.backends.docker.pool import ContainerStarter, GenericContainer
from runtime.backends.docker.replica import ContainerSlot, WarmContainer
from runtime.backends.docker.state import FunctionFiles, SavedFunction
from runtime.backends.docker.volumes import FunctionCode, function_code, remove_volume, secrets_volume
from runtime.backends.engine_threads import STOPPING
from runtime.backends.logstore import FunctionLog
from runtime.backends.namespaces import FileNamespaceStore
from runtime.backends.pool import WarmPool
from runtime.backends.readiness import ready_path
from runtime.backends.secrets import FileSecretStore
from runtime.backends.slots import (
    FunctionEntry,
    SlotBackend,
    first_outcome,
    replace_when_ready,
    require_secrets,
)
from runtime.contract import SECRETS_DIR
from stoker.config import Config
from stoker.errors import ConfigError, DeployFailed, StateNotSaved, StokerError
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)


class _Function(FunctionEntry):
    def __init__(
        self,
        record: FunctionRecord,
        version: str,
        log: FunctionLog,
        secrets_volume: str = "",
        code: FunctionCode | None = None,
    ) -> None:
        super().__init__(record, log)
        self.version = version
        self.secrets_volume = secrets_volume
        self.code = code or FunctionCode()
        self.slots: list[ContainerSlot] = []


class DockerBackend(SlotBackend[_Function]):
    name = "docker"

    def __init__(self, config: Config, key: bytes) -> None:
        super().__init__()
        self.config = config
        self.key = key
        self.settings = DockerSettings.from_env()
        try:
            self.client = engine.connect()
        except StokerError as exc:  # no engine: one clear line from `stoker up`, not a traceback
            raise ConfigError(f"the docker backend cannot start: {exc}") from None
        # Containers of another platform (another STOKER_HOME) on the same engine are never adopted nor touched.
        self.owner = owner_id(config.home)
        if not self.settings.network:  # the platform's own network, isolated (network.py)
            self.settings = replace(self.settings, network=docker_network.default_name(self.owner))
        self.root = config.home / "docker"
        self.secrets = FileSecretStore(config.home / "secrets", on_update=self._secret_updated)
        self.namespace_store = FileNamespaceStore(config.home / "namespaces")
        self.files = FunctionFiles(self.root / "functions")
        # Image user and environment by reference, looked up off the loop at deploy and start: a replica added by
        # a scale-up or a restart never waits on the engine in the event loop (a stalled engine would stall calls).
        self._facts: dict[str, tuple[str, list[str]]] = {}
        self.runtime = RuntimeImage(self.client, self.settings.base_image)
        self._pool: WarmPool | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.runtime.prepare()  # built now if missing, its progress in the log (it takes minutes the first time)
        await asyncio.to_thread(self._ensure_network)
        found = await asyncio.to_thread(
            self.client.containers.list, all=True, filters={"label": f"{OWNER}={self.owner}"}
        )
        groups: dict[tuple[str, str], list[Any]] = {}
        for c in found:
            if c.labels.get(POOL):  # a generic container (or one specialised from it) of a previous platform
                await asyncio.to_thread(c.remove, force=True)
                continue
            groups.setdefault((c.labels.get(FUNCTION, ""), c.labels.get(NAMESPACE, "")), []).append(c)
        saved, problems = await asyncio.to_thread(self.files.load_all)
        for problem in problems:
            logger.warning("%s", problem)
        for state in saved:
            dep = state.deployment
            record = FunctionRecord(dep, state.created_at, state.replicas)
            await self._learn_image(dep.image)
            fn = _Function(record, state.version, self._log(dep), state.secrets_volume, state.code)
            self._functions[fn.key] = fn
            containers = groups.pop(fn.key, [])
            current = [c for c in containers if c.labels.get(VERSION) == state.version][: state.replicas]
            for stale in (c for c in containers if c not in current):  # an update interrupted, or surplus
                await asyncio.to_thread(stale.remove, force=True)
            for c in current:
                self._add_slot(fn, adopt=c.id)
            while len(fn.slots) < state.replicas:  # at zero: none; replicas that came from the pool: new ones
                self._add_slot(fn)
        for key, containers in sorted(groups.items()):  # containers without a state file: labels tell all
            newest = max(containers, key=lambda c: c.labels.get(VERSION, ""))
            current = [c for c in containers if c.labels.get(VERSION) == newest.labels.get(VERSION)]
            for stale in (c for c in containers if c not in current):  # an update interrupted by a crash
                await asyncio.to_thread(stale.remove, force=True)
            try:
                dep = FunctionDeployment.from_stored(json.loads(newest.labels[DEPLOYMENT]))
            except (KeyError, ValueError, StokerError) as exc:
                logger.warning("cannot adopt the containers of %s.%s: %s", key[0], key[1], exc)
                continue
            record = FunctionRecord(dep, float(newest.labels.get(CREATED, time.time())), len(current))
            mounts = {m.get("Destination"): m.get("Name", "") for m in newest.attrs.get("Mounts", [])}
            env = dict(e.partition("=")[::2] for e in newest.attrs.get("Config", {}).get("Env") or [])
            code = FunctionCode(mounts.get(BUNDLE_DIR, ""), {v: env[v] for v in _CODESIGN_VARS if v in env})
            await self._learn_image(dep.image)
            fn = _Function(record, newest.labels.get(VERSION, ""), self._log(dep), mounts.get(SECRETS_DIR, ""), code)
            self._functions[fn.key] = fn
            for c in current:
                self._add_slot(fn, adopt=c.id)
            unsaved = self._try_save(fn)
            if unsaved is not None:  # it runs; the next change that saves will write it
                logger.error("%s", unsaved)
        if self.config.pool_size > 0:
            memory = memory_bytes(self.settings.memory, "STOKER_DOCKER_MEMORY")
            starter = ContainerStarter(self.client, self.settings, self._base_image, self.owner, memory)
            self._pool = WarmPool(self.config.pool_size, starter, "container")
            self._pool.start()

    def warm_replicas(self) -> int:
        """Generic containers ready in the warm pool."""
        return self._pool.ready if self._pool is not None else 0

    def _base_image(self) -> str:
        return self.runtime.ref()

    def _ensure_network(self) -> None:
        docker_network.ensure(self.client, self.settings.network, self.owner)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._cancel_background()
        slots = [slot for fn in self._functions.values() for slot in fn.slots]
        if self.settings.on_shutdown == "leave":
            for slot in slots:
                slot.detach()
        else:
            # Bundle and secret volumes stay: the functions are restored from $STOKER_HOME at the next start and
            # their new containers mount them (they go on update and remove).
            await asyncio.gather(*(slot.stop() for slot in slots), return_exceptions=True)
            # Networks come from a small address pool shared by the engine: the next start creates it again.
            await asyncio.to_thread(docker_network.remove_if_ours, self.client, self.settings.network, self.owner)
        for fn in self._functions.values():
            fn.log.close()
        self._functions.clear()
        self.client.close()

    # --- changes -------------------------------------------------------------------------------------------
    async def deploy(self, deployment: FunctionDeployment, bundle_bytes: bytes | None) -> None:
        check_resources(deployment)
        require_secrets(self.secrets, deployment)
        code = FunctionCode()
        if bundle_bytes is not None:
            if needs_image(bundle_bytes):
                deployment = replace(deployment, image=await self._build(deployment, bundle_bytes))
            else:  # nothing to install: the base image runs the bundle itself
                deployment = replace(deployment, image=await asyncio.to_thread(self._base_image))
            code = await asyncio.to_thread(function_code, self.client, self.owner, self.key, deployment, bundle_bytes)
            if not needs_image(bundle_bytes):
                code = replace(code, env={**code.env, codesign.UNPACK_VAR: "1"})
        else:
            validate_reference(deployment.image)
            await asyncio.to_thread(self._ensure_image, deployment.image)
        old = self._functions.get((deployment.service, deployment.namespace))
        if old is None:
            await self._create(deployment, code)
        else:
            async with old.lock:
                await self._update(old, deployment, code)

    async def _build(self, dep: FunctionDeployment, data: bytes) -> str:
        base = await asyncio.to_thread(self._base_image)
        image = await asyncio.to_thread(
            build_function,
            self.client,
            dep.service,
            data,
            base,
            registry=self.settings.registry,
            max_bundle_bytes=self.config.max_bundle_bytes,
            out=build_output.get(),
        )
        return image.ref

    def _ensure_image(self, ref: str) -> None:
        import docker.errors

        try:
            self.client.images.get(ref)
            return
        except docker.errors.ImageNotFound:
            pass
        try:
            self.client.images.pull(ref if ":" in ref.rsplit("/", 1)[-1] or "@" in ref else f"{ref}:latest")
        except docker.errors.DockerException as exc:
            first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise DeployFailed(f"image {ref!r} is not on this Docker Engine and cannot be pulled: {first}") from None

    async def _create(self, dep: FunctionDeployment, code: FunctionCode) -> None:
        replicas = max(dep.settings.min_replicas, 1)
        now = time.time()
        volume = await asyncio.to_thread(secrets_volume, self.client, self.config.home, self.owner, dep)
        await self._learn_image(dep.image)
        fn = _Function(FunctionRecord(dep, now, replicas), _version(now), self._log(dep), volume, code)
        self._functions[fn.key] = fn
        async with fn.lock:
            for _ in range(replicas):
                self._add_slot(fn)
            failure = await first_outcome(fn.slots, self._ready_wait_s)
            unsaved = self._try_save(fn) if failure is None else None
            if failure is not None or unsaved is not None:
                await asyncio.gather(*(slot.stop() for slot in fn.slots))
                del self._functions[fn.key]
                fn.log.close()
                if code.volume:
                    await asyncio.to_thread(remove_volume, self.client, code.volume)
                if unsaved is not None:  # not on disk, so not deployed: a restart would not bring it back
                    raise unsaved
                raise DeployFailed(f"function {dep.service!r} failed to start: {failure}")

    async def _update(self, fn: _Function, dep: FunctionDeployment, code: FunctionCode) -> None:
        settings = dep.settings
        replicas = min(max(fn.record.replicas, settings.min_replicas, 1), settings.max_replicas)
        volume = await asyncio.to_thread(secrets_volume, self.client, self.config.home, self.owner, dep)
        await self._learn_image(dep.image)
        previous = (fn.record.deployment, fn.version, fn.slots, fn.secrets_volume, fn.code)
        fn.record.deployment, fn.version, fn.slots, fn.secrets_volume = dep, _version(time.time()), [], volume
        fn.code = code
        for _ in range(replicas):
            self._add_slot(fn)
        failure = await first_outcome(fn.slots, self._ready_wait_s)
        unsaved = self._try_save(fn, replicas) if failure is None else None
        if failure is not None or unsaved is not None:
            new_slots = fn.slots
            fn.record.deployment, fn.version, fn.slots, fn.secrets_volume, fn.code = previous
            await asyncio.gather(*(slot.stop() for slot in new_slots))
            if code.volume and code.volume != fn.code.volume:
                await asyncio.to_thread(remove_volume, self.client, code.volume)
            if unsaved is not None:  # the saved state is the previous version's, so is what serves
                raise unsaved
            raise DeployFailed(
                f"function {dep.service!r} failed to start; the previous version keeps serving: {failure}"
            )
        fn.record.replicas = replicas
        fn.clear_problems()
        old_volumes = [old for old, new in ((previous[4].volume, code.volume), (previous[3], volume)) if old != new]
        self._in_background(self._retire(fn.slots, previous[2], old_volumes))

    async def _retire(self, new: list[ContainerSlot], old: list[ContainerSlot], old_volumes: list[str]) -> None:
        await replace_when_ready(new, old, self.config.ready_wait_s)
        for volume in old_volumes:  # their containers are gone now
            if volume:
                await asyncio.to_thread(remove_volume, self.client, volume)

    def _secret_updated(self, name: str, namespace: str) -> None:
        """A secret's value changed: the volumes of the functions that use it hold the old one, so roll each onto a
        new volume, start-first like a redeploy (its replicas keep serving until the new ones are ready)."""
        for fn in list(self._functions.values()):
            dep = fn.record.deployment
            if dep.namespace == namespace and name in dep.secrets:
                self._in_background(self._roll_secrets(fn))

    async def _roll_secrets(self, fn: _Function) -> None:
        async with fn.lock:
            if self._functions.get(fn.key) is not fn:
                return  # removed or replaced meanwhile (a redeploy reads the secrets anew)
            try:
                await self._update(fn, fn.record.deployment, fn.code)
            except StokerError as exc:
                fn.note(f"the updated secret could not be rolled out; the old replicas keep serving: {exc}")
                logger.warning("%s", fn.record.message)

    async def remove(self, name: str, namespace: str) -> None:
        fn = self._known(name, namespace)
        async with fn.lock:
            self._functions.pop(fn.key, None)
            self.files.delete(name, namespace)
            await asyncio.gather(*(slot.stop() for slot in fn.slots))
            fn.log.delete()
            for volume in (fn.secrets_volume, fn.code.volume):
                if volume:
                    await STOPPING.run(remove_volume, self.client, volume)

    # --- internals -----------------------------------------------------------------------------------------
    @property
    def _ready_wait_s(self) -> float:
        return max(self.config.ready_wait_s, 60.0)  # containers start slower than processes

    def _try_save(self, fn: _Function, replicas: int | None = None) -> StateNotSaved | None:
        try:
            self._save(fn, replicas)
        except StateNotSaved as exc:
            return exc
        return None

    def _save(self, fn: _Function, replicas: int | None = None) -> None:
        """Write the function's state (with ``replicas`` instead of the current count when given)."""
        r = fn.record
        count = r.replicas if replicas is None else replicas
        self.files.save(SavedFunction(r.deployment, count, r.created_at, fn.version, fn.secrets_volume, fn.code))

    def _add_slot(self, fn: _Function, adopt: str = "", warm: bool = False) -> None:
        """Start one more replica (or adopt container ``adopt``); with ``warm``, from the pool when it can."""
        dep = fn.record.deployment
        image_user, image_env = self._image_facts(dep.image)
        spec = container_spec(
            dep,
            self.settings,
            image_user,
            labels(dep, self.owner, fn.version, fn.record.created_at, fn.record.replicas),
            fn.secrets_volume,
        )
        spec = with_bundle(spec, fn.code.volume, fn.code.env)
        start: WarmContainer | None = None
        if warm and fn.code.data and self._pool is not None:
            generic = self._pool.take()
            if generic is not None:
                assert isinstance(generic, GenericContainer)
                limits = limits_update(dep, self.settings, generic.memory)
                start = WarmContainer(generic, dict(spec["environment"]), fn.code.data, limits)

        instance = f"stoker-{dep.namespace}-{dep.service}-{secrets.token_hex(3)}"
        problem = fn.reporter(instance)
        slot = ContainerSlot(
            instance,
            self.client,
            spec,
            fn.log,
            fn.record.endpoints,
            problem,
            self.config.drain_timeout_s,
            adopt,
            start,
            self._replica_gone,
            ready_path(image_env),
        )
        fn.slots.append(slot)

    async def _learn_image(self, ref: str) -> None:
        self._facts[ref] = await asyncio.to_thread(self._image_facts_now, ref)

    def _image_facts(self, ref: str) -> tuple[str, list[str]]:
        """What :meth:`_learn_image` found (asked of the engine now only for an image never learnt)."""
        facts = self._facts.get(ref)
        if facts is None:
            facts = self._facts[ref] = self._image_facts_now(ref)
        return facts

    def _image_facts_now(self, ref: str) -> tuple[str, list[str]]:
        """The image's user and environment (``NAME=value``), empty when the engine cannot say."""
        with contextlib.suppress(Exception):
            config = self.client.images.get(ref).attrs.get("Config") or {}
            return str(config.get("User") or ""), [str(e) for e in config.get("Env") or []]
        return "", []

    def _log(self, dep: FunctionDeployment) -> FunctionLog:
        path = self.root / "logs" / dep.namespace / f"{dep.service}.log"
        return FunctionLog(dep.service, dep.namespace, path, self.config.log_lines)


_CODESIGN_VARS = (codesign.BUNDLE_VAR, codesign.KEY_VAR, codesign.SIGNATURE_VAR)


def _version(now: float) -> str:
    """Sortable version label of one deploy (the newest wins when a restarted platform adopts containers)."""
    return f"{int(now * 1e6):020d}"
