"""Errors the SDK raises, and how a remote exception travels back to the caller.

- A function that raised on the replica raises *its own exception type* in the caller when the type can be rebuilt
  (cloudpickled on the replica, or imported by name), with its message; its ``__cause__`` is a
  :class:`RemoteTraceback` whose text is the replica's traceback (Python prints it as "The above exception was the
  direct cause..."), and the same text is in ``exc.remote_traceback``. When the type cannot be rebuilt, the caller
  gets a :class:`RemoteError` naming it.
- :class:`CallFailed`: the call did not complete (no replica, replica crashed, timeout, body too large, unknown
  function); ``retryable`` says whether trying again may succeed.
- :class:`DeployError`: a deploy was refused (Python version mismatch, missing requirement, gateway refusal).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import traceback
from typing import Any

import cloudpickle

from stoker.tracebacks import UserFile, user_traceback

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class SDKError(Exception):
    """Base of the errors the SDK itself raises."""


class DeployError(SDKError):
    """The platform refused to deploy a function; the message says why and what to do."""


class CallFailed(SDKError):
    """A call did not complete. ``status`` is the HTTP status (0: no answer); ``retryable`` whether to retry."""

    def __init__(self, message: str, status: int = 0, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class RemoteError(SDKError):
    """A remote exception whose type could not be rebuilt here. ``type_name`` is ``module.QualName``."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback


class RemoteTraceback(Exception):
    """Carries the replica's traceback text as the ``__cause__`` of a re-raised remote exception."""

    def __str__(self) -> str:
        return "\n\nRemote traceback:\n" + str(self.args[0] if self.args else "")


def describe(exc: BaseException, user_file: UserFile | None = None) -> dict[str, Any]:
    """What the replica sends back for an exception the function raised; with ``user_file``, its traceback starts
    at the caller's own frames (:func:`stoker.tracebacks.user_traceback`)."""
    cls = type(exc)
    try:
        pickled: bytes | None = cloudpickle.dumps(exc, protocol=5)
    except Exception:  # an exception holding a lock, a socket...: the type and message still travel
        pickled = None
    return {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "traceback": (
            user_traceback(exc, user_file) if user_file is not None else "".join(traceback.format_exception(exc))
        ),
        "pickle": pickled,
    }


def rebuild(info: Any) -> BaseException:
    """The exception to raise in the caller for a reply's ``error`` map."""
    if not isinstance(info, dict):
        return RemoteError("unknown", repr(info))
    type_name, message = str(info.get("type") or "Exception"), str(info.get("message") or "")
    tb = str(info.get("traceback") or "")
    exc = _unpickle(info.get("pickle")) or _by_name(type_name, message) or RemoteError(type_name, message, tb)
    exc.__cause__ = RemoteTraceback(tb)
    with contextlib.suppress(AttributeError):  # a type with __slots__ and no __dict__ keeps only __cause__
        exc.remote_traceback = tb  # type: ignore[attr-defined]
    return exc


def _unpickle(data: Any) -> BaseException | None:
    if not isinstance(data, bytes):
        return None
    try:
        value = cloudpickle.loads(data)
    except Exception:  # the type's module is not importable here, or it does not unpickle
        return None
    return value if isinstance(value, BaseException) else None


def _by_name(type_name: str, message: str) -> BaseException | None:
    module_name, _, qualname = type_name.rpartition(".")
    try:
        obj: Any = builtins if module_name == "builtins" else importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            return obj(message)
    except Exception:
        return None
    return None
