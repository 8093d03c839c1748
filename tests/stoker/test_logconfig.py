"""Diagnostics: configured once per entry point, text or JSON lines, stoker's loggers only."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from stoker import logconfig
from stoker.config import Config
from stoker.errors import ConfigError


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in logconfig.PACKAGES
    }
    yield
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers = handlers
        logging.getLogger(name).propagate = propagate


def test_text_lines_read_as_they_always_have(restore_loggers: None) -> None:
    out = io.StringIO()
    logconfig.configure("text", out)
    logging.getLogger("runtime.backends.pool").warning("warm pool: cannot start a generic %s: %s", "process", "boom")
    logging.getLogger("gateway.server").debug("not shown at the default level")
    assert out.getvalue() == "stoker: warm pool: cannot start a generic process: boom\n"


def test_json_lines_carry_level_and_logger(restore_loggers: None) -> None:
    out = io.StringIO()
    logconfig.configure("json", out)
    logging.getLogger("autoscaler.loop").info("autoscaler: %s: 0 -> 1 replicas", "echo")
    try:
        raise RuntimeError("redis away")
    except RuntimeError:
        logging.getLogger("events.consumer").exception("queue: worker stopped")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["level"], first["logger"], first["message"]) == (
        "info",
        "autoscaler.loop",
        "autoscaler: echo: 0 -> 1 replicas",
    )
    assert second["level"] == "error" and "RuntimeError: redis away" in second["exception"]


def test_the_root_logger_is_left_to_user_code(restore_loggers: None) -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    logconfig.configure("text", io.StringIO())
    assert root.handlers == before


def test_log_format_is_validated(tmp_path: Path) -> None:
    assert Config.from_env({"STOKER_HOME": str(tmp_path), "STOKER_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="STOKER_LOG_FORMAT: 'xml' is not one of text, json"):
        Config.from_env({"STOKER_HOME": str(tmp_path), "STOKER_LOG_FORMAT": "xml"})
