"""The embedded default backend: each replica is a child process on a Unix socket only the platform can reach.

State lives under ``$STOKER_HOME/local``: ``functions/<namespace>/<name>.json`` (the deployment, desired replicas,
bundle digest and its signature), ``bundles/<digest>.tar.gz`` and ``code/<digest>/`` (the extracted bundle). After
a restart or a crash of the platform, :meth:`LocalBackend.start` brings every function back without a redeploy.

A deploy waits for the first replica of the new version: if it cannot load its handler, the deploy fails with the
error (file and line) and nothing of it stays; an update that fails leaves the old version serving. A successful
update starts the new replicas first and drains the old ones after.

How a replica process is started and contained (socket, process group, memory limit, working directory):
:mod:`runtime.backends.local.launch`. This backend runs functions as the platform's own user: it is for code you
trust (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from runtime import codesign
from runtime.backends.base import FunctionRecord
from runtime.backends.local import deps as local_deps
from runtime.backends.local.groups import GroupRecords
from runtime.backends.local.launch import Launcher
from runtime.backends.local.limits import memory_limit
from runtime.backends.local.pool import GenericProcess, GenericStarter
from runtime.backends.local.replica import ProcessSpec, ReplicaSlot, WarmStart, default_python
from runtime.backends.local.sockets import SocketFolder
from runtime.backends.logstore import FunctionLog
from runtime.backends.namespaces import FileNamespaceStore
from runtime.backends.pool import WarmPool
from runtime.backends.secrets import FileSecretStore
from runtime.backends.slots import (
    FunctionEntry,
    SlotBackend,
    first_outcome,
    replace_when_ready,
    require_secrets,
)
from runtime.contract import function_environment
from stoker import bundle
from stoker.atomicfile import is_temporary, state_error, write_atomic
from stoker.config import Config
from stoker.errors import DeployFailed, InvalidRequest, StateNotSaved, StokerError
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)
_SCRUBBED_ENV_PREFIXES = ("STOKER_", "OPENFAAS_")  # never hand the platform's secrets to a function
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])  # the folder that holds the runtime package
WATCHER_STOP_S = 5.0


class _Function(FunctionEntry):
    """One deployed function: its record, its version (bundle digest and signature) and its process slots."""

    def __init__(self, record: FunctionRecord, digest: str, signature: str, log: FunctionLog) -> None:
        super().__init__(record, log)
        self.digest = digest
        self.signature = signature
        self.slots: list[ReplicaSlot] = []
        self.serial = 0


class LocalBackend(SlotBackend[_Function]):
    name = "local"

    def __init__(self, config: Config, key: bytes) -> None:
        super().__init__()
        self.config = config
        self.key = key
        self.root = config.home / "local"
        self.secrets = FileSecretStore(config.home / "secrets")
        self.namespace_store = FileNamespaceStore(config.home / "namespaces")
        self._pinned: list[str] = []  # digests of deploys in progress, safe from garbage collection
        self._files = asyncio.Lock()  # bundles and code on disk change one thread at a time
        self._pool: WarmPool | None = None
        self._launcher: Launcher | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        groups = GroupRecords(self.root / "groups")
        killed = groups.reap()  # what replicas of a platform that was killed started, if its watcher did not
        if killed:
            logger.warning("killed %d process(es) left running by the replicas of a previous run", len(killed))
        python = self.config.python or default_python()
        self._watcher = _start_watcher(python, groups.folder)
        self._launcher = Launcher(python, SocketFolder(self.root / "sockets"), groups)
        for path in sorted((self.root / "functions").glob("*/*.json")):
            try:
                state = json.loads(path.read_text())
                dep = FunctionDeployment.from_stored(state["deployment"])
                memory_limit(dep)
                self._materialize(state["digest"], state["signature"])
            except (OSError, ValueError, KeyError, StokerError) as exc:
                # One unreadable function must not keep the others down; it is reported in the log.
                logger.warning("cannot restore %s: %s", path, exc)
                continue
            record = FunctionRecord(dep, float(state["created_at"]), int(state["replicas"]))
            fn = _Function(record, state["digest"], state["signature"], self._log(dep))
            self._functions[fn.key] = fn
            for _ in range(record.replicas):
                self._add_slot(fn)
        if self.config.pool_size > 0:
            shutil.rmtree(self.root / "pool", ignore_errors=True)  # leftovers of a platform that was killed
            starter = GenericStarter(self._launcher, self._base_env(), self.root / "pool", lambda lines: None)
            self._pool = WarmPool(self.config.pool_size, starter, "process")
            self._pool.start()

    def warm_replicas(self) -> int:
        """Generic processes ready in the warm pool."""
        return self._pool.ready if self._pool is not None else 0

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._cancel_background()
        slots = [slot for fn in self._functions.values() for slot in fn.slots]
        await asyncio.gather(*(slot.stop() for slot in slots), return_exceptions=True)
        for fn in self._functions.values():
            fn.log.close()
        self._functions.clear()
        if self._launcher is not None:
            self._launcher.sockets.close()
        if self._watcher is not None:
            await _stop_watcher(self._watcher)

    # --- changes -------------------------------------------------------------------------------------------
    async def deploy(self, deployment: FunctionDeployment, bundle_bytes: bytes | None) -> None:
        if bundle_bytes is None:
            raise InvalidRequest(
                f"function {deployment.service!r}: the local backend runs source bundles, not images "
                "(deploy from a handler folder, or start the platform with --backend docker)"
            )
        require_secrets(self.secrets, deployment)
        memory_limit(deployment)  # refused here, before anything is written, when it cannot be honoured
        # Hashing, writing and unpacking a bundle take time in proportion to its size and member count: in a
        # thread, never in the event loop that serves every call. One at a time (with garbage collection too), so
        # two deploys of the same code never unpack into the same folder at once.
        digest = await asyncio.to_thread(bundle.digest, bundle_bytes)
        self._pinned.append(digest)
        try:
            async with self._files:
                signature = await asyncio.to_thread(self._store, digest, bundle_bytes)
            # Its requirements.txt, installed once per requirement set (in a thread: pip's time, not the loop's).
            assert self._launcher is not None, "start() first"
            await asyncio.to_thread(local_deps.ensure, self.root, self.root / "code" / digest, self._launcher.python)
            old = self._functions.get((deployment.service, deployment.namespace))
            if old is None:
                await self._create(deployment, digest, signature)
            else:
                async with old.lock:
                    await self._update(old, deployment, digest, signature)
        finally:
            self._pinned.remove(digest)
            await self._collect_garbage()

    async def _create(self, dep: FunctionDeployment, digest: str, signature: str) -> None:
        replicas = max(dep.settings.min_replicas, 1)
        fn = _Function(FunctionRecord(dep, time.time(), replicas), digest, signature, self._log(dep))
        self._functions[fn.key] = fn
        async with fn.lock:
            for _ in range(replicas):
                self._add_slot(fn)
            failure = await first_outcome(fn.slots, self.config.ready_wait_s)
            unsaved = self._try_save(fn) if failure is None else None
            if failure is not None or unsaved is not None:
                await asyncio.gather(*(slot.stop() for slot in fn.slots))
                del self._functions[fn.key]
                fn.log.close()
                if unsaved is not None:  # not on disk, so not deployed: a restart would not bring it back
                    raise unsaved
                raise DeployFailed(f"function {dep.service!r} failed to start: {failure}")

    async def _update(self, fn: _Function, dep: FunctionDeployment, digest: str, signature: str) -> None:
        settings = dep.settings
        replicas = min(max(fn.record.replicas, settings.min_replicas, 1), settings.max_replicas)
        previous = (fn.record.deployment, fn.digest, fn.signature, fn.slots)
        fn.record.deployment, fn.digest, fn.signature, fn.slots = dep, digest, signature, []
        for _ in range(replicas):
            self._add_slot(fn)
        failure = await first_outcome(fn.slots, self.config.ready_wait_s)
        unsaved = self._try_save(fn, replicas) if failure is None else None
        if failure is not None or unsaved is not None:
            new_slots = fn.slots
            fn.record.deployment, fn.digest, fn.signature, fn.slots = previous
            await asyncio.gather(*(slot.stop() for slot in new_slots))
            if unsaved is not None:  # the saved state is the previous version's, so is what serves
                raise unsaved
            raise DeployFailed(
                f"function {dep.service!r} failed to start; the previous version keeps serving: {failure}"
            )
        fn.record.replicas = replicas
        fn.clear_problems()
        self._in_background(replace_when_ready(fn.slots, previous[3], self.config.ready_wait_s))

    async def remove(self, name: str, namespace: str) -> None:
        fn = self._known(name, namespace)
        async with fn.lock:
            self._functions.pop(fn.key, None)
            (self.root / "functions" / namespace / f"{name}.json").unlink(missing_ok=True)
            await asyncio.gather(*(slot.stop() for slot in fn.slots))
            fn.log.delete()
        await self._collect_garbage()

    # --- internals -----------------------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        """What every replica's environment starts from: ours without the platform's own variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _add_slot(self, fn: _Function, warm: bool = False) -> None:
        """Start one more replica; with ``warm``, from the warm pool when it has a process ready."""
        fn.serial += 1
        dep = fn.record.deployment
        base = self._base_env()
        env = {**base, **function_environment(dep)}
        code_dir = self.root / "code" / fn.digest
        env["STOKER_FUNCTION_DIR"] = str(code_dir)
        assert self._launcher is not None, "start() first"
        deps = local_deps.installed(self.root, code_dir, self._launcher.python)
        if deps is not None:  # its own packages first; a generic pool process started without them cannot serve it
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(deps), env.get("PYTHONPATH", "")) if p)
            warm = False
        secrets_dir = self.root / "secrets" / dep.namespace / dep.service
        env["STOKER_SECRETS_DIR"] = str(self.secrets.materialize(dep.secrets, dep.namespace, secrets_dir))
        # So the replica can check its own bundle before it unpickles anything (SDK functions; runtime/codesign.py).
        bundle_path = self.root / "bundles" / f"{fn.digest}.tar.gz"
        env.update(codesign.replica_env(self.key, dep.namespace, dep.service, bundle_path, fn.signature))
        spec = ProcessSpec(self._launcher, env, code_dir, memory_limit(dep))
        instance = f"{dep.service}-{fn.digest[:6]}-{fn.serial}"
        start = self._warm_start(fn, {k: v for k, v in env.items() if base.get(k) != v}) if warm else None
        problem = fn.reporter(instance)
        fn.slots.append(
            ReplicaSlot(
                instance,
                spec,
                fn.log,
                fn.record.endpoints,
                problem,
                self.config.drain_timeout_s,
                start,
                self._replica_gone,
            )
        )

    def _warm_start(self, fn: _Function, env: dict[str, str]) -> WarmStart | None:
        """A generic process from the pool and the function's signed code for it, or None (pool empty)."""
        process = self._pool.take() if self._pool is not None else None
        if process is None:
            return None
        assert isinstance(process, GenericProcess)
        try:
            code = (self.root / "bundles" / f"{fn.digest}.tar.gz").read_bytes()
        except OSError:
            code = b""
        if not bundle.verify(self.key, code, fn.signature):
            # Only code the platform signed goes out; the regular start reports the problem.
            self._in_background(process.discard())
            return None
        return WarmStart(process, env, code)

    def _log(self, dep: FunctionDeployment) -> FunctionLog:
        path = self.root / "logs" / dep.namespace / f"{dep.service}.log"
        return FunctionLog(dep.service, dep.namespace, path, self.config.log_lines)

    def _materialize(self, digest: str, signature: str) -> Path:
        """The extracted code of a bundle, checked against its signature before anything is extracted."""
        target = self.root / "code" / digest
        if target.is_dir():
            return target
        data = (self.root / "bundles" / f"{digest}.tar.gz").read_bytes()
        if not bundle.verify(self.key, data, signature):
            raise InvalidRequest(f"bundle {digest}: the signature does not match; refusing to run it")
        tmp = target.with_name(digest + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            bundle.unpack(data, tmp, self.config.max_bundle_bytes)  # signed: checked when it was deployed
            os.replace(tmp, target)
        except OSError as exc:  # a full disk: no half-extracted folder stays
            shutil.rmtree(tmp, ignore_errors=True)
            raise state_error(exc, target) from None
        except StokerError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _store(self, digest: str, data: bytes) -> str:
        """Write a bundle and its extracted code (in a thread); return its signature."""
        signature = bundle.sign(self.key, data)
        write_atomic(self.root / "bundles" / f"{digest}.tar.gz", data)
        self._materialize(digest, signature)
        return signature

    def _try_save(self, fn: _Function, replicas: int | None = None) -> StateNotSaved | None:
        try:
            self._save(fn, replicas)
        except StateNotSaved as exc:
            return exc
        return None

    def _save(self, fn: _Function, replicas: int | None = None) -> None:
        """Write the function's state file (with ``replicas`` instead of the current count when given)."""
        dep = fn.record.deployment
        state = {
            "deployment": dep.to_stored(),
            "replicas": fn.record.replicas if replicas is None else replicas,
            "created_at": fn.record.created_at,
            "digest": fn.digest,
            "signature": fn.signature,
        }
        write_atomic(self.root / "functions" / dep.namespace / f"{dep.service}.json", json.dumps(state).encode())

    async def _collect_garbage(self) -> None:
        """Delete bundles and code no function uses any more (in a thread: a folder can hold 10,000 files)."""
        async with self._files:
            used = {fn.digest for fn in self._functions.values()} | set(self._pinned)
            await asyncio.to_thread(self._delete_unused, used)

    def _delete_unused(self, used: set[str]) -> None:
        for folder, suffix in (("bundles", ".tar.gz"), ("code", "")):
            for path in (self.root / folder).glob("*"):
                digest = path.name.removesuffix(suffix)
                if digest not in used and not path.name.endswith(".tmp") and not is_temporary(path):
                    if path.is_dir():
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)


def _start_watcher(python: str, groups: Path) -> subprocess.Popen[bytes] | None:
    """The process that kills what our replicas started if this platform dies without stopping them
    (:mod:`runtime.backends.local.groups`); None when it cannot be started (a restart still cleans up)."""
    try:
        return subprocess.Popen(
            [python, "-m", "runtime.backends.local.groups", str(groups)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            cwd="/",
            env={**os.environ, "PYTHONPATH": _PROJECT_ROOT},
            start_new_session=True,  # not in the terminal's process group: a Ctrl-C is for the platform
        )
    except OSError as exc:
        logger.warning("cannot start the watcher of replica process groups: %s", exc)
        return None


async def _stop_watcher(watcher: subprocess.Popen[bytes]) -> None:
    """End of file on its stdin: it looks for leftovers (none after a clean stop) and exits."""
    if watcher.stdin is not None:
        with contextlib.suppress(OSError):
            watcher.stdin.close()
    try:
        await asyncio.to_thread(watcher.wait, WATCHER_STOP_S)
    except subprocess.TimeoutExpired:
        watcher.kill()
