"""A stand-in for an OpenFaaS classic-watchdog image, built in the test from stoker's base image (the machine has no
registry access): ``fprocess`` set and no of-watchdog ``mode``, as ``functions/alpine`` and every classic template
image. Its server answers ``/_/health``; any other path is "a call of the function" (the classic watchdog forks
``fprocess`` there) and answers with every path it saw before, so a test sees what the platform probed. It ignores
SIGTERM, like a function that is slow to stop: ``docker stop`` waits out its whole grace period."""

from __future__ import annotations

import io
import tarfile
import uuid
from typing import Any

SERVER = r"""
import json, signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

signal.signal(signal.SIGTERM, signal.SIG_IGN)
seen = []

class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = b"OK" if self.path == "/_/health" else json.dumps(seen).encode()
        seen.append(self.path)
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""

DOCKERFILE = """
FROM {base}
ENV fprocess=cat
COPY server.py /srv/server.py
ENTRYPOINT []
CMD ["python3", "/srv/server.py"]
"""


def build(client: Any) -> str:
    """Build the image under a tag unique to this run; the caller removes it."""
    from builder.base import ensure_base_image
    from runtime.backends.containers import DockerSettings

    base = ensure_base_image(client, DockerSettings.from_env().base_image, out=lambda _: None).ref
    tag = f"stoker-test-watchdog-{uuid.uuid4().hex[:8]}:1"
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", DOCKERFILE.format(base=base)), ("server.py", SERVER)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)
    return tag
