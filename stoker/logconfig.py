"""Diagnostics: every module logs to ``logging.getLogger(__name__)``; each entry point calls :func:`configure` once
(``stoker up``, ``stoker controller``, the replica, the local backend's group watcher).

One line per event on stderr. Text (the default) reads ``stoker: <message>``, as these lines always have; with
``STOKER_LOG_FORMAT=json`` each line is a JSON object with ``time``, ``level``, ``logger`` and ``message`` (and
``exception`` when there is one), for log collectors. Levels: ``info`` for what an operator may want to follow,
``warning`` for something that went wrong and is being retried or worked around, ``error`` for something that
failed for good.

Only stoker's own package loggers are configured, never the root logger: in a replica, a handler's own
``logging.basicConfig()`` keeps working as it would anywhere else.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

FORMATS = ("text", "json")
PACKAGES = ("stoker", "gateway", "runtime", "autoscaler", "events", "builder")


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure(fmt: str = "text", stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Send stoker's diagnostics to ``stream`` (stderr) in ``fmt`` (``text`` or ``json``); call once per process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("stoker: %(message)s"))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
