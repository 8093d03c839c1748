"""The local backend's generic replicas: ``python -m runtime`` processes in pool mode, for :mod:`runtime.pool`.

Each is started like a function replica (inherited loopback socket, ``PR_SET_PDEATHSIG``, its own session, the
platform's variables scrubbed from its environment) plus ``STOKER_POOL=1``, a folder of its own for the code it will
get, and its one-time key written into a pipe it inherits (never in its environment). It counts as started once
``/_/health`` answers.
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

from runtime import pool
from runtime.backends.process import _Output, spawn_runtime
from runtime.backends.readiness import HEALTH, probe
from runtime.specialize import DIR_VAR, KEY_FD_VAR, POOL_VAR

HEALTH_POLL_S = 0.01
START_TIMEOUT_S = 30.0
SPECIALISE_TIMEOUT_S = 30.0  # an import can take a while (numpy); a hung one is cut off here


class GenericProcess:
    """One started generic replica process."""

    def __init__(
        self,
        instance: str,
        transport: asyncio.SubprocessTransport,
        output: _Output,
        port: int,
        key: bytes,
        workdir: Path,
    ) -> None:
        self.instance = instance
        self.transport = transport
        self.output = output
        self.port = port
        self.key = key
        self.workdir = workdir

    async def specialise(self, env: dict[str, str], code: bytes) -> str:
        """Give it a function; "" once it serves it, else the reason it does not."""
        return await pool.specialise("127.0.0.1", self.port, self.key, env, code, SPECIALISE_TIMEOUT_S)

    async def discard(self) -> None:
        if self.transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self.transport.send_signal(signal.SIGKILL)  # it never had a function: nothing to drain
        await self.output.exited
        self.transport.close()
        self.cleanup()

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class GenericStarter:
    """Starts generic processes for a :class:`runtime.pool.WarmPool`."""

    def __init__(self, python: str, env: dict[str, str], root: Path, on_lines: Callable[[list[str]], None]) -> None:
        self.python = python
        self.env = env
        self.root = root
        self.on_lines = on_lines
        self.serial = 0

    async def __call__(self) -> GenericProcess:
        self.serial += 1
        instance = f"pool-{os.getpid()}-{self.serial}"
        workdir = self.root / instance
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
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
            transport, output, port = await spawn_runtime(self.python, env, self.on_lines, extra_fds=(read_fd,))
        finally:
            os.close(read_fd)
        process = GenericProcess(instance, transport, output, port, key, workdir)
        if not await _healthy(port, output):
            await process.discard()
            raise RuntimeError(f"generic replica {instance} exited or did not answer within {START_TIMEOUT_S:g}s")
        return process


async def _healthy(port: int, output: _Output) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and not output.exited.done():
        if await probe("127.0.0.1", port, HEALTH):
            return True
        await asyncio.sleep(HEALTH_POLL_S)
    return False
