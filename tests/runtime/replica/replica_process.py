"""A real replica (``python -m runtime``) in a subprocess, serving on a socket the test bound, as the local
backend runs it. Binding first means requests made before the replica is up just wait in the listen queue."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
_OUR_VARS = ("exec_timeout", "max_inflight", "port", "write_timeout", "read_timeout")


class ReplicaProcess:
    """One replica process, with its stdout and stderr collected line by line as they are written."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STOKER_") and k not in _OUR_VARS}
        environ.update(
            PYTHONPATH=str(ROOT),
            STOKER_FUNCTION_DIR=str(folder),
            STOKER_FUNCTION_NAME="echo",
            STOKER_LISTEN_FD=str(sock.fileno()),
            exec_timeout="5s",
        )
        environ.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=[sock.fileno()],
        )
        sock.close()  # the replica holds its own copy
        self.stdout, self.stderr, self._readers = collect_output(self.proc)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def async_client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kw)

    def wait_for(self, text: str, stream: str = "stdout", timeout: float = 5.0) -> str:
        """The first line of ``stream`` containing ``text``, waiting for it to be written."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if text in line:
                    return line
            time.sleep(0.01)
        raise AssertionError(f"no {stream} line contains {text!r}; got:\n{''.join(lines)}")

    def wait_exit(self, timeout: float = 5.0) -> int:
        """The exit code, once the process has ended and every line it wrote has been collected."""
        return wait_exit(self.proc, self._readers, timeout)

    def release(self, name: str = "release") -> None:
        """Create the marker file a test handler waits for (see :data:`WAIT_FOR_FILE`)."""
        (self.folder / name).touch()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def collect_output(proc: subprocess.Popen[str]) -> tuple[list[str], list[str], list[threading.Thread]]:
    """Lists that fill with ``proc``'s stdout and stderr lines as they are written, and the threads filling them."""
    stdout: list[str] = []
    stderr: list[str] = []
    assert proc.stdout and proc.stderr
    readers = [
        threading.Thread(target=_collect, args=(stream, lines), daemon=True)
        for stream, lines in ((proc.stdout, stdout), (proc.stderr, stderr))
    ]
    for reader in readers:
        reader.start()
    return stdout, stderr, readers


def wait_exit(proc: subprocess.Popen[str], readers: list[threading.Thread], timeout: float = 5.0) -> int:
    """Wait for ``proc`` to exit, then for its readers to reach the end of its output (the pipes close when it
    exits), so its last lines are in the lists: no guess at how long the reader threads need."""
    code = proc.wait(timeout)
    for reader in readers:
        reader.join(timeout)
        assert not reader.is_alive(), "the process exited but its output is still open (a child holds it?)"
    return code


def _collect(stream: IO[str], lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def write_function(folder: Path, source: str | None, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if source is not None:
        (folder / "handler.py").write_text(textwrap.dedent(source))
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


# Handler code: wait (up to 5 s) until the test creates a file in the function folder, so tests decide exactly
# when a call ends instead of guessing with sleeps.
WAIT_FOR_FILE = """
import os, time
HERE = os.path.dirname(os.path.abspath(__file__))

def wait_for_file(name):
    deadline = time.monotonic() + 5
    while not os.path.exists(os.path.join(HERE, name)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(os.path.join(HERE, name))
"""
