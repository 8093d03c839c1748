"""How the local backend starts a replica process (a function's, or a generic one of the warm pool).

``python -m runtime`` is started with:

- a listening Unix socket the backend bound in its private folder (:mod:`runtime.backends.local.sockets`), passed
  as an inherited file descriptor (``STOKER_LISTEN_FD``), so no other process can take its place and no other user
  can connect;
- a session and process group of its own, recorded so that nothing it starts outlives it
  (:mod:`runtime.backends.local.groups`); a Ctrl-C at the terminal reaches only the platform, which drains it;
- ``PR_SET_PDEATHSIG`` (it dies with the platform, even a SIGKILLed one) and the function's memory limit
  (:mod:`runtime.backends.local.limits`);
- its function's folder as working directory, not the platform's; no file descriptor of the platform but the
  ones named (stdin is /dev/null; stdout and stderr are pipes into the function's log); the environment the
  backend built (the platform's own ``STOKER_*`` variables scrubbed).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from runtime.backends.local import sockets as local_sockets
from runtime.backends.local.groups import GroupRecords
from runtime.backends.local.limits import child_setup
from runtime.backends.local.sockets import SocketFolder

logger = logging.getLogger(__name__)
_PROJECT_ROOT = str(Path(__file__).resolve().parents[3])  # the folder that holds the runtime package


class Output(asyncio.SubprocessProtocol):
    """A replica's stdout and stderr, split into lines for its function's log; ``exited`` once it has ended."""

    def __init__(self, on_lines: Callable[[list[str]], None]) -> None:
        self.on_lines = on_lines
        self.partial: dict[int, bytes] = {}
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        data = self.partial.pop(fd, b"") + data
        *complete, rest = data.split(b"\n")
        if rest:
            self.partial[fd] = rest
        if complete:
            self.on_lines([c.decode("utf-8", "replace").rstrip("\r") for c in complete])

    def process_exited(self) -> None:
        for _fd, rest in sorted(self.partial.items()):
            self.on_lines([rest.decode("utf-8", "replace")])
        self.partial.clear()
        if not self.exited.done():
            self.exited.set_result(None)


class Spawned:
    """One started replica process."""

    def __init__(
        self, transport: asyncio.SubprocessTransport, output: Output, address: str, launcher: Launcher
    ) -> None:
        self.transport = transport
        self.output = output
        self.address = address  # the path of its socket
        self.pid: int = transport.get_pid()
        self._launcher = launcher
        self._ended = False

    def ended(self) -> None:
        """It has exited: kill whatever it started that is still running and remove its socket. Idempotent."""
        if not self._ended:
            self._ended = True
            self._launcher.groups.ended(self.pid)
            local_sockets.remove(self.address)

    def returncode(self) -> int:
        code = self.transport.get_returncode()
        return code if code is not None else -1


class Launcher:
    """Starts replica processes of one platform (see the module docstring)."""

    def __init__(self, python: str, sockets: SocketFolder, groups: GroupRecords) -> None:
        self.python = python
        self.sockets = sockets
        self.groups = groups

    async def spawn(
        self,
        env: dict[str, str],
        on_lines: Callable[[list[str]], None],
        cwd: Path,
        memory: int | None = None,
        extra_fds: tuple[int, ...] = (),
    ) -> Spawned:
        """Start ``python -m runtime``; raises OSError (or SubprocessError) when no process can be started."""
        loop = asyncio.get_running_loop()
        sock, address = self.sockets.bind()
        env = {**env, "STOKER_LISTEN_FD": str(sock.fileno())}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH", "")) if p)
        output = Output(on_lines)
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: output,
                self.python,
                "-m",
                "runtime",
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                pass_fds=(sock.fileno(), *extra_fds),
                preexec_fn=child_setup(memory),
                start_new_session=True,
            )
        except BaseException:
            local_sockets.remove(address)
            raise
        finally:
            sock.close()
        spawned = Spawned(transport, output, address, self)
        try:
            self.groups.add(spawned.pid)
        except OSError as exc:  # it still dies with its slot; only a platform crash could orphan what it starts
            logger.warning("cannot record the process group of replica process %d: %s", spawned.pid, exc)
        return spawned
