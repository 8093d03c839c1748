"""``/ui/``: the console's pages, its login and logout, and its static assets (shipped in this package).

The page is one HTML document (``static/index.html``) whose scripts read the management API; it needs a session
cookie or valid ``Authorization`` (basic/bearer, as for ``/system/``), else it sends the browser to the login form.
Every answer carries a strict Content-Security-Policy (scripts, styles and connections only from this origin, no
inline script, no framing); assets are read once at startup, so no file is opened per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from html import escape
from importlib.resources import files
from importlib.resources.abc import Traversable
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from gateway.auth import authorized
from gateway.console.session import Sessions, header, same_origin, secure_page, session_cookie
from stoker.credentials import USERNAME

PREFIX = "/ui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # not no-referrer: with it, Chrome sends "Origin: null" on a form's POST and the login looked cross-origin
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".txt": b"text/plain; charset=utf-8",
}
_MAX_FORM = 4096  # a login form is a password; anything longer is refused
_PAGES = ("index.html", "login.html")


def _walk(folder: Traversable, prefix: str = "") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in folder.iterdir():
        if item.is_dir():
            out.update(_walk(item, f"{prefix}{item.name}/"))
        elif item.is_file():
            out[prefix + item.name] = item.read_bytes()
    return out


class Asset:
    __slots__ = ("body", "etag", "type")

    def __init__(self, name: str, body: bytes) -> None:
        self.body = body
        self.type = _TYPES.get(name[name.rfind(".") :], b"application/octet-stream")
        self.etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'


class Pages:
    """The ASGI app for ``/ui`` and everything below it."""

    def __init__(self, sessions: Sessions, password: str) -> None:
        self.sessions = sessions
        self.password = password
        static = _walk(files("gateway.console").joinpath("static"))
        self.assets = {name: Asset(name, body) for name, body in static.items() if name not in _PAGES}
        self.index = static["index.html"].decode()
        self.login_page = static["login.html"].decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        get = method in ("GET", "HEAD")
        if path == PREFIX:
            await _send(send, 308, b"", [(b"location", b"/ui/")])
        elif path == PREFIX + "/":
            await (self._index(scope, send) if get else _refuse(send, 405, "use GET", b"GET, HEAD"))
        elif path == PREFIX + "/login":
            if get:
                await self._login_form(send, 200, "")
            elif method == "POST":
                await self._login(scope, receive, send)
            else:
                await _refuse(send, 405, "use GET or POST", b"GET, HEAD, POST")
        elif path == PREFIX + "/logout":
            await (self._logout(scope, receive, send) if method == "POST" else _refuse(send, 405, "use POST", b"POST"))
        elif path.startswith(PREFIX + "/static/") and path[len(PREFIX) + 8 :] in self.assets:
            if get:
                await self._asset(scope, send, self.assets[path[len(PREFIX) + 8 :]])
            else:
                await _refuse(send, 405, "use GET", b"GET, HEAD")
        else:
            await _refuse(send, 404, "no such console page")

    def _session(self, scope: Scope) -> str:
        """The request's valid session token, or ""."""
        token = session_cookie(scope)
        return token if token and self.sessions.valid(token) else ""

    async def _index(self, scope: Scope, send: Send) -> None:
        token = self._session(scope)
        if not token and not authorized(header(scope, b"authorization") or None, self.password):
            await _send(send, 303, b"", [(b"location", b"/ui/login")])
            return
        # With basic/bearer (no session) the page's changes go with the browser's Authorization: no CSRF token.
        body = self.index.replace("{{csrf}}", self.sessions.csrf(token) if token else "").encode()
        await _send(send, 200, body, [(b"content-type", _TYPES[".html"]), (b"cache-control", b"no-store")])

    async def _login_form(self, send: Send, status: int, error: str) -> None:
        message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
        body = self.login_page.replace("{{error}}", message).encode()
        headers = [(b"content-type", _TYPES[".html"]), (b"cache-control", b"no-store")]
        await _send(send, status, body, headers)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not same_origin(scope):
            await self._login_form(send, 403, "Cross-origin login refused.")
            return
        form = await _read_form(receive)
        if form is None:
            await self._login_form(send, 413, "The form is too large.")
            return
        user = form.get("username", USERNAME)
        password = form.get("password", "")
        user_ok = hmac.compare_digest(user.encode(), USERNAME.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        if not (user_ok and password_ok):
            await self._login_form(send, 401, "Wrong user name or password.")
            return
        token = self.sessions.issue()
        cookies = self.sessions.set_cookie_headers(token, secure_page(scope))
        await _send(send, 303, b"", [(b"location", b"/ui/"), (b"cache-control", b"no-store"), *cookies])

    async def _logout(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = self._session(scope)
        form = await _read_form(receive) or {}
        if token and not (same_origin(scope) and self.sessions.csrf_ok(token, form.get("csrf", ""))):
            await _refuse(send, 403, "CSRF token missing or wrong")
            return
        cookies = self.sessions.set_cookie_headers("", secure_page(scope))
        await _send(send, 303, b"", [(b"location", b"/ui/login"), *cookies])

    async def _asset(self, scope: Scope, send: Send, asset: Asset) -> None:
        if header(scope, b"if-none-match") == asset.etag:
            await _send(send, 304, b"", [(b"etag", asset.etag)])
            return
        headers = [(b"content-type", asset.type), (b"etag", asset.etag), (b"cache-control", b"no-cache")]
        await _send(send, 200, asset.body, headers, head=scope["method"] == "HEAD")


async def _read_form(receive: Receive) -> dict[str, str] | None:
    """An urlencoded form body of at most ``_MAX_FORM`` bytes (None when longer); the first value of each field."""
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return {}
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > _MAX_FORM:
            return None
    try:
        fields = parse_qs(body.decode("latin-1"), max_num_fields=16, encoding="utf-8", errors="replace")
    except ValueError:  # more fields than a login form has
        return None
    return {k: v[0] for k, v in fields.items() if v}


async def _refuse(send: Send, status: int, message: str, allow: bytes = b"") -> None:
    headers = [(b"content-type", b"application/json")] + ([(b"allow", allow)] if allow else [])
    await _send(send, status, json.dumps({"error": message}).encode(), headers)


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], head: bool = False) -> None:
    out = [*headers, *SECURITY_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if head else body})
