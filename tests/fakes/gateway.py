"""A stand-in for a gateway, for the CLI's and client's tests that need no platform: an HTTP server that records
every request it gets and answers what the test scripted (the real gateway is tested against a real platform)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeGateway:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # (method, path) -> answers used in turn; the last one repeats. Unscripted routes answer 200 "{}".
    script: dict[tuple[str, str], list[tuple[int, bytes, dict[str, str]]]] = field(default_factory=dict)

    def on(self, method: str, path: str, status: int = 200, body: Any = b"", **headers: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.script.setdefault((method, path), []).append((status, data, headers))

    def answer(self, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
        answers = self.script.get((method, path))
        if not answers:
            return 200, b"{}", {}
        return answers.pop(0) if len(answers) > 1 else answers[0]


@contextlib.contextmanager
def fake_gateway() -> Iterator[FakeGateway]:
    """A scripted gateway on a loopback port, for the length of the block."""
    fake = FakeGateway()

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), headers, body))
            status, data, extra = fake.answer(self.command, parts.path)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k.replace("_", "-"), v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
