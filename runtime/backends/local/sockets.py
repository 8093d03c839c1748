"""Where local replicas listen: Unix sockets in a private folder, reachable by the platform's user only.

A loopback TCP port is open to every process on the machine (other users, containers on the host network, a web
page in a browser that posts to ``127.0.0.1``), and a replica answers anything that reaches it, bypassing the
gateway's authentication and limits. A Unix socket in a 0700 folder (``$STOKER_HOME/local/sockets``) can only be
reached by processes of the platform's user. The backend binds each socket itself and hands it to the replica as an
inherited file descriptor, so no other process can take its place.

Socket paths must fit ``sun_path`` (107 bytes on Linux). When ``STOKER_HOME`` is too deep for that, the folder is
reached through ``/proc/self/fd/<folder fd>/``, a short path that works inside this process (the gateway is in the
same process), and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

MAX_PATH = 107  # sun_path is 108 bytes on Linux, NUL included
BACKLOG = 1024


class SocketFolder:
    """The private folder of replica sockets; cleared of a previous run's leftovers when opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.rmtree(path, ignore_errors=True)  # the home is locked: nothing else of ours can use these
        path.mkdir(parents=True, mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is cut by the umask; this one is exact
        self._fd: int | None = None
        self._serial = 0
        longest = str(path / self._name(10**9))
        if len(longest.encode()) > MAX_PATH:
            self._fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def bind(self) -> tuple[socket.socket, str]:
        """A new listening socket and the address to connect to it (a path)."""
        self._serial += 1
        name = self._name(self._serial)
        address = f"/proc/self/fd/{self._fd}/{name}" if self._fd is not None else str(self.path / name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)
            sock.bind(address)
            os.chmod(address, 0o600)
            sock.listen(BACKLOG)
        except BaseException:
            sock.close()
            raise
        return sock, address

    @staticmethod
    def _name(serial: int) -> str:
        return f"r{os.getpid()}-{serial}.sock"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def remove(address: str) -> None:
    """Delete a socket whose replica has ended."""
    with contextlib.suppress(OSError):
        os.unlink(address)
