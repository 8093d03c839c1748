"""Function and namespace names: DNS-1123 labels, checked the same way everywhere."""

from __future__ import annotations

import re

from stoker.errors import InvalidRequest

DEFAULT_NAMESPACE = "openfaas-fn"
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_LEN = 63


class InvalidName(InvalidRequest, ValueError):
    """A function, namespace or secret name that is not a DNS-1123 label (a 400 where it reaches a client)."""


def validate_name(name: object, kind: str = "function") -> str:
    """Return ``name`` if it is a DNS-1123 label, else raise :class:`InvalidName` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{kind} name is missing")
    if len(name) > MAX_LEN:
        raise InvalidName(f"{kind} name {name!r} is {len(name)} characters; at most {MAX_LEN} are allowed")
    if not _LABEL.match(name):
        raise InvalidName(
            f"{kind} name {name!r} is invalid: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def split_qualified(qualified: str, default_namespace: str = DEFAULT_NAMESPACE) -> tuple[str, str]:
    """Split ``name.namespace`` (as used in ``/function/`` paths) into ``(name, namespace)``."""
    name, sep, namespace = qualified.partition(".")
    return name, (namespace if sep else default_namespace)
