"""A TCP proxy in front of a real redis-server that makes Redis "die" at one precise moment: once armed, the first
command containing a given word is forwarded and executed, its reply is swallowed, every connection is dropped and
new ones are refused until :meth:`RedisCut.restore`. What a client sees is Redis dying right after it executed that
command, the moment a SIGKILL hits only by chance."""

from __future__ import annotations

import contextlib
import socket
import threading


class RedisCut:
    def __init__(self, upstream_port: int, needle: bytes) -> None:
        self.upstream_port = upstream_port
        self.needle = needle
        self.armed = False
        self.down = False
        self.tripped = threading.Event()
        self.refused = 0  # connections refused while down (the client noticed and tried again)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self) -> None:
        self.armed = True

    def restore(self) -> None:
        self.down = False

    def close(self) -> None:
        self._listener.close()
        self._cut()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open |= {client, upstream}
            swallow = threading.Event()  # set once this connection carried the tripping command
            threading.Thread(target=self._up, args=(client, upstream, swallow), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, swallow), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self.armed and self.needle in data:
                    self.armed = False
                    swallow.set()
                upstream.sendall(data)

    def _down(self, upstream: socket.socket, client: socket.socket, swallow: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if swallow.is_set():  # Redis executed the command and answered: the answer never arrives
                    self.down = True
                    self._cut()
                    self.tripped.set()
                    return
                client.sendall(data)

    def _cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
