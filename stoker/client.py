"""A small synchronous client of the gateway's management API and function routes, on the standard library.

The CLI uses it and the Python SDK builds on it. Every failure is a :class:`GatewayError` whose message is
one line fit for a user: the gateway's own error text (it answers ``{"error": "..."}`` or plain text), or
what went wrong reaching it. ``status`` is the HTTP status, or 0 when no answer came.

Credentials for ``/system/*``, first found wins: the ``token`` or ``password`` argument, ``STOKER_TOKEN``
(a bearer token), ``STOKER_ADMIN_PASSWORD``, ``OPENFAAS_PASSWORD``, then ``$STOKER_HOME/credentials``
written by ``stoker up``. The user name is ``admin``.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from stoker import config, credentials
from stoker.errors import StokerError
from stoker.names import validate_name

DEFAULT_TIMEOUT_S = 30.0
NDJSON = "application/x-ndjson"
# A call may run as long as the gateway's own upstream ceiling (Config.upstream_timeout_s) and a little more.
DEFAULT_INVOKE_TIMEOUT_S = 310.0
_MAX_ERROR_CHARS = 500

Query = Mapping[str, str] | Iterable[tuple[str, str]]


class GatewayError(StokerError):
    """The gateway refused a request (``status``: its HTTP status) or could not be reached (``status`` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Reply:
    """One function invocation's answer, whatever its status."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Client:
    """Talks to one gateway. Cheap to create; opens one connection per request."""

    def __init__(
        self,
        gateway: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.gateway = (gateway or config.gateway_url(environ)).rstrip("/")
        parts = urlsplit(self.gateway)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayError(f"{self.gateway!r} is not a gateway URL (expected http://host:port)")
        self._scheme, self._host, self._prefix = parts.scheme, parts.hostname, parts.path.rstrip("/")
        try:
            self._port = parts.port
        except ValueError:
            raise GatewayError(f"{self.gateway!r} has an invalid port") from None
        self.timeout = timeout
        self._auth, self._auth_source = _credentials(password, token, environ)

    # -- management API ---------------------------------------------------------------------------

    def list_functions(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """``GET /system/functions``: every function in ``namespace`` (the gateway's default if None)."""
        data = self._json("GET", "/system/functions", query=_ns(namespace))
        return data if isinstance(data, list) else []

    def get_function(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        """``GET /system/function/{name}``: one function's status."""
        data = self._json("GET", f"/system/function/{quote(name, safe='')}", query=_ns(namespace))
        return data if isinstance(data, dict) else {}

    def deploy(self, body: Mapping[str, Any], update: bool = False, on_log: Callable[[str], None] | None = None) -> str:
        """Create the function, or replace it when it exists; return ``"created"`` or ``"updated"``.

        ``update=False`` POSTs, then PUTs on 409; ``update=True`` PUTs, then POSTs on 404. With ``on_log``, the
        gateway streams the progress of the image build a source deploy may need, line by line, to it (a gateway
        that does not stream, OpenFaaS's, just answers).
        """
        first, second, retry_on = ("PUT", "POST", 404) if update else ("POST", "PUT", 409)
        try:
            self._deploy_call(first, body, on_log)
            return "created" if first == "POST" else "updated"
        except GatewayError as exc:
            if exc.status != retry_on:
                raise
        self._deploy_call(second, body, on_log)
        return "created" if second == "POST" else "updated"

    def _deploy_call(self, method: str, body: Mapping[str, Any], on_log: Callable[[str], None] | None) -> None:
        if on_log is None:
            self._call(method, "/system/functions", body)
            return
        headers = {"Content-Type": "application/json", "Accept": NDJSON}
        # Builds can take minutes; the gateway sends a line (or a blank one) at least every 10 s meanwhile.
        conn, resp = self._open(method, "/system/functions", json.dumps(body).encode(), headers, timeout=120.0)
        try:
            self._raise_for_status(resp)
            if NDJSON not in (resp.getheader("content-type") or ""):
                resp.read()
                return
            for raw in resp:
                if not raw.strip():
                    continue
                try:
                    event = json.loads(raw)
                except ValueError:
                    raise GatewayError(f"the gateway at {self.gateway} sent a progress line that is not JSON") from None
                if "log" in event:
                    on_log(str(event["log"]))
                elif int(event.get("status", 0)) >= 300:
                    raise GatewayError(str(event.get("error") or "deploy failed"), int(event["status"]))
                else:
                    return
            raise GatewayError(f"the gateway at {self.gateway} ended the deploy's progress without its outcome")
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def remove(self, name: str, namespace: str | None = None) -> None:
        """``DELETE /system/functions`` with ``{"functionName", "namespace"}``."""
        body: dict[str, Any] = {"functionName": name}
        if namespace:
            body["namespace"] = namespace
        self._call("DELETE", "/system/functions", body)

    def scale(self, name: str, replicas: int, namespace: str | None = None) -> None:
        """``POST /system/scale-function/{name}`` with ``{"serviceName", "replicas", "namespace"}``."""
        body: dict[str, Any] = {"serviceName": name, "replicas": replicas}
        if namespace:
            body["namespace"] = namespace
        self._call("POST", f"/system/scale-function/{quote(name, safe='')}", body)

    def secrets(self, namespace: str | None = None) -> list[str]:
        """``GET /system/secrets``: the secret names of a namespace (values are never listed)."""
        data = self._json("GET", "/system/secrets", query=_ns(namespace))
        return [str(s.get("name")) for s in data if isinstance(s, dict)] if isinstance(data, list) else []

    def set_secret(self, name: str, value: bytes, namespace: str | None = None, update: bool = False) -> None:
        """``POST`` (create) or ``PUT`` (update) ``/system/secrets``; binary values travel as ``rawValue``."""
        body: dict[str, Any] = {"name": name}
        try:
            body["value"] = value.decode()
        except UnicodeDecodeError:
            body["rawValue"] = base64.b64encode(value).decode()
        if namespace:
            body["namespace"] = namespace
        self._call("PUT" if update else "POST", "/system/secrets", body)

    def remove_secret(self, name: str, namespace: str | None = None, force: bool = False) -> None:
        """``DELETE /system/secrets`` with ``{"name", "namespace"}``; ``force`` even when functions use it."""
        body: dict[str, Any] = {"name": name}
        if namespace:
            body["namespace"] = namespace
        self._call("DELETE", "/system/secrets", body, query={"force": "true"} if force else None)

    def info(self) -> dict[str, Any]:
        """``GET /system/info``: provider, orchestration and version."""
        data = self._json("GET", "/system/info")
        return data if isinstance(data, dict) else {}

    def namespaces(self) -> list[str]:
        """``GET /system/namespaces``."""
        data = self._json("GET", "/system/namespaces")
        return [str(n) for n in data] if isinstance(data, list) else []

    def namespace(self, name: str) -> dict[str, Any]:
        """``GET /system/namespace/{name}``: ``{name, labels, annotations}``."""
        data = self._json("GET", f"/system/namespace/{validate_name(name, 'namespace')}")
        return data if isinstance(data, dict) else {}

    def save_namespace(
        self, name: str, labels: dict[str, str], annotations: dict[str, str], update: bool = False
    ) -> None:
        """``POST /system/namespace/`` (create) or ``PUT /system/namespace/{name}`` (replace labels and
        annotations), with ``openfaas: "1"`` in both, as faas-cli sends them."""
        name = validate_name(name, "namespace")
        body = {"name": name, "labels": {**labels, "openfaas": "1"}, "annotations": {**annotations, "openfaas": "1"}}
        self._call("PUT" if update else "POST", f"/system/namespace/{name if update else ''}", body)

    def remove_namespace(self, name: str) -> None:
        """``DELETE /system/namespace/{name}`` (refused while functions or secrets are in it)."""
        name = validate_name(name, "namespace")
        self._call("DELETE", f"/system/namespace/{name}", {"name": name, "labels": {"openfaas": "1"}})

    def logs(
        self,
        name: str,
        namespace: str | None = None,
        tail: int | None = None,
        follow: bool = False,
        since: datetime | str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """``GET /system/logs``: log entries ``{name, namespace, instance, timestamp, text}`` as they arrive.

        The answer is NDJSON read line by line, so with ``follow`` the iterator yields until the caller stops
        or the gateway closes the stream.
        """
        query: dict[str, str] = {"name": name, "follow": "true" if follow else "false"}
        query.update(_ns(namespace))
        if tail is not None:
            query["tail"] = str(tail)
        if since is not None:
            query["since"] = since if isinstance(since, str) else since.isoformat().replace("+00:00", "Z")
        conn, resp = self._open("GET", "/system/logs", query=query, timeout=None if follow else self.timeout)
        try:
            self._raise_for_status(resp)
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise self._unreachable(exc) from None
                if not line:
                    return
                line = line.strip()
                if not line:
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    entry = {"text": line.decode("utf-8", "replace")}  # tolerate a non-JSON line
                if isinstance(entry, dict):
                    yield entry
        finally:
            conn.close()

    # -- queue (docs/queue.md) --------------------------------------------------------------------

    def queues(self) -> list[dict[str, Any]]:
        """``GET /system/queues``: every stream of every function with its length, lag, pending and dead letters."""
        data = self._json("GET", "/system/queues")
        return data if isinstance(data, list) else []

    def dead_letters(self, function: str) -> list[dict[str, Any]]:
        """``GET /system/queue/{function}/dead``: the dead letters of a function (``name`` or ``name.namespace``)."""
        data = self._json("GET", f"/system/queue/{quote(function, safe='.')}/dead")
        return data if isinstance(data, list) else []

    def replay(self, function: str, ids: list[str] | None = None) -> int:
        """``POST /system/queue/{function}/replay``: move dead letters (all, or ``ids``) back to the queue."""
        raw = self._call("POST", f"/system/queue/{quote(function, safe='.')}/replay", {"ids": ids} if ids else {})
        data = json.loads(raw) if raw.strip() else {}
        return int(data.get("replayed", 0)) if isinstance(data, dict) else 0

    def triggers(self) -> list[dict[str, str]]:
        """``GET /system/triggers``: queue triggers added with :meth:`set_trigger`."""
        data = self._json("GET", "/system/triggers")
        return data if isinstance(data, list) else []

    def set_trigger(self, function: str, stream: str, present: bool = True) -> None:
        """``POST`` (or ``DELETE`` when not ``present``) ``/system/triggers``: subscribe a function to a stream."""
        self._call("POST" if present else "DELETE", "/system/triggers", {"function": function, "stream": stream})

    def publish(self, stream: str, body: bytes = b"", fields: Mapping[str, str] | None = None) -> str:
        """``POST /system/streams/{stream}``: append one message to a stream, on either queue, and return its id:
        ``fields`` (sent as a JSON object) when given, else ``body`` as the message's ``body`` field."""
        if fields:
            payload, kind = json.dumps(dict(fields)).encode(), "application/json"
        else:
            payload, kind = body, "application/octet-stream"
        path = f"/system/streams/{quote(stream, safe='')}"
        conn, resp = self._open("POST", path, payload, headers={"Content-Type": kind})
        try:
            self._raise_for_status(resp)
            data = json.loads(resp.read() or b"{}")
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        except ValueError:
            raise GatewayError(
                f"the gateway at {self.gateway} answered {path} with something that is not JSON"
            ) from None
        finally:
            conn.close()
        return str(data.get("id", "")) if isinstance(data, dict) else ""

    # -- function routes --------------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        body: bytes = b"",
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: Query | None = None,
        namespace: str | None = None,
        path: str = "",
        asynchronous: bool = False,
        timeout: float = DEFAULT_INVOKE_TIMEOUT_S,
    ) -> Reply:
        """Call ``/function/{name}[.{namespace}][/{path}]`` (``/async-function/`` when ``asynchronous``).

        Any status comes back as a :class:`Reply`; only a failure to reach the gateway raises.
        """
        target = name + (f".{namespace}" if namespace else "")
        route = "/async-function/" if asynchronous else "/function/"
        url_path = route + quote(target, safe=".") + ("/" + path.lstrip("/") if path else "")
        conn, resp = self._open(
            method.upper(),
            url_path,
            body,
            headers=dict(headers or {}),
            query=query,
            auth=False,
            timeout=timeout,
        )
        return self._reply(conn, resp)

    def async_result(self, call_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> Reply:
        """``GET /system/async-result/{call_id}`` (authenticated): 404 unknown or expired, 202 pending, 200 done
        (the function's body; its status in ``X-Function-Status``). Any status comes back as a :class:`Reply`."""
        conn, resp = self._open("GET", f"/system/async-result/{quote(call_id, safe='')}", timeout=timeout)
        return self._reply(conn, resp)

    def _reply(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> Reply:
        """The whole answer, whatever its status; the connection is closed after."""
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def function_url(self, name: str, namespace: str | None = None) -> str:
        """The public URL of a function (``name.namespace`` outside the default namespace)."""
        return f"{self.gateway}/function/{name}" + (f".{namespace}" if namespace else "")

    # -- plumbing ---------------------------------------------------------------------------------

    def _json(self, method: str, path: str, query: Query | None = None) -> Any:
        data = self._call(method, path, query=query)
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise GatewayError(
                f"the gateway at {self.gateway} answered {path} with something that is not JSON"
            ) from None

    def _call(self, method: str, path: str, body: Any = None, query: Query | None = None) -> bytes:
        payload = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn, resp = self._open(method, path, payload, headers=headers, query=query)
        try:
            self._raise_for_status(resp)
            return resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def _open(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        query: Query | None = None,
        auth: bool = True,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn: http.client.HTTPConnection
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        url = self._prefix + path
        encoded = urlencode(list(query.items()) if isinstance(query, Mapping) else list(query or []))
        if encoded:
            url += "?" + encoded
        sent = {"User-Agent": "stoker-client", **(headers or {})}
        if auth and self._auth:
            sent["Authorization"] = self._auth
        try:
            conn.request(method, url, body=body or None, headers=sent)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._unreachable(exc) from None

    def _raise_for_status(self, resp: http.client.HTTPResponse) -> None:
        if 200 <= resp.status < 300:
            return
        text = error_text(resp.read(), resp.status, resp.reason)
        if resp.status == 401:
            text = (
                f"the gateway at {self.gateway} refused the credentials ({self._auth_source}): set "
                "STOKER_ADMIN_PASSWORD (or OPENFAAS_PASSWORD), or point STOKER_HOME at the folder where "
                "'stoker up' wrote its credentials file; if this is not your platform, give --gateway URL or set "
                "STOKER_GATEWAY"
            )
        raise GatewayError(text, resp.status)

    def _unreachable(self, exc: BaseException) -> GatewayError:
        if isinstance(exc, ConnectionRefusedError):
            reason = (
                "connection refused (is 'stoker up' running? If it listens elsewhere, give --gateway URL or set "
                "STOKER_GATEWAY)"
            )
        elif isinstance(exc, socket.gaierror):
            reason = f"unknown host {self._host!r}"
        elif isinstance(exc, TimeoutError):
            reason = "no answer in time"
        elif isinstance(exc, ssl.SSLError):
            reason = f"TLS failed: {exc.reason or exc}"
        elif isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
            reason = "the connection was closed before an answer came"
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return GatewayError(f"cannot reach the gateway at {self.gateway}: {reason}")


def _credentials(password: str | None, token: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The Authorization header value and where it came from (for the 401 message)."""
    token = token or environ.get("STOKER_TOKEN")
    if token:
        return f"Bearer {token}", "bearer token"
    for value, source in (
        (password, "the password given"),
        (environ.get("STOKER_ADMIN_PASSWORD"), "password from STOKER_ADMIN_PASSWORD"),
        (environ.get("OPENFAAS_PASSWORD"), "password from OPENFAAS_PASSWORD"),
    ):
        if value:
            return _basic(value), source
    home = config.default_home(environ)
    stored = credentials.read_password(home)
    if stored:
        return _basic(stored), f"password from {home / 'credentials'}"
    return "", f"no password found; {home / 'credentials'} does not exist"


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"{credentials.USERNAME}:{password}".encode()).decode()


def _ns(namespace: str | None) -> dict[str, str]:
    return {"namespace": namespace} if namespace else {}


def error_text(body: bytes, status: int, reason: str = "") -> str:
    """The gateway's error message: ``{"error": "..."}`` (or ``message``), else its text, else the status."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str) and data[key]:
                text = data[key]
                break
    text = " ".join(text.split())  # one line, whatever the gateway sent
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + "..."
    return text or f"{status} {reason}".strip()
