"""What a replica writes to its log (stdout and stderr, which the backend collects line by line).

- One line per call on stdout: ``call_id=<id> method=<M> path=<raw path> status=<code> duration=<seconds>``.
- The handler's ``context.logger`` writes ``call_id=<id> level=<LEVEL> <message>`` to stdout. It is one logger
  for the whole process; the call id comes from a context variable, so no logger is created per call.
- A failed call's traceback goes to stderr in one write, every line prefixed with ``call_id=<id> `` so it can
  be found by call id even when concurrent calls interleave their output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from contextvars import ContextVar
from typing import TextIO

from stoker.tracebacks import in_folder, user_traceback

call_id_var: ContextVar[str] = ContextVar("stoker_call_id", default="-")


class _CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get()
        return True


def function_logger(function_name: str, stream: TextIO) -> logging.Logger:
    """The logger handed to handlers as ``context.logger``; its records carry the current call id."""
    logger = logging.getLogger(f"stoker.function.{function_name}")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("call_id=%(call_id)s level=%(levelname)s %(message)s"))
    handler.addFilter(_CallIdFilter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a handler's own logging.basicConfig() must not print our lines twice
    return logger


def format_call(call_id: str, method: str, path: str, status: int, duration: float) -> str:
    """The one log line of a call (with its newline)."""
    return f"call_id={call_id} method={method} path={path} status={status} duration={duration:.4f}\n"


class CallLog:
    """The per-call lines, written in batches: one write every ``delay`` seconds at most, not one per call.

    At thousands of calls a second a write per line costs the replica a system call per call and the backend a
    pipe read per call; batched, both are amortised over hundreds of lines. Lines are at most ``delay`` late;
    :meth:`flush` runs at shutdown so none is lost on a clean stop.
    """

    def __init__(self, out: TextIO, delay: float = 0.02) -> None:
        self._out = out
        self._delay = delay
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def write(self, line: str) -> None:
        """Queue one line (with its newline). Call from the event loop's thread."""
        self._lines.append(line)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            data, self._lines = "".join(self._lines), []
            self._out.write(data)
            self._out.flush()


def format_failure(call_id: str, header: str, exc: BaseException, function_dir: str = "") -> str:
    """``header`` and the traceback of ``exc``, each line prefixed with the call id. With ``function_dir``, the
    traceback starts at the function's own frames, its files named relative to that folder
    (:func:`stoker.tracebacks.user_traceback`)."""
    prefix = f"call_id={call_id} "
    if function_dir:
        text = user_traceback(exc, in_folder(function_dir), library_dirs())
    else:
        text = "".join(traceback.format_exception(exc))
    lines = [header, *text.rstrip("\n").split("\n")]
    return "".join(f"{prefix}{line}\n" for line in lines)


def library_dirs() -> list[str]:
    """Where this replica's packages are installed (shown as ``site-packages/...`` in tracebacks, not as a path
    under ``$STOKER_HOME``): the ``sys.path`` entries named like an install folder."""
    return [p for p in sys.path if os.path.basename(p) in ("site", "site-packages", "dist-packages")]
