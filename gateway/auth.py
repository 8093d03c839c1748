"""Authentication for ``/system/*``: HTTP basic (user ``admin``) or a bearer token, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

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


class RequireAuth:
    """ASGI middleware: 401 with a ``WWW-Authenticate`` challenge unless :func:`authorized`."""

    def __init__(self, app: ASGIApp, password: str) -> None:
        self.app = app
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not authorized(header, self.password):
                body = error_body("authentication required: HTTP basic (admin) or a bearer token")
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Basic realm="stoker"'),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
