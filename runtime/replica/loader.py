"""Import the function's entry point before the replica serves anything.

A replica that cannot load its handler must say why in one line the backend can show at deploy time:
:class:`LoadError` carries that line (``SyntaxError: invalid syntax (handler.py, line 3)``, the file and line
of an exception raised while importing, a missing ``handler.py`` or function); :mod:`runtime.replica.server` prints
the traceback and ``stoker: cannot load handler: <line>`` to stderr and exits with code 3.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.replica.config import ReplicaConfig


class LoadError(Exception):
    """The handler cannot be loaded. ``str()`` is the one-line reason; ``details`` a traceback, if any."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.details = details


@dataclass(frozen=True)
class Handler:
    """The loaded entry point and how it must be run."""

    fn: Callable[..., Any]
    is_async: bool
    source: str  # "handler.py:handle", for messages


def load_handler(config: ReplicaConfig) -> Handler:
    """Put the function folder first on ``sys.path``, import the entry point and check it can be called."""
    folder = config.function_dir
    if not folder.is_dir():
        raise LoadError(f"function folder {folder} does not exist")
    module_name, attr = config.module_name, config.function_attr
    relative = Path(*module_name.split("."))
    is_package = (folder / relative / "__init__.py").is_file()
    if not is_package and not (folder / relative.with_suffix(".py")).is_file():
        raise LoadError(f"{relative.with_suffix('.py')} not found in {folder}")
    sys.path.insert(0, str(folder))
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:  # str() already names the file and line: "invalid syntax (handler.py, line 3)"
        raise LoadError(f"{type(exc).__name__}: {exc}", traceback.format_exc()) from None
    except (Exception, SystemExit) as exc:  # module-level code may do anything, including sys.exit()
        where = _where(exc, folder)
        raise LoadError(f"{type(exc).__name__}: {exc}{where}", traceback.format_exc()) from None
    source = f"{relative.with_suffix('.py')}:{attr}"
    fn = getattr(module, attr, None)
    if fn is None:
        raise LoadError(f"{relative.with_suffix('.py')} has no function {attr!r}")
    if not callable(fn):
        raise LoadError(f"{source} is not callable (it is a {type(fn).__name__})")
    # type(fn).__call__: an instance of a class with ``async def __call__`` is an async handler too
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
    return Handler(fn=fn, is_async=is_async, source=source)


def _where(exc: BaseException, folder: Path) -> str:
    """`` (handler.py, line 2)``: the innermost frame in the function's own files: the line to fix."""
    prefix = str(folder) + os.sep
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(prefix):
            return f" ({os.path.relpath(frame.filename, folder)}, line {frame.lineno})"
    return ""
