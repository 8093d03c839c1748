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

A msgpack *batch* (``.map()``'s chunks; see :mod:`.serialization`) runs its calls one after the other, each decoded,
checked and answered exactly as if it had come alone (a malformed or refused call gets its 400 or 403 in its place,
the others still run); the batch is answered 200 with every call's status and reply. The exec timeout covers the
whole batch, which stops at the first call after it passed.

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
import time
import types
from collections.abc import Callable, Iterator, Mapping
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
        # Positional arguments that always fit, with no keywords: binding them would only say so (and costs more
        # than a trivial function's whole call). -1 when the signature has defaults, keyword-only or var parameters.
        params = list(self.signature.parameters.values()) if self.signature else []
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in params)
        self._fits = len(params) if self.signature and plain else -1

    def handler(self) -> Callable[[Event, Context], Any]:
        if inspect.iscoroutinefunction(self.fn):

            async def handle_async(event: Event, context: Context) -> Response:
                try:
                    request = self.decode(event)
                except (ValueError, serialization.PickleRefused) as exc:
                    return self.refused(event, exc)
                if isinstance(request, _Batch):
                    return await self.run_batch_async(request, context)
                args, kwargs, msgpack = request
                try:
                    result = await self.fn(*args, **kwargs)
                except Exception as exc:
                    return self.failure(exc, msgpack)
                return self.success(result, msgpack)

            return handle_async

        def handle(event: Event, context: Context) -> Response:
            try:
                request = self.decode(event)
            except (ValueError, serialization.PickleRefused) as exc:
                return self.refused(event, exc)
            if isinstance(request, _Batch):
                return self.run_batch(request, context)
            args, kwargs, msgpack = request
            try:
                result = self.fn(*args, **kwargs)
                if isinstance(result, types.GeneratorType):
                    result = _Generated(list(result))  # the replica answers once, so the items come together
            except Exception as exc:
                return self.failure(exc, msgpack)
            return self.success(result, msgpack)

        return handle

    def decode(self, event: Event) -> tuple[list[Any], dict[str, Any], bool] | _Batch:
        content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
        if content_type in _MSGPACK_TYPES:
            given = event.headers.get(TOKEN_HEADER) or ""
            allowed = bool(self.token) and hmac.compare_digest(given.encode(), self.token.encode())
            request = serialization.decode_request(event.body, allow_pickle=allowed)
            if not isinstance(request, tuple):
                return _Batch(request, allowed)
            args, kwargs = request
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
        if self.signature is None or (not kwargs and len(args) == self._fits):
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
        if msgpack:
            status, body = self.reply(result)
            return Response(body, status, {"Content-Type": serialization.MSGPACK})
        value = result.items if isinstance(result, _Generated) else result
        try:
            text = json.dumps(value, default=_json_default, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return self.failure(TypeError(f"the result cannot be sent as JSON ({exc}); call with msgpack"), False)
        return Response(text.encode(), 200, {"Content-Type": "application/json"})

    def reply(self, result: Any) -> tuple[int, bytes]:
        """A msgpack reply body for a result, with its status (500 with the error when it cannot be encoded)."""
        generated = isinstance(result, _Generated)
        try:
            body, _ = serialization.dumps({"generator": result.items} if generated else {"value": result})
        except Exception as exc:
            return 500, self.error_reply(exc)
        return 200, body

    def failure(self, exc: Exception, msgpack: bool) -> Response:
        if msgpack:
            return Response(self.error_reply(exc), 500, {"Content-Type": serialization.MSGPACK})
        info = self.describe(exc)
        print(info["traceback"], end="", file=sys.stderr)  # the function's log keeps the traceback too
        info.pop("pickle")
        return Response({"error": info}, 500)

    def describe(self, exc: Exception) -> dict[str, Any]:
        """The exception for the caller, its traceback naming the user's own files (see stoker.tracebacks)."""
        files = self.source_files
        return errors.describe(exc, (lambda f: f if f in files else None) if files else None)

    def error_reply(self, exc: Exception) -> bytes:
        info = self.describe(exc)
        print(info["traceback"], end="", file=sys.stderr)  # the function's log keeps the traceback too
        body, _ = serialization.dumps({"error": info})
        return body

    # -- batches (``.map()`` sends its items in chunks) ----------------------------------------------------
    def run_batch(self, batch: _Batch, context: Context) -> Response:
        """Each call of the batch in turn, as if it had come alone; one reply holding every call's reply."""
        run = _BatchRun(self, batch, context)
        for args, kwargs in run.calls():
            try:
                result = self.fn(*args, **kwargs)
                if isinstance(result, types.GeneratorType):
                    result = _Generated(list(result))
            except (Exception, SystemExit) as exc:
                run.failed(exc)
            else:
                run.returned(result)
        return run.response()

    async def run_batch_async(self, batch: _Batch, context: Context) -> Response:
        """:meth:`run_batch` for a coroutine function: the calls are awaited one after the other."""
        run = _BatchRun(self, batch, context)
        for args, kwargs in run.calls():
            try:
                result = await self.fn(*args, **kwargs)
            except (Exception, SystemExit) as exc:
                run.failed(exc)
            else:
                run.returned(result)
        return run.response()

    def decode_item(self, data: bytes, allowed: bool) -> tuple[list[Any], dict[str, Any]]:
        args, kwargs = serialization.decode_call(data, allow_pickle=allowed)
        self.check_arguments(args, kwargs)
        return args, kwargs


class _Batch:
    """A batch body's calls (still encoded) and whether its caller may send pickles."""

    __slots__ = ("allowed", "calls")

    def __init__(self, calls: list[bytes], allowed: bool) -> None:
        self.calls = calls
        self.allowed = allowed


class _BatchRun:
    """One batch being answered: everything but calling the function, which the sync and async callers do (the only
    part that differs). :meth:`calls` yields the arguments of each call that decodes and fits, in order, after
    checking the exec timeout; a call refused before it ran is answered in its place meanwhile. The caller reports
    each call's outcome with :meth:`returned` or :meth:`failed`."""

    __slots__ = ("adapter", "batch", "context", "replies", "started")

    def __init__(self, adapter: Adapter, batch: _Batch, context: Context) -> None:
        self.adapter = adapter
        self.batch = batch
        self.context = context
        self.replies: list[tuple[int, bytes]] = []
        self.started = time.perf_counter()

    def calls(self) -> Iterator[tuple[list[Any], dict[str, Any]]]:
        for data in self.batch.calls:
            _check_deadline(self.context)
            try:
                args, kwargs = self.adapter.decode_item(data, self.batch.allowed)
            except (ValueError, serialization.PickleRefused) as exc:
                self.replies.append(_refusal(exc))
                continue
            yield args, kwargs

    def returned(self, result: Any) -> None:
        self.replies.append(self.adapter.reply(result))

    def failed(self, exc: Exception | SystemExit) -> None:
        # SystemExit fails this call, as it fails a call that came alone, not the batch
        body = _exited(self.context, exc) if isinstance(exc, SystemExit) else self.adapter.error_reply(exc)
        self.replies.append((500, body))

    def response(self) -> Response:
        body = serialization.encode_batch_reply(self.replies, time.perf_counter() - self.started)
        return Response(body, 200, {"Content-Type": serialization.MSGPACK})


def _refusal(exc: Exception) -> tuple[int, bytes]:
    """What a call refused before it ran is answered when it comes alone: 403 or 400 with a JSON error."""
    status = 403 if isinstance(exc, serialization.PickleRefused) else 400
    return status, json.dumps({"error": str(exc)}).encode()


def _exited(context: Context, exc: SystemExit) -> bytes:
    message = f"function {context.function_name} failed: SystemExit"
    return (f"{message}: {exc}" if str(exc) else message).encode()


def _check_deadline(context: Context) -> None:
    """Stop a batch past its exec timeout. The replica has answered 504 and told the handler to stop, but a
    function that catches the exception it was given would only end its own call: the batch must not go on."""
    if time.time() > context.deadline:
        raise TimeoutError("the batch passed its exec timeout")


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
