"""The local backend's generic replicas: ``python -m runtime`` processes in pool mode, for :mod:`runtime.backends.pool`.

Each is started like a function replica (:mod:`runtime.backends.local.launch`: its own Unix socket, process group
and session, ``PR_SET_PDEATHSIG``, the platform's variables scrubbed from its environment) plus ``STOKER_POOL=1``, a
folder of its own for the code it will get (also its working directory), and its one-time key written into a pipe
it inherits (never in its environment). It counts as started once ``/_/health`` answers. A function with a memory
limit gets it just before the specialisation request (:func:`runtime.backends.local.limits.limit_memory`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from runtime.backends import pool
from runtime.backends.local.launch import Launcher, Spawned
from runtime.backends.local.limits import limit_memory
from runtime.backends.readiness import probe
from runtime.contract import DIR_VAR, HEALTH_PATH, KEY_FD_VAR, POOL_VAR

HEALTH_POLL_S = 0.01
START_TIMEOUT_S = 30.0
SPECIALISE_TIMEOUT_S = 30.0  # an import can take a while (numpy); a hung one is cut off here


class GenericProcess:
    """One started generic replica process."""

    def __init__(self, instance: str, process: Spawned, key: bytes, workdir: Path) -> None:
        self.instance = instance
        self.process = process
        self.key = key
        self.workdir = workdir

    async def specialise(self, env: dict[str, str], code: bytes, memory: int | None = None) -> str:
        """Give it a function; "" once it serves it, else the reason it does not."""
        if memory is not None:
            try:
                limit_memory(self.process.pid, memory)
            except OSError as exc:
                return f"cannot set its memory limit: {exc}"
        return await pool.specialise(self.process.address, 0, self.key, env, code, SPECIALISE_TIMEOUT_S)

    async def discard(self) -> None:
        transport = self.process.transport
        if transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                transport.send_signal(signal.SIGKILL)  # it never had a function: nothing to drain
        await self.process.output.exited
        transport.close()
        self.cleanup()

    def cleanup(self) -> None:
        """It has exited: kill what it left running, remove its socket and its folder."""
        self.process.ended()
        shutil.rmtree(self.workdir, ignore_errors=True)


class GenericStarter:
    """Starts generic processes for a :class:`runtime.backends.pool.WarmPool`."""

    def __init__(self, launcher: Launcher, env: dict[str, str], root: Path, on_lines: Callable[[list[str]], None]):
        self.launcher = launcher
        self.env = env
        self.root = root
        self.on_lines = on_lines
        self.serial = 0

    async def __call__(self) -> GenericProcess:
        self.serial += 1
        instance = f"pool-{os.getpid()}-{self.serial}"
        workdir = self.root / instance
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True, mode=0o700)
        key = pool.new_key()
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, key)  # 32 bytes: fits the pipe buffer, so this never blocks
            os.close(write_fd)
            env = {
                **self.env,
                POOL_VAR: "1",
                KEY_FD_VAR: str(read_fd),
                DIR_VAR: str(workdir),
                "STOKER_INSTANCE": instance,
            }
            spawned = await self.launcher.spawn(env, self.on_lines, workdir, extra_fds=(read_fd,))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            os.close(read_fd)
        process = GenericProcess(instance, spawned, key, workdir)
        try:
            healthy = await _healthy(spawned)
        except BaseException:  # the pool closed (the platform stops) while this one started: it must not outlive it
            with contextlib.suppress(Exception):
                await process.discard()
            raise
        if not healthy:
            await process.discard()
            raise RuntimeError(f"generic replica {instance} exited or did not answer within {START_TIMEOUT_S:g}s")
        return process


async def _healthy(process: Spawned) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and not process.output.exited.done():
        if await probe(process.address, 0, HEALTH_PATH):
            return True
        await asyncio.sleep(HEALTH_POLL_S)
    return False
