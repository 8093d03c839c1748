"""Turn what a handler returned into an HTTP response: ``(status, headers, body)``.

======================================  ======  ==================================================
Return value                            Status  Content-Type
======================================  ======  ==================================================
``str``                                 200     ``text/plain; charset=utf-8``
``bytes`` (or bytearray, memoryview)    200     ``application/octet-stream``
``dict`` or ``list``                    200     ``application/json``
``None``                                200     none, empty body (what OpenFaaS does, not 204)
``Response(body, status, headers)``     status  from the body's type, unless headers set it
``{"statusCode", "body", "headers"}``   status  as for ``Response`` (OpenFaaS ``python3-http``)
======================================  ======  ==================================================

A dict is read as a ``python3-http`` response only when it has ``statusCode`` and no keys other than
``statusCode``, ``body`` and ``headers``; any other dict is JSON. A ``Content-Length`` header from the handler
is dropped (the replica sends the real length). Anything else raises :class:`BadReturn`, which the replica
answers with a 500 like any other handler error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from stoker.handler import Response

RawHeaders = list[tuple[bytes, bytes]]
Rendered = tuple[int, RawHeaders, bytes]

CONTENT_TYPE = b"content-type"
TEXT = b"text/plain; charset=utf-8"
OCTET = b"application/octet-stream"
JSON = b"application/json"
_PY3HTTP_KEYS = frozenset({"statusCode", "body", "headers"})
# What uvicorn refuses to send; checked here so the handler gets a 500 naming its bad header, not a reset.
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


class BadReturn(TypeError):
    """The handler returned something that cannot be sent as an HTTP response."""


def text(status: int, message: str) -> Rendered:
    """A plain-text response, for the replica's own answers (errors, limits, probes)."""
    return status, [(CONTENT_TYPE, TEXT)], message.encode()


def render(value: object) -> Rendered:
    """The response for a handler's return value; raises :class:`BadReturn` or JSON's TypeError."""
    if isinstance(value, str):
        return 200, [(CONTENT_TYPE, TEXT)], value.encode()
    if isinstance(value, dict):
        if "statusCode" in value and value.keys() <= _PY3HTTP_KEYS:
            return _custom(value.get("body"), value["statusCode"], value.get("headers"))
        return 200, [(CONTENT_TYPE, JSON)], _json(value)
    if isinstance(value, list):
        return 200, [(CONTENT_TYPE, JSON)], _json(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return 200, [(CONTENT_TYPE, OCTET)], bytes(value)
    if value is None:
        return 200, [], b""
    if isinstance(value, Response):
        return _custom(value.body, value.status, value.headers)
    kinds = "str, bytes, dict, list, stoker.Response or None"
    raise BadReturn(f"handler returned {type(value).__name__}; return {kinds}")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _body(body: object) -> tuple[bytes, bytes | None]:
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), TEXT
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body), OCTET
    if isinstance(body, dict | list):
        return _json(body), JSON
    if isinstance(body, int | float):  # python3-http sends str(body) for anything that is not a dict
        return str(body).encode(), TEXT
    raise BadReturn(f"response body is {type(body).__name__}; use str, bytes, dict, list or None")


def _custom(body: object, status: object, headers: object) -> Rendered:
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise BadReturn(f"status {status!r} is not an HTTP status code (100-599)")
    data, content_type = _body(body)
    raw: RawHeaders = []
    if headers:
        items: Iterable[Any]
        if isinstance(headers, Mapping):
            items = headers.items()
        elif isinstance(headers, list | tuple):  # python3-http also allows a list of (name, value) pairs
            items = headers
        else:
            raise BadReturn(f"headers are {type(headers).__name__}; use a dict of strings")
        for name, value in items:
            key, val = _header(name, value)
            lower = key.lower()
            if lower == b"content-length":
                continue
            if lower == CONTENT_TYPE:
                content_type = None
            raw.append((key, val))
    if content_type is not None:
        raw.append((CONTENT_TYPE, content_type))
    return status, raw, data


def _header(name: object, value: object) -> tuple[bytes, bytes]:
    try:
        key, val = str(name).encode("latin-1"), str(value).encode("latin-1")
    except UnicodeEncodeError:
        raise BadReturn(f"header {name!r}: {value!r} is not latin-1 text") from None
    if not key or _BAD_NAME.search(key) or _BAD_VALUE.search(val):
        raise BadReturn(f"header {name!r}: {value!r} contains characters HTTP does not allow")
    return key, val
