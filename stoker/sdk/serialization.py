"""The SDK's wire format: msgpack, with cloudpickle inside only for what msgpack cannot carry.

A call body is ``{"args": [...], "kwargs": {...}}``; a reply body is a one-key map: ``{"value": x}``,
``{"generator": [x, ...]}`` (a generator's items, collected on the replica) or ``{"error": {...}}`` (see
:mod:`stoker.sdk.errors`). The reply says what it is in its body, not in headers, so it survives the async result
store, which keeps only the body.

msgpack's own types (None, bool, int, float, str, bytes, list, dict of exactly those types) travel as msgpack.
Extension types carry the rest:

- ``1``: a cloudpickle of the object (sets, dataclasses, numpy arrays, exceptions, functions...);
- ``2``: a tuple, as the msgpack of its items (so tuples come back as tuples, not lists).

Unpickling runs code, so a replica accepts extension 1 in *arguments* only from callers that prove they may deploy
(the function's token; see :mod:`stoker.sdk.shim`). Callers trust replies: they come from code they deployed.
"""

from __future__ import annotations

from typing import Any

import cloudpickle
import msgpack

MSGPACK = "application/msgpack"
EXT_PICKLE = 1
EXT_TUPLE = 2


class PickleRefused(Exception):
    """The payload holds a pickled object, and the receiver does not accept pickles from this sender."""


class _Packer:
    """Encodes one payload and records whether it needed cloudpickle."""

    def __init__(self) -> None:
        self.pickled = False

    def default(self, obj: Any) -> msgpack.ExtType:
        # strict_types sends every non-exact type here: tuples, and subclasses of dict/int/str (IntEnum,
        # OrderedDict, namedtuple), which must keep their type across the wire.
        if type(obj) is tuple:
            return msgpack.ExtType(EXT_TUPLE, self.pack(list(obj)))
        self.pickled = True
        return msgpack.ExtType(EXT_PICKLE, cloudpickle.dumps(obj, protocol=5))

    def pack(self, obj: Any) -> bytes:
        return msgpack.packb(obj, default=self.default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]


def dumps(obj: Any) -> tuple[bytes, bool]:
    """``obj`` as msgpack, and whether any part of it had to be pickled."""
    packer = _Packer()
    return packer.pack(obj), packer.pickled


def loads(data: bytes, allow_pickle: bool = True) -> Any:
    """Decode :func:`dumps` output; :class:`PickleRefused` when it holds a pickle and ``allow_pickle`` is false."""

    def ext_hook(code: int, payload: bytes) -> Any:
        if code == EXT_TUPLE:
            return tuple(loads(payload, allow_pickle))
        if code == EXT_PICKLE:
            if not allow_pickle:
                raise PickleRefused("pickled values are accepted only from callers holding the function's token")
            return cloudpickle.loads(payload)
        return msgpack.ExtType(code, payload)

    return msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, bool]:
    """A call body, and whether it holds pickles (the caller must then send the function's token)."""
    return dumps({"args": list(args), "kwargs": kwargs})


def decode_call(data: bytes, allow_pickle: bool) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of a call body; ValueError when it is not one."""
    try:
        call = loads(data, allow_pickle) if data else {}
    except PickleRefused:
        raise
    except Exception as exc:  # msgpack raises several types for bad input
        raise ValueError(f"the body is not msgpack: {exc}") from None
    if not isinstance(call, dict) or not call.keys() <= {"args", "kwargs"}:
        raise ValueError('a msgpack call body is a map {"args": [...], "kwargs": {...}}')
    args, kwargs = call.get("args") or [], call.get("kwargs") or {}
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise ValueError("args must be an array and kwargs a map")
    return list(args), kwargs
