"""Authentication for ``/system/*``: HTTP basic (user ``admin``) or a bearer token, compared in constant time; or,
from the web console, a session cookie (with its CSRF token on changes: :mod:`gateway.console.session`)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from stoker.credentials import USERNAME
from stoker.errors import error_body


def authorized(header: bytes | None, password: str) -> bool:
    """True when an Authorization header value carries the admin credentials."""
    if not header:
        return False
    scheme, _, value = header.decode("latin-1").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return hmac.compare_digest(value.strip().encode(), password.encode())
    if scheme != "basic":
        return False
    try:
        user, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), USERNAME.encode())
    password_ok = hmac.compare_digest(given.encode(), password.encode())
    return user_ok and password_ok


AUTH_KEY = "stoker.auth"  # in the ASGI scope of a request let through: how it authenticated (basic, token, console)


def method(header: bytes) -> str:
    """How an accepted Authorization header authenticated: ``basic`` or ``token``."""
    return "token" if header.lower().startswith(b"bearer") else "basic"


# Checks a request without valid Authorization another way (a console session): None to let it through, else the
# status and message to refuse it with.
SessionCheck = Callable[[Scope], "tuple[int, str] | None"]


class RequireAuth:
    """ASGI middleware: 401 with a ``WWW-Authenticate`` challenge unless :func:`authorized` or ``session`` lets the
    request through (403 when a session's change lacks its CSRF token)."""

    def __init__(self, app: ASGIApp, password: str, session: SessionCheck | None = None) -> None:
        self.app = app
        self.password = password
        self.session = session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            ok = authorized(header, self.password)
            if ok and _cross_site_change(scope):
                # A browser that remembers basic credentials sends them with another site's form too: refused.
                await _refuse(send, 403, "cross-site request refused", challenge=False)
                return
            if ok:
                assert header is not None
                scope[AUTH_KEY] = method(header)
            else:
                refused = (401, "authentication required: HTTP basic (admin) or a bearer token")
                if self.session is not None:
                    refused = self.session(scope) or (0, "")
                    if not refused[0]:
                        scope[AUTH_KEY] = "console"
                        await self.app(scope, receive, send)
                        return
                status, message = refused
                # The console's own requests (they carry X-CSRF-Token) go back to its login page on a 401; a
                # challenge would make the browser pop up its password dialog first.
                challenge = status == 401 and not any(k == b"x-csrf-token" for k, _ in scope["headers"])
                await _refuse(send, status, message, challenge)
                return
        await self.app(scope, receive, send)


def _cross_site_change(scope: Scope) -> bool:
    """A change (not GET/HEAD/OPTIONS) that the browser says another site's page made (``Sec-Fetch-Site``)."""
    if scope["method"] in ("GET", "HEAD", "OPTIONS"):
        return False
    site = next((v for k, v in scope["headers"] if k == b"sec-fetch-site"), b"")
    return site in (b"cross-site", b"same-site")


async def _refuse(send: Send, status: int, message: str, challenge: bool) -> None:
    body = error_body(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b'Basic realm="stoker"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
