"""The SDK's wire format: msgpack, with cloudpickle inside only for what msgpack cannot carry.

A call body is ``{"args": [...], "kwargs": {...}}``; a reply body is a one-key map: ``{"value": x}``,
``{"generator": [x, ...]}`` (a generator's items, collected on the replica) or ``{"error": {...}}`` (see
:mod:`stoker.sdk.errors`). The reply says what it is in its body, not in headers, so it survives the async result
store, which keeps only the body.

A *batch* (``.map()`` sends its items in chunks) is ``{"batch": [call, ...]}``, each ``call`` the bytes of one call
body as above, and its reply ``{"batch": [[status, reply], ...], "seconds": s}``: per item the status and the bytes a
call of that item alone would have been answered (a reply body as above; for a call refused before it ran, 400 or
403 with a JSON ``{"error": ...}``), and ``s`` the time the replica spent on the items. Items travel as opaque bytes
and are decoded one at a time, so each is held to exactly the limits of a single call, and the batch itself adds
no nesting: it is a flat array of at most :data:`MAX_BATCH_ITEMS` byte strings.

msgpack's own types (None, bool, int, float, str, bytes, list, dict of exactly those types) travel as msgpack.
Extension types carry the rest:

- ``1``: a cloudpickle of the object (sets, dataclasses, numpy arrays, exceptions, functions...);
- ``2``: a tuple, as the msgpack of its items (so tuples come back as tuples, not lists).

Unpickling runs code, so a replica accepts extension 1 in *arguments* only from callers that prove they may deploy
(the function's token; see :mod:`stoker.sdk.shim`). Callers trust replies: they come from code they deployed.

Decoding is built for hostile bytes (every function endpoint is public). msgpack's C unpacker is iterative with its
own bounded stack (:data:`MAX_DEPTH` levels), and extensions are *not* decoded from inside it: its ``ext_hook`` only
records them, and a loop in Python decodes them afterwards with an explicit stack, counting the nesting across them
(a tuple in a tuple in a tuple...). So no payload makes the decoder recurse, however it nests: too deep is a
:class:`MalformedPayload`, like every other malformed input (bad msgpack, unknown extension types, a tuple whose
items are not an array, an unhashable map key). Tuples and pickles may nest at most :data:`MAX_EXT_DEPTH` deep,
since each level is unpacked again (a bound on the work, not only on the stack).
"""

from __future__ import annotations

from typing import Any

import cloudpickle
import msgpack

MSGPACK = "application/msgpack"
EXT_PICKLE = 1
EXT_TUPLE = 2
MAX_DEPTH = 1024  # nested arrays, maps and tuples in one payload (msgpack's own unpacker stops at this depth too)
MAX_EXT_DEPTH = 32  # tuples and pickles inside one another
MAX_BATCH_ITEMS = 10_000  # calls in one batch body (a bound on the replies a replica builds for one request)
BATCH_KEY = "batch"


class PickleRefused(Exception):
    """The payload holds a pickled object, and the receiver does not accept pickles from this sender."""


class MalformedPayload(ValueError):
    """The bytes are not a payload of this format (or nest deeper than it allows); the message says what is wrong."""


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
    """Decode :func:`dumps` output. :class:`MalformedPayload` for anything else, :class:`PickleRefused` when it holds
    a pickle and ``allow_pickle`` is false."""
    holder: list[Any] = [None]
    if _unpack(data, holder):
        _resolve(holder, allow_pickle)
    return holder[0]


class _Ext:
    """An extension seen by the unpacker, decoded later by :func:`_resolve` (never from inside the unpacker)."""

    __slots__ = ("code", "data")

    def __init__(self, code: int, data: bytes) -> None:
        self.code = code
        self.data = data


def _unpack(data: bytes, holder: list[Any]) -> bool:
    """Unpack ``data`` into ``holder[0]``; return whether it holds extensions (left as :class:`_Ext`)."""
    seen = False

    def ext_hook(code: int, payload: bytes) -> _Ext:
        nonlocal seen
        seen = True
        return _Ext(code, payload)

    try:
        holder[0] = msgpack.unpackb(data, ext_hook=ext_hook, raw=False, strict_map_key=False)
    except msgpack.StackError:
        raise MalformedPayload(f"the payload nests deeper than {MAX_DEPTH} levels") from None
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise MalformedPayload(f"not msgpack ({type(exc).__name__}: {str(exc)[:200]})") from None
    return seen


