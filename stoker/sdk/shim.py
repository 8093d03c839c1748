"""The replica side of an SDK function: load the signed, cloudpickled function and serve it over HTTP.

The generated bundle holds ``handler.py`` (two lines calling :func:`load`), ``function.pkl`` and ``manifest.json``.
:func:`load` runs when the replica imports the handler, in this order, and any failure stops the replica before
it serves (the deploy fails with the message):

1. read the bundle's ``tar.gz`` once and verify its signature (:mod:`runtime.codesign`); from then on only those
   verified bytes are used, never the extracted folder, so a changed file on disk is never unpickled;
2. check the manifest: the same Python minor version as the caller that pickled it, and every requirement
   installed here;
3. unpickle the function.

Requests: ``Content-Type: application/msgpack`` bodies are calls in the SDK's format (:mod:`.serialization`) and get
msgpack replies; any other body is JSON: ``{"args": [...], "kwargs": {...}}`` (only those keys), or any other JSON
value as the single argument, or an empty body for no arguments. JSON replies are the result as JSON (bytes as
base64 text, tuples and sets as arrays) or, on error, status 500 with ``{"error": {"type", "message", "traceback"}}``.
A msgpack call holding pickled arguments must carry ``X-Stoker-Token`` (the deployer's token, from the manifest);
without it the replica answers 403 rather than unpickle a stranger's bytes.

Every body is hostile until decoded: anything that is not a call (bad msgpack or JSON, nesting beyond the limits of
:mod:`.serialization`, unknown extension types, wrong shapes, keyword names that are not strings, arguments that do
not fit the function's signature) is a 400 with ``{"error": ...}`` saying what is wrong, before the function runs.
"""

from __future__ import annotations

import base64
import hmac
import importlib.metadata
import inspect
import io
import json
import linecache
import os
import re
import sys
import tarfile
import types
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle

from runtime import codesign
from stoker.handler import Context, Event, Response
from stoker.sdk import errors, serialization

FUNCTION_FILE = "function.pkl"
MANIFEST_FILE = "manifest.json"
SOURCES_FILE = "sources.json"
TOKEN_HEADER = "x-stoker-token"
_MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


class RuntimeMismatch(Exception):
    """The bundle cannot run in this runtime (Python version, missing requirement); the message says what to do."""


def load(environ: Mapping[str, str] = os.environ) -> Callable[[Event, Context], Any]:
    """Verify, check and unpickle the bundle's function; return the replica's ``handle``."""
    data = codesign.read_verified_bundle(environ)  # raises before anything is unpickled
    files = _members(data, (FUNCTION_FILE, MANIFEST_FILE))
    manifest = json.loads(files[MANIFEST_FILE])
    check_manifest(manifest)
    for var in (codesign.KEY_VAR, codesign.SIGNATURE_VAR):
        os.environ.pop(var, None)  # the function's own code has no use for them
    sources = register_sources(_optional_member(data, SOURCES_FILE))
    fn = cloudpickle.loads(files[FUNCTION_FILE])
    return Adapter(fn, str(manifest.get("token") or ""), frozenset(sources)).handler()


def register_sources(data: bytes | None) -> list[str]:
    """Give ``linecache`` the caller's source files the function was pickled from (``sources.json``: file name ->
    text, made by :func:`stoker.sdk.packaging.read_sources`), so tracebacks show their lines; their names."""
    if not data:
        return []
    try:
        sources = json.loads(data)
    except ValueError:
        return []
    if not isinstance(sources, dict):
        return []
    names = []
    for filename, text in sources.items():
        if isinstance(filename, str) and isinstance(text, str):
            # mtime None: linecache.checkcache keeps the entry (there is no file here to compare with)
            linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
            names.append(filename)
    return names


def _optional_member(data: bytes, name: str) -> bytes | None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            member = tar.extractfile(name)
        except KeyError:  # a bundle made before sources travelled
            return None
        return member.read() if member is not None else None


