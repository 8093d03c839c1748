"""The gateway's upstream client and a replica that closes a pooled keep-alive connection (it died, or timed the
connection out) just before the next call, while the event loop has not yet seen the close: the call goes out on a
fresh connection and succeeds, instead of being written into a dead one and failing with 502 (found by the replica
SIGKILL chaos test: one call that started after a kill failed).

Runs on uvloop, as the gateway does, over a Unix socket (the local backend) and TCP (containers); the replica is a
plain socket server in a thread, so the test decides exactly when it closes.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import uvloop

from gateway.upstream import Upstream, UpstreamError

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class ClosingReplica:
    """Answers one request per connection, then closes that connection when told to (and waits to be told again)."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.listener.listen(8)
        self.close_now = threading.Event()
        self.closed = threading.Event()
        self.seen: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            self.seen.append(conn.recv(65536))
            conn.sendall(ANSWER)
            self.close_now.wait(30)
            self.close_now.clear()
            conn.close()
            self.closed.set()


@pytest.fixture(params=["unix", "tcp"])
def replica(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[ClosingReplica, str, int]:
    if request.param == "unix":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(tmp_path / "r.sock"))
        return ClosingReplica(listener), str(tmp_path / "r.sock"), 0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    return ClosingReplica(listener), "127.0.0.1", listener.getsockname()[1]


def test_a_call_after_the_replica_closed_its_pooled_connection_goes_out_on_a_new_one(
    replica: tuple[ClosingReplica, str, int],
) -> None:
    server, host, port = replica

    async def scenario() -> list[tuple[int, bytes]]:
        upstream = Upstream()
        try:
            first = await upstream.request(host, port, "POST", b"/x", [], b"one", 10)
            # The replica closes the idle connection; the event loop does not run before the next request, so the
            # pool still holds the connection as open, as when a replica dies between two calls.
            server.close_now.set()
            assert server.closed.wait(10)
            second = await upstream.request(host, port, "POST", b"/y", [], b"two", 10)
            return [(first.status, first.body), (second.status, second.body)]
        finally:
            server.close_now.set()
            upstream.close()

    assert uvloop.run(scenario()) == [(200, b"ok"), (200, b"ok")]
    assert [request.split(b" ")[1] for request in server.seen] == [b"/x", b"/y"]  # each sent once, none lost
    expected_host = b"localhost" if host.startswith("/") else f"{host}:{port}".encode()
    assert server.seen[0].startswith(b"POST /x HTTP/1.1\r\nhost: " + expected_host + b"\r\n")


class ReadThenCloseReplica(ClosingReplica):
    """Answers the first request of a connection, then reads the next one on it and closes without answering: the
    close crossed the request on the wire (a replica dying, or timing the idle connection out, just as it arrives)."""

    def _serve(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            self.seen.append(conn.recv(65536))
            conn.sendall(ANSWER)
            self.seen.append(conn.recv(65536))  # the next request arrives...
            conn.close()  # ...and is never answered


@pytest.mark.parametrize(("method", "replayable"), [("GET", True), ("HEAD", True), ("POST", False), ("PUT", False)])
def test_a_reused_connection_closed_under_a_request_lets_only_a_replayable_one_go_again(
    tmp_path: Path, method: str, replayable: bool
) -> None:
    """A GET or HEAD that met a closing reused connection before a byte of its answer is reported as not sent, so
    the proxy sends it again on a fresh connection (as Go's net/http and urllib3 do); a POST or PUT may have run
    and is a 502, never a second send."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "r.sock"))
    server = ReadThenCloseReplica(listener)

    async def scenario() -> UpstreamError:
        upstream = Upstream()
        try:
            await upstream.request(str(tmp_path / "r.sock"), 0, "GET", b"/first", [], b"", 10)
            with pytest.raises(UpstreamError) as caught:
                await upstream.request(str(tmp_path / "r.sock"), 0, method, b"/second", [], b"", 10)
            return caught.value
        finally:
            upstream.close()

    error = uvloop.run(scenario())
    assert error.sent is not replayable, error
    assert any(request.startswith(f"{method} /second".encode()) for request in server.seen)