def _resolve(holder: list[Any], allow_pickle: bool) -> None:
    """Replace every :class:`_Ext` in ``holder[0]`` by its value, walking with an explicit stack (no recursion)
    and counting the depth of every container across tuples.

    Tuples are built once their items are final: each tuple's items are collected in a list, and the lists become
    tuples in reverse order of discovery (inner ones first), each put where it belongs. Maps whose keys were
    extensions are then rebuilt in their own order with the final keys."""
    stack: list[tuple[Any, int, int]] = [(holder, 0, 0)]  # (list or map, its depth, tuples/pickles around it)
    tuples: list[tuple[list[Any], Any, Any]] = []  # (items, where, key): where[key] = tuple(items), in the end
    key_values: dict[_Ext, Any] = {}  # map keys that were extensions -> their values
    rekeyed: list[dict[Any, Any]] = []

    def expand(ext: _Ext, where: Any, key: Any, depth: int, ext_depth: int) -> None:
        """Decode ``ext`` (found at ``where[key]``, at ``depth``) and put its value there (tuples: later)."""
        if ext_depth >= MAX_EXT_DEPTH:
            raise MalformedPayload(f"tuples and pickled values nest deeper than {MAX_EXT_DEPTH} levels")
        if ext.code == EXT_TUPLE:
            inner: list[Any] = [None]
            seen = _unpack(ext.data, inner)
            items = inner[0]
            if type(items) is not list:
                raise MalformedPayload("a tuple extension must hold the array of its items")
            # Each level of nesting takes a byte at least, so items without extensions in so few bytes that they
            # cannot reach MAX_DEPTH are final at once (the common case: tuples of plain values).
            if not seen and depth + len(ext.data) <= MAX_DEPTH:
                where[key] = tuple(items)
                return
            stack.append((items, depth, ext_depth + 1))
            tuples.append((items, where, key))
        elif ext.code == EXT_PICKLE:
            if not allow_pickle:
                raise PickleRefused("pickled values are accepted only from callers holding the function's token")
            try:
                where[key] = cloudpickle.loads(ext.data)
            except Exception as exc:
                raise MalformedPayload(f"a pickled value does not load: {type(exc).__name__}: {exc}") from None
        else:
            raise MalformedPayload(f"unknown msgpack extension type {ext.code}")

    while stack:
        container, depth, ext_depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedPayload(f"the payload nests deeper than {MAX_DEPTH} levels")
        if type(container) is list:
            for i, item in enumerate(container):
                if type(item) is _Ext:
                    expand(item, container, i, depth + 1, ext_depth)
                elif type(item) is list or type(item) is dict:
                    stack.append((item, depth + 1, ext_depth))
            continue
        has_ext_key = False
        for key, item in container.items():
            if type(key) is _Ext:
                has_ext_key = True
                expand(key, key_values, key, depth + 1, ext_depth)
            if type(item) is _Ext:
                expand(item, container, key, depth + 1, ext_depth)  # sets an existing key: safe while iterating
            elif type(item) is list or type(item) is dict:
                stack.append((item, depth + 1, ext_depth))
        if has_ext_key:
            rekeyed.append(container)
    for items, where, key in reversed(tuples):
        where[key] = tuple(items)
    for mapping in rekeyed:
        entries = [(key_values[k] if type(k) is _Ext else k, v) for k, v in mapping.items()]
        mapping.clear()
        try:
            mapping.update(entries)
        except TypeError as exc:  # a key that turned out unhashable (a tuple holding an array)
            raise MalformedPayload(f"a map key cannot be used: {exc}") from None


def encode_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, bool]:
    """A call body, and whether it holds pickles (the caller must then send the function's token)."""
    return dumps({"args": list(args), "kwargs": kwargs})


def decode_call(data: bytes, allow_pickle: bool) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of a call body; :class:`MalformedPayload` (a ValueError) when it is not one."""
    return _call_parts(loads(data, allow_pickle) if data else {})


def _call_parts(call: Any) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(call, dict) or not all(isinstance(k, str) for k in call) or not call.keys() <= _CALL_KEYS:
        raise MalformedPayload('a msgpack call body is a map {"args": [...], "kwargs": {...}}')
    args, kwargs = call.get("args"), call.get("kwargs")
    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        raise MalformedPayload("args must be an array and kwargs a map")
    for key in kwargs:
        if not isinstance(key, str):
            raise MalformedPayload(f"kwargs keys must be strings, not {type(key).__name__}")
    return list(args), kwargs


_CALL_KEYS = frozenset({"args", "kwargs"})


def encode_batch(calls: list[bytes]) -> bytes:
    """A batch body from call bodies made by :func:`encode_call`."""
    return msgpack.packb({BATCH_KEY: calls}, use_bin_type=True)  # type: ignore[no-any-return]


def decode_request(data: bytes, allow_pickle: bool) -> tuple[list[Any], dict[str, Any]] | list[bytes]:
    """A msgpack body as ``(args, kwargs)`` when it is a call, or as its call bodies when it is a batch (each to be
    decoded later with :func:`decode_call`); :class:`MalformedPayload` when it is neither."""
    message = loads(data, allow_pickle) if data else {}
    if isinstance(message, dict) and BATCH_KEY in message:
        return _batch_calls(message)
    return _call_parts(message)


def _batch_calls(batch: dict[Any, Any]) -> list[bytes]:
    calls = batch[BATCH_KEY]
    if len(batch) != 1 or type(calls) is not list:
        raise MalformedPayload('a msgpack batch body is a map {"batch": [call, ...]} (only that key)')
    if len(calls) > MAX_BATCH_ITEMS:
        raise MalformedPayload(f"a batch holds at most {MAX_BATCH_ITEMS} calls, not {len(calls)}")
    for call in calls:
        if type(call) is not bytes:
            raise MalformedPayload("each call of a batch is the bytes of one msgpack call body")
    return calls


def encode_batch_reply(replies: list[tuple[int, bytes]], seconds: float) -> bytes:
    """A batch reply: per call its status and reply body, and the time the replica spent on them."""
    return msgpack.packb({BATCH_KEY: replies, "seconds": seconds}, use_bin_type=True)  # type: ignore[no-any-return]


def decode_batch_reply(data: bytes, expected: int) -> tuple[list[tuple[int, bytes]], float]:
    """``(replies, seconds)`` of a batch reply for ``expected`` calls; :class:`MalformedPayload` if it is not one."""
    reply = loads(data, allow_pickle=False)
    replies = reply.get(BATCH_KEY) if isinstance(reply, dict) else None
    seconds = reply.get("seconds") if isinstance(reply, dict) else None
    if type(replies) is not list or len(replies) != expected or not isinstance(seconds, int | float):
        raise MalformedPayload(f"not a batch reply for {expected} calls")
    out: list[tuple[int, bytes]] = []
    for entry in replies:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not int or type(entry[1]) is not bytes:
            raise MalformedPayload("each reply of a batch is [status, body]")
        out.append((entry[0], entry[1]))
    return out, float(seconds)
