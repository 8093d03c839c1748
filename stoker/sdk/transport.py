"""Keep-alive HTTP to the gateway's function routes, one connection per thread (``.remote()`` and ``.map()``).

:class:`stoker.client.Client` opens a connection per request, which is right for management calls; a map of
thousands of small calls would spend most of its time in TCP handshakes. Function routes need no credentials.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)


class Unreachable(Exception):
    """No answer came (refused, reset, timed out); the message says which."""


class Transport:
    """POSTs to one gateway over per-thread persistent connections."""

    def __init__(self, gateway: str, timeout: float) -> None:
        parts = urlsplit(gateway)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    def post(
        self, path: str, body: bytes, headers: Mapping[str, str], timeout: float | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """``(status, lower-case headers, body)``; :class:`Unreachable` when no answer came."""
        for attempt in (1, 2):
            conn, reused = self._connection(timeout)
            try:
                conn.request("POST", self._prefix + path, body=body, headers=dict(headers))
                resp = conn.getresponse()
                data = resp.read()
            except _STALE as exc:
                self._drop()
                # A kept-alive connection the server closed while idle fails before the request reached anyone:
                # send it once more on a fresh one. A fresh connection failing is a real failure.
                if reused and attempt == 1:
                    continue
                raise Unreachable(f"the connection was closed before an answer came ({type(exc).__name__})") from None
            except TimeoutError:
                self._drop()
                raise Unreachable("no answer in time") from None
            except OSError as exc:
                self._drop()
                raise Unreachable(exc.strerror or str(exc) or type(exc).__name__) from None
            if resp.will_close:
                self._drop()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        raise AssertionError("unreachable")

    def _connection(self, timeout: float | None) -> tuple[http.client.HTTPConnection, bool]:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        wanted = timeout if timeout is not None else self.timeout
        if conn is not None:
            conn.timeout = wanted
            if conn.sock is not None:
                conn.sock.settimeout(wanted)
            return conn, True
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=wanted)
        self._local.conn = conn
        return conn, False

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None
