"""What a handler receives and may return: ``handle(event, context)``.

``event`` is an :class:`Event` (method, path, query, headers, body and the ``text``/``json()`` helpers), ``context``
a :class:`Context` (function name, call id, deadline, secrets, logger). A handler returns a str or bytes (the body),
a dict or list (sent as JSON), a :class:`Response`, or an OpenFaaS ``python3-http`` style dict
``{"statusCode": ..., "body": ..., "headers": ...}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Headers(dict[str, str]):
    """Request headers with case-insensitive lookup (keys are stored lower-case)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Event:
    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes
    query_list: list[tuple[str, str]] = field(default_factory=list)  # every value, for repeated keys

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Context:
    function_name: str
    call_id: str
    deadline: float  # time.time() by which the call must have answered
    secrets_dir: Path
    logger: logging.Logger
    namespace: str = ""

    def remaining(self) -> float:
        """Seconds left before the exec timeout."""
        return max(0.0, self.deadline - time.time())

    def secret(self, name: str) -> str:
        """The secret ``name`` as text, read from its file (``/var/openfaas/secrets/<name>``); KeyError if absent."""
        try:
            return (self.secrets_dir / name).read_text().strip()
        except OSError:
            raise KeyError(f"secret {name!r} is not mounted for {self.function_name}") from None

    @property
    def secrets(self) -> Mapping[str, str]:
        """Every mounted secret by name."""
        if not self.secrets_dir.is_dir():
            return {}
        return {p.name: p.read_text().strip() for p in self.secrets_dir.iterdir() if p.is_file()}


@dataclass
class Response:
    body: bytes | str | dict[str, Any] | list[Any] | None = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
