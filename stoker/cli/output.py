"""What the CLI prints: tables aligned by column, ``Key: value`` blocks and compact values for people, JSON for
programs (``--json``), and the one error that means the command line itself is wrong (exit status 2)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


def print_json(data: Any) -> int:
    """``data`` as indented JSON with sorted keys on stdout (what every ``--json`` prints); exit status 0."""
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, separated by two spaces; the last column is not padded."""
    cells = [[str(h) for h in headers], *([text(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``Key:`` labels padded to one width, then values; pairs whose value is empty are left out."""
    shown = [(k, text(v)) for k, v in pairs if v not in (None, "", [], {})]
    width = max((len(k) for k, _ in shown), default=0) + 1
    return "\n".join(f"{k + ':':<{width}}  {v}" for k, v in shown)


def text(value: Any) -> str:
    """One cell: mappings as ``k=v, ...``, lists joined by commas, whole floats without ``.0``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # OpenFaaS reports invocation counts as floats
    return "" if value is None else str(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as dotted keys (``provider.orchestration``), for ``Key: value`` display."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, value))
    return out
