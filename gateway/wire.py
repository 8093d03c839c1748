"""What may go into the request line and headers the gateway writes to a replica (RFC 9112 section 3, RFC 9110
section 5).

A request target is forwarded as the client sent it, still percent-encoded, so it can hold visible ASCII only (``!``
to ``~``); a method and a header name are tokens; a header value holds no control character but the horizontal tab.
Anything else (a CR or LF above all, decoded from ``%0d%0a`` or replayed from a stored call) could end a line early
and start another header, or a whole second request on a kept-alive connection to the replica, whose answer the next
caller would get. Such a request is refused with 400 at the proxy's front (:func:`problem`), and
:func:`gateway.upstream.encode_head` refuses it again before writing anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

_BAD_TARGET = re.compile(rb"[^\x21-\x7e]")
_BAD_TOKEN = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
_VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))


_bad_target = _BAD_TARGET.search
bad_token = _bad_token = _BAD_TOKEN.search  # a match: not a token (method, header name)
bad_value = _bad_value = _BAD_VALUE.search  # a match: a character a header value cannot carry


def problem(method: str, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Why this request cannot be written to a replica as it is, or None when it can."""
    if method not in _METHODS and (not method or _bad_token(method.encode("latin-1", "replace"))):
        return f"the method {method!r} is not an HTTP token"
    if not target or _bad_target(target):
        return "the path or query holds a character that cannot be forwarded (space, control or non-ASCII)"
    for name, value in headers:
        if _bad_token(name) or _bad_value(value) or not name:
            return header_problem(name, value)
    return None


def header_problem(name: bytes, value: bytes) -> str:
    """What is wrong with a header that :func:`problem` refused."""
    if not name or _bad_token(name):
        return f"the header name {name[:64]!r} is not an HTTP token"
    return f"the header {name[:64].decode('latin-1')!r} holds a control character"


def as_target(text: str, encoding: str = "utf-8") -> bytes:
    """A stored path or query as part of a request target: as it is when it is one already (they are stored still
    encoded); the spaces, control and non-ASCII characters of older, decoded ones (or of a trigger message)
    percent-encoded, so they reach the function as they were and cannot split a line."""
    if text.isascii() and not _BAD_TARGET.search(text.encode()):
        return text.encode()
    return quote(text, safe=_VISIBLE, encoding=encoding).encode()