def _members(data: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for name in names:
            member = tar.extractfile(name)
            if member is None:
                raise RuntimeMismatch(f"the bundle has no {name}: it was not made by the stoker SDK")
            out[name] = member.read()
    return out


def check_manifest(manifest: Mapping[str, Any]) -> None:
    """Refuse a function pickled by another Python minor version, or needing packages not installed here."""
    theirs = str(manifest.get("python") or "")
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    if theirs.split(".")[:2] != ours.split("."):
        raise RuntimeMismatch(
            f"the function was pickled with Python {theirs} but this runtime runs Python {ours}; cloudpickle "
            f"cannot move code between minor versions: deploy from Python {ours}"
        )
    missing = missing_requirements([str(r) for r in manifest.get("requirements") or []])
    if missing:
        raise RuntimeMismatch(
            f"requirement(s) not installed in this runtime: {', '.join(missing)}. The local and docker backends "
            "install a function's requirements when it is deployed; elsewhere, install them into the runtime image"
        )


def missing_requirements(requirements: list[str]) -> list[str]:
    """The requirements (pip syntax) that no installed distribution satisfies, each with the reason."""
    missing: list[str] = []
    for requirement in requirements:
        m = _REQUIREMENT.match(requirement)
        if not m:
            missing.append(f"{requirement!r} (not a requirement)")
            continue
        name, spec = m.group(1), m.group(2).strip()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{requirement} (not installed)")
            continue
        if spec and not _satisfies(version, spec):
            missing.append(f"{requirement} (installed: {version})")
    return missing


def _satisfies(version: str, spec: str) -> bool:
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:  # packaging is nearly always there (pip vendors its own); without it, names only
        return True
    try:
        return version in SpecifierSet(spec)
    except InvalidSpecifier:
        return False


class Adapter:
    """Turns HTTP requests into calls of the function and its results (or exceptions) into responses."""

    def __init__(self, fn: Callable[..., Any], token: str, source_files: frozenset[str] = frozenset()) -> None:
        self.fn = fn
        self.token = token
        self.source_files = source_files  # the caller's files: its frames are where a traceback starts
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins and C callables have none: the call itself then checks
            self.signature = None

    def handler(self) -> Callable[[Event, Context], Any]:
        if inspect.iscoroutinefunction(self.fn):

            async def handle_async(event: Event, context: Context) -> Response:
                try:
                    args, kwargs, msgpack = self.decode(event)
                except (ValueError, serialization.PickleRefused) as exc:
                    return self.refused(event, exc)
                try:
                    result = await self.fn(*args, **kwargs)
                except Exception as exc:
                    return self.failure(exc, msgpack)
                return self.success(result, msgpack)

            return handle_async

        def handle(event: Event, context: Context) -> Response:
            try:
                args, kwargs, msgpack = self.decode(event)
            except (ValueError, serialization.PickleRefused) as exc:
                return self.refused(event, exc)
            try:
                result = self.fn(*args, **kwargs)
                if isinstance(result, types.GeneratorType):
                    result = _Generated(list(result))  # the replica answers once, so the items come together
            except Exception as exc:
                return self.failure(exc, msgpack)
            return self.success(result, msgpack)

        return handle

    def decode(self, event: Event) -> tuple[list[Any], dict[str, Any], bool]:
        content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type in _MSGPACK_TYPES:
            given = event.headers.get(TOKEN_HEADER) or ""
            allowed = bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())
            args, kwargs = serialization.decode_call(event.body, allow_pickle=allowed)
            self.check_arguments(args, kwargs)
            return args, kwargs, True
        if not event.body.strip():
            self.check_arguments([], {})
            return [], {}, False
        try:
            value = json.loads(event.body)
        except RecursionError:  # CPython's decoder stops itself at the interpreter's recursion limit
            raise ValueError("the JSON body nests too deeply") from None
        except ValueError as exc:
            raise ValueError(f"the body is neither msgpack (by Content-Type) nor JSON: {exc}") from None
        if isinstance(value, dict) and value and value.keys() <= {"args", "kwargs"}:
            args, kwargs = value.get("args") or [], value.get("kwargs") or {}
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError('in {"args": ..., "kwargs": ...}, args must be an array and kwargs an object')
        else:
            args, kwargs = [value], {}
        self.check_arguments(args, kwargs)
        return args, kwargs, False

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """ValueError when the arguments do not fit the function's signature (a caller's mistake, not the
        function's: a 400 rather than the function's own TypeError as a 500)."""
        if self.signature is None:
            return
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            name = getattr(self.fn, "__name__", "the function")
            raise ValueError(f"the arguments do not fit {name}{self.signature}: {exc}") from None

    def refused(self, event: Event, exc: Exception) -> Response:
        status = 403 if isinstance(exc, serialization.PickleRefused) else 400
        return Response({"error": str(exc)}, status)

    def success(self, result: Any, msgpack: bool) -> Response:
        generated = isinstance(result, _Generated)
        value = result.items if isinstance(result, _Generated) else result
        if msgpack:
            try:
                body, _ = serialization.dumps({"generator" if generated else "value": value})
            except Exception as exc:
                return self.failure(exc, msgpack)
            return Response(body, 200, {"Content-Type": serialization.MSGPACK})
        try:
            text = json.dumps(value, default=_json_default, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return self.failure(TypeError(f"the result cannot be sent as JSON ({exc}); call with msgpack"), False)
        return Response(text.encode(), 200, {"Content-Type": "application/json"})

    def failure(self, exc: Exception, msgpack: bool) -> Response:
        files = self.source_files
        info = errors.describe(exc, (lambda f: f if f in files else None) if files else None)
        print(info["traceback"], end="", file=sys.stderr)  # the function's log keeps the traceback too
        if msgpack:
            body, _ = serialization.dumps({"error": info})
            return Response(body, 500, {"Content-Type": serialization.MSGPACK})
        info.pop("pickle")
        return Response({"error": info}, 500)


class _Generated:
    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(obj)).decode()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
