"""The gateway's upstream client and replicas on Unix sockets (the local backend): it talks to them, and a request
written to a pooled connection whose replica had already closed it (EPIPE) is reported as never sent, so the proxy
tries another replica instead of failing a call that no replica ever saw.

Runs on uvloop, as the gateway does; the replica is a plain socket server in a thread, so the test decides exactly
when it closes.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import uvloop

from gateway.upstream import Upstream, UpstreamError

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class OneConnectionReplica:
    """Accepts one connection, answers one request on it, then closes it when told to."""

    def __init__(self, path: Path) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.answered = threading.Event()
        self.close_now = threading.Event()
        self.closed = threading.Event()
        self.seen: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        request = conn.recv(65536)
        self.seen.append(request)
        conn.sendall(ANSWER)
        self.answered.set()
        self.close_now.wait(30)
        conn.close()
        self.closed.set()


def test_a_replica_on_a_unix_socket_answers_and_a_dead_pooled_connection_is_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "r.sock"
    replica = OneConnectionReplica(path)

    async def scenario() -> UpstreamError:
        upstream = Upstream()
        try:
            first = await upstream.request(str(path), 0, "GET", b"/x", [], b"", 10)
            assert (first.status, first.body) == (200, b"ok")
            assert replica.seen[0].startswith(b"GET /x HTTP/1.1\r\nhost: localhost\r\n")
            # The replica closes the idle connection; the event loop does not run before the next request, so the
            # pool still holds the connection as open, as when a replica dies between two calls.
            replica.close_now.set()
            assert replica.closed.wait(10)
            with pytest.raises(UpstreamError) as failed:
                await upstream.request(str(path), 0, "GET", b"/y", [], b"", 10)
            return failed.value
        finally:
            upstream.close()

    error = uvloop.run(scenario())
    assert error.sent is False, str(error)  # never reached a replica: safe to send to another one
    assert len(replica.seen) == 1
