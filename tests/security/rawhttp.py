"""A client that sends exactly the bytes it is given (no URL or header normalisation), for hostile-client tests."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


class Connection:
    """One keep-alive connection; :meth:`call` sends raw bytes and reads one answer (content-length or chunked)."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        self.sock = socket.create_connection(address(url), timeout=timeout)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def offer(self, data: bytes) -> bool:
        """Send what the server takes: False when it answered and closed before the end (a refusal)."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def call(self, request: bytes) -> Answer:
        self.send(request)
        return self.read_answer()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("closed by the server")
        self.buffer += data

    def read_head(self) -> Answer:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        answer = Answer(int(lines[0].split()[1]))
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer.headers[name.strip().lower()] = value.strip()
        return answer

    def read_answer(self) -> Answer:
        answer = self.read_head()
        while 100 <= answer.status < 200:  # "100 Continue" and the like come before the answer
            answer = self.read_head()
        if "content-length" in answer.headers:
            length = int(answer.headers["content-length"])
            while len(self.buffer) < length:
                self._fill()
            answer.body, self.buffer = self.buffer[:length], self.buffer[length:]
        elif answer.headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buffer:
                    self._fill()
                size_line, self.buffer = self.buffer.split(b"\r\n", 1)
                size = int(size_line, 16)
                while len(self.buffer) < size + 2:
                    self._fill()
                body, self.buffer = body + self.buffer[:size], self.buffer[size + 2 :]
                if size == 0:
                    break
            answer.body = body
        return answer

    def closed_by_peer(self, timeout: float) -> bool:
        """Whether the server closes the connection (after sending whatever it sends) within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
            self.buffer += data
        return False


def request(method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"") -> bytes:
    """A request's bytes, exactly as given (plus host and content-length)."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"host: test"]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def call(url: str, raw: bytes, timeout: float = 30) -> Answer:
    with Connection(url, timeout) as conn:
        return conn.call(raw)


def rss_bytes(pid: int, field_name: str = "VmRSS") -> int:
    """Resident memory of a process (``VmHWM``: its peak since start or since :func:`reset_peak`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field_name} for process {pid}")


def reset_peak(pid: int) -> None:
    """Reset a process's peak resident memory (``VmHWM``) to its current size (Linux 4.0 and later)."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def nonce() -> str:
    return os.urandom(8).hex()
