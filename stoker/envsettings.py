"""Settings read from environment variables: the one loader behind every ``from_env`` of a settings dataclass.

A field ``name`` of type ``str``, ``int``, ``float``, ``bool`` or ``Path`` is read from ``<PREFIX><NAME>``
(``STOKER_`` for :class:`stoker.config.Config`, ``STOKER_DOCKER_`` for the container settings, ...). A variable
that is unset or empty keeps the field's default; one that does not parse raises
:class:`~stoker.errors.ConfigError` naming the variable. Checks of meaning (ranges, one of a set) stay with each
settings class, which knows what its values are for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from stoker.errors import ConfigError

_TRUE = ("1", "true", "yes", "on")
_BOOLS = (*_TRUE, "0", "false", "no", "off")


def from_environ(
    cls: type[Any], environ: Mapping[str, str], prefix: str, skip: tuple[str, ...] = (), strip: bool = True
) -> dict[str, Any]:
    """The values of ``cls``'s fields set in ``environ``, parsed to their types (``strip``: trim whitespace)."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        var = f"{prefix}{f.name.upper()}"
        raw = environ.get(var, "")
        if strip:
            raw = raw.strip()
        if f.name in skip or not raw:
            continue
        values[f.name] = parse(var, raw, str(f.type))
    return values


def parse(var: str, raw: str, type_name: str) -> Any:
    """``raw`` as ``type_name`` (the annotation's text: ``int``, ``float``, ``bool``, ``Path``, else ``str``)."""
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw).expanduser()
        if type_name == "bool":
            if raw.strip().lower() not in _BOOLS:
                raise ValueError(raw)
            return raw.strip().lower() in _TRUE
    except ValueError:
        raise ConfigError(f"{var}: {raw!r} is not a valid {type_name}") from None
    return raw
