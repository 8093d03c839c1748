"""Console sessions: a signed, expiring token in an HttpOnly, SameSite=Strict cookie, and the CSRF token bound to it.

A session token is ``<expires>.<nonce>.<mac>``: the expiry (Unix seconds), 16 random bytes, and an HMAC-SHA256 of
both under a key derived from the admin password. Nothing is stored server-side, so every gateway of a platform
(they share the password) accepts the sessions of the others, and changing the password ends every session. The CSRF
token is an HMAC of the session token: the page gets it in a ``<meta>`` tag and sends it back in ``X-CSRF-Token`` on
every change; a cross-site page can neither read it nor compute it.

The cookie is set twice, for ``Path=/ui`` and ``Path=/system``, never for ``/``: a browser then never sends it to
``/function/``, so a function never sees an operator's session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable

from starlette.types import Scope

COOKIE = "stoker_session"
COOKIE_PATHS = ("/ui", "/system")
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
_MAX_COOKIE = 256  # a real token is about 80 characters; anything longer is not ours


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Sessions:
    """Issues and checks session tokens and their CSRF tokens; ``clock`` gives Unix time (tests pass their own)."""

    def __init__(self, password: str, lifetime_s: float, clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(password.encode(), b"stoker console session v1", hashlib.sha256).digest()
        self.lifetime_s = lifetime_s
        self.clock = clock

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        """A new session token, valid for ``lifetime_s`` from now."""
        head = f"{int(self.clock() + self.lifetime_s)}.{_b64(os.urandom(16))}"
        return f"{head}.{self._mac(head)}"

    def valid(self, token: str) -> bool:
        """True for a token this platform issued that has not expired."""
        if not token or len(token) > _MAX_COOKIE:
            return False
        head, _, mac = token.rpartition(".")
        expires, _, _ = head.partition(".")
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            return False
        if not hmac.compare_digest(mac.encode(), self._mac(head).encode()):
            return False
        return int(expires) > self.clock()

    def csrf(self, token: str) -> str:
        """The CSRF token that goes with a session token."""
        return self._mac("csrf." + token)

    def csrf_ok(self, token: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.csrf(token).encode())

    def set_cookie_headers(self, token: str, secure: bool) -> list[tuple[bytes, bytes]]:
        """``Set-Cookie`` headers for a new session (an empty token with Max-Age=0 ends it)."""
        max_age = int(self.lifetime_s) if token else 0
        flags = f"; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
        return [(b"set-cookie", f"{COOKIE}={token}; Path={path}{flags}".encode()) for path in COOKIE_PATHS]

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """For :class:`gateway.auth.RequireAuth`, on a request without valid credentials in ``Authorization``: None
        when the request carries a valid session cookie (and, for a change, the CSRF token and no foreign Origin),
        else the status and message to refuse it with."""
        token = session_cookie(scope)
        if not token:
            return 401, "authentication required: HTTP basic (admin), a bearer token, or a console session"
        if not self.valid(token):
            return 401, "the console session expired or is not valid: log in again at /ui/login"
        if scope["method"] in SAFE_METHODS:
            return None
        if not same_origin(scope):
            return 403, "cross-origin request refused"
        given = header(scope, CSRF_HEADER)
        if not self.csrf_ok(token, given.decode("latin-1")):
            return 403, "CSRF token missing or wrong (send the console's X-CSRF-Token)"
        return None


def header(scope: Scope, name: bytes) -> bytes:
    """The first value of a request header (``name`` lower-case), or b""."""
    return next((v for k, v in scope["headers"] if k == name), b"")


def session_cookie(scope: Scope) -> str:
    """The session token from the Cookie header(s), or ""."""
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        text: str = value.decode("latin-1")
        for part in text.split(";"):
            name, eq, val = part.strip().partition("=")
            if eq and name == COOKIE and val:
                return val.strip()
    return ""


def same_origin(scope: Scope) -> bool:
    """False when the browser says the request comes from another site: an ``Origin`` whose host is not this
    ``Host``, or ``Sec-Fetch-Site`` other than same-origin. The scheme is not compared: behind a proxy that ends TLS
    the gateway sees http while the page is https. Requests without either header (curl, old browsers) pass:
    SameSite=Strict and the CSRF token still protect them."""
    site = header(scope, b"sec-fetch-site")
    if site:  # current browsers: their own word on it ("none" is the user typing the address)
        return site in (b"same-origin", b"none")
    origin = header(scope, b"origin")
    if not origin:
        return True
    host = header(scope, b"host")
    _, sep, origin_host = origin.partition(b"://")
    return bool(sep and host) and origin_host.lower() == host.lower()


def secure_page(scope: Scope) -> bool:
    """True when the browser is on https (directly, or through a proxy that ends TLS: its Origin says so), so the
    cookie gets the Secure flag."""
    return scope.get("scheme") == "https" or header(scope, b"origin").lower().startswith(b"https://")
