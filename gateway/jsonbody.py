"""Reading a JSON request body on the management API, the one way every route does it; and the one JSON error
answer every route gives (:func:`error`).

Every body is hostile until parsed: it is read up to a size limit (413 beyond it, checked on ``Content-Length``
first), its structure is measured on the raw bytes before anything is built from it, and it becomes Python objects
only when it is well formed and shallow. :func:`parse` is the pure part (bytes in, value or error out);
:func:`read_json` reads the request and calls it.

Why the structure is measured before :func:`json.loads`: the decoder recurses once per level (``[`` x 100,000 ends
in a ``RecursionError``, which no route expected) and builds an object per value (a deployment may be tens of
megabytes because of its base64 ``source``; as ``[[],[],...]`` that much would become gigabytes of lists). So the
bytes outside strings, where nesting and value counts live, are bounded apart from the strings, and nesting is
bounded to a small depth that no real document reaches.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from stoker.config import Config
from stoker.errors import InvalidRequest, PayloadTooLarge, error_body

# A JSON string (escapes included), matched in C: the bytes that cannot hold structure.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Nesting does not depend on the kind of bracket (pairing is the decoder's job): map both kinds to one, drop the rest.
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


@dataclass(frozen=True)
class JsonLimits:
    """``body_bytes``: the whole body (413 beyond it); ``structure_bytes``: the body with each string counted as one
    byte (413 beyond it); ``depth``: nested arrays and objects (400 beyond it)."""

    body_bytes: int
    structure_bytes: int
    depth: int


def json_limits(config: Config) -> JsonLimits:
    """The limits of every management body but a deployment's (which may add its source; see the API)."""
    return JsonLimits(config.max_json_bytes, config.max_json_bytes, config.max_json_depth)


def parse(raw: bytes, limits: JsonLimits, empty: Any = None) -> Any:
    """The value of a JSON document, or :class:`InvalidRequest` / :class:`PayloadTooLarge` saying what is wrong.

    An empty (or blank) body is ``empty``; JSON ``null`` is ``None``, a body like any other. Strict JSON only:
    ``NaN`` and ``Infinity`` are refused, and so are strings holding a lone UTF-16 surrogate (``"\\ud800"``), which
    no later step could encode."""
    if len(raw) > limits.body_bytes:
        raise PayloadTooLarge(f"request body is over the limit of {limits.body_bytes} bytes")
    if not raw.strip():
        return empty
    structure = outside_strings(raw)
    if len(structure) > limits.structure_bytes:
        raise PayloadTooLarge(
            f"the JSON body has over {limits.structure_bytes} bytes outside its strings (too many values)"
        )
    if nesting_exceeds(structure, limits.depth):
        raise InvalidRequest(f"the JSON body nests arrays and objects deeper than {limits.depth} levels")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:  # not reachable past the check above; kept so no body can ever become a 500
        raise InvalidRequest(f"the JSON body nests deeper than {limits.depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError (bytes that are not UTF-8), the constants
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise InvalidRequest("the JSON body has a string with a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return value


def outside_strings(raw: bytes) -> bytes:
    """``raw`` with every JSON string replaced by one byte: where the structure is. Without a backslash no string
    holds an escaped quote, so splitting on quotes finds them (several times faster than the regular expression on
    a large base64 source)."""
    if b"\\" not in raw:
        return b"0".join(raw.split(b'"')[::2])
    return _STRING.sub(b"0", raw)


def nesting_exceeds(structure: bytes, depth: int) -> bool:
    """True when the arrays and objects of ``structure`` (a JSON text with its strings taken out) nest deeper than
    ``depth``. Unbalanced brackets are left to the decoder to report (False), unless they open too deep.

    Each pass deletes every innermost ``[]`` (one C-speed replace), which lowers the depth by exactly one; a run of
    ``depth + 1`` openers ends the search early. At most ``depth`` passes over the brackets alone."""
    brackets = structure.translate(_ONE_KIND, _NOT_BRACKET)
    too_deep = b"[" * (depth + 1)
    for _ in range(depth):
        if not brackets:
            return False
        if too_deep in brackets:
            return True
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return False  # unbalanced: no pair left to remove
        brackets = shorter
    return b"[]" in brackets  # ``depth`` levels are gone: any pair left is one level too many


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 (on ``Content-Length`` first) as soon as it is over ``limit`` bytes:
    never held whole beyond it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limits: JsonLimits, empty: Any = None) -> Any:
    """The request's JSON body (see :func:`parse`; ``empty`` when there is none), read no further than
    ``limits.body_bytes``."""
    return parse(await read_body(request, limits.body_bytes), limits, empty)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _has_lone_surrogate(value: Any) -> bool:
    """Walked without recursion; only called when the raw text escapes a surrogate (rare)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error answer of every management route (:func:`stoker.errors.error_body`)."""
    return Response(error_body(message), status_code=status, headers=headers, media_type="application/json")
