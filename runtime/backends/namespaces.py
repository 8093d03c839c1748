"""Function namespaces as ``/system/namespace/{name}`` manages them: faas-provider's ``FunctionNamespace`` wire type
and where a backend keeps the namespaces created explicitly.

A namespace exists when it was created (``POST /system/namespace/``), when a function is deployed to it (deploys
create namespaces implicitly, as stoker always did) or when it is the default, ``openfaas-fn``. Only created ones
are stored, with their labels and annotations; the others report the ``openfaas: "1"`` label OpenFaaS clients add.

Backends that keep namespaces say so with :class:`ManagesNamespaces`: local and Docker in ``$STOKER_HOME/namespaces``
(:class:`FileNamespaceStore`), Swarm in Docker configs (:mod:`runtime.backends.swarm.namespaces`), so every gateway
of a Swarm sees the same ones. Kubernetes serves one namespace (``STOKER_K8S_NAMESPACE``) and stores none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stoker.atomicfile import is_temporary, write_atomic
from stoker.errors import InvalidRequest
from stoker.names import validate_name

OPENFAAS_LABEL = "openfaas"  # faas-cli and the go-sdk set openfaas: "1" on every namespace they create or update
MAX_ENTRIES = 64  # labels, and annotations, per namespace
MAX_VALUE_CHARS = 4096
# A Kubernetes-style key: an optional DNS prefix and '/', then letters, digits, '-', '_' or '.'.
_KEY = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class FunctionNamespace:
    """faas-provider's ``types.FunctionNamespace``: ``{name, labels, annotations}`` (empty maps left out)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any, path_name: str = "") -> FunctionNamespace:
        """A request body; ``path_name``: the name in the URL, which the body's (when it has one) must match."""
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object with name, labels and annotations")
        name = body.get("name")
        if name is None:  # absent or null: the URL's
            name = path_name
            if not name:
                raise InvalidRequest("namespace not specified: give name in the body")
        name = validate_name(name, "namespace")
        if path_name and name != path_name:
            raise InvalidRequest(f"the namespace in the body ({name!r}) does not match the URL ({path_name!r})")
        labels = _text_map(body.get("labels"), "labels")
        return cls(name, {**labels, OPENFAAS_LABEL: "1"}, _text_map(body.get("annotations"), "annotations"))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def implicit(name: str) -> FunctionNamespace:
    """A namespace that exists without having been created (the default, or one functions were deployed to)."""
    return FunctionNamespace(name, {OPENFAAS_LABEL: "1"})


def _text_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be an object of strings")
    if len(value) > MAX_ENTRIES:
        raise InvalidRequest(f"{what}: at most {MAX_ENTRIES} entries, got {len(value)}")
    for key, text in value.items():
        if not _KEY.match(key):
            raise InvalidRequest(
                f"{what}: key {key[:80]!r} is not an optional DNS prefix and '/' then at most 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            )
        if not isinstance(text, str):
            raise InvalidRequest(f"{what}.{key} must be a string")
        if len(text) > MAX_VALUE_CHARS or _CONTROL.search(text):
            raise InvalidRequest(f"{what}.{key}: at most {MAX_VALUE_CHARS} characters, none of them control ones")
    return dict(value)


class NamespaceStore(Protocol):
    """The namespaces created explicitly (their labels and annotations)."""

    def get(self, name: str) -> FunctionNamespace | None: ...

    def names(self) -> list[str]: ...

    def save(self, namespace: FunctionNamespace) -> None:
        """Create or replace."""

    def delete(self, name: str) -> None:
        """Forget ``name`` (nothing when it was not stored)."""


@runtime_checkable
class ManagesNamespaces(Protocol):
    """A backend whose namespaces can be created, changed and removed (``/system/namespace/{name}``)."""

    @property
    def namespace_store(self) -> NamespaceStore: ...


class FileNamespaceStore:
    """One JSON file per namespace, ``<root>/<name>.json`` (0600, written atomically)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / f"{validate_name(name, 'namespace')}.json"

    def get(self, name: str) -> FunctionNamespace | None:
        try:
            data = json.loads(self._path(name).read_text(encoding="utf-8"))
            return FunctionNamespace(data["name"], dict(data.get("labels") or {}), dict(data.get("annotations") or {}))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # damaged by hand: the namespace still exists
            return implicit(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.json") if not is_temporary(p))

    def save(self, namespace: FunctionNamespace) -> None:
        write_atomic(self._path(namespace.name), json.dumps(namespace.to_json(), sort_keys=True).encode())

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
