"""Function secrets kept as files (``/system/secrets``), for backends without a secret store of their own.

Layout: ``<root>/<namespace>/<name>``, mode 0600, in folders of mode 0700. A replica sees only the secrets its
deployment lists, copied into a folder of its own (:meth:`FileSecretStore.materialize`), which the replica reads
as ``/var/openfaas/secrets/<name>`` (or ``STOKER_SECRETS_DIR``). Values are never put in environment variables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from stoker.atomicfile import is_temporary, private_dir, write_atomic
from stoker.errors import Conflict, InvalidRequest, NotFound
from stoker.names import validate_name

MAX_SECRET_BYTES = 512 * 1024  # Kubernetes' limit is 1 MiB; OpenFaaS functions read small values


class SecretStore(Protocol):
    def names(self, namespace: str) -> list[str]: ...

    def set(self, name: str, namespace: str, value: bytes, create: bool) -> None:
        """Create (``create``: Conflict if it exists) or update (NotFound if missing) a secret."""

    def delete(self, name: str, namespace: str) -> None: ...

    def missing(self, names: list[str], namespace: str) -> list[str]:
        """Which of ``names`` do not exist (deploys refuse functions that ask for them)."""
        ...


def check_secret(name: str, value: bytes | None = None) -> None:
    """InvalidRequest unless ``name`` is a DNS-1123 label and ``value`` (when given) is within the size limit."""
    validate_name(name, "secret")
    if value is not None and len(value) > MAX_SECRET_BYTES:
        raise InvalidRequest(f"secret {name!r} is {len(value)} bytes; at most {MAX_SECRET_BYTES} are allowed")


class FileSecretStore:
    """``on_update(name, namespace)``: called after a secret's value changed (a backend whose replicas hold copies
    it cannot rewrite, Docker's volumes, rolls the functions that use it)."""

    def __init__(self, root: Path, on_update: Callable[[str, str], None] | None = None) -> None:
        self.root = root
        self._mounts: dict[Path, tuple[list[str], str]] = {}  # folder -> (names, namespace), kept current
        self._on_update = on_update

    def _path(self, name: str, namespace: str) -> Path:
        return self.root / namespace / name

    def names(self, namespace: str) -> list[str]:
        folder = self.root / namespace
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not is_temporary(p))

    def set(self, name: str, namespace: str, value: bytes, create: bool) -> None:
        check_secret(name, value)
        path = self._path(name, namespace)
        if create and path.exists():
            raise Conflict(f"secret {name!r} already exists in {namespace!r}; use PUT to update it")
        if not create and not path.exists():
            raise NotFound(f"secret {name!r} not found in namespace {namespace!r}")
        write_atomic(path, value)
        self._refresh(name, namespace)
        if not create and self._on_update is not None:
            self._on_update(name, namespace)

    def delete(self, name: str, namespace: str) -> None:
        check_secret(name)
        try:
            self._path(name, namespace).unlink()
        except FileNotFoundError:
            raise NotFound(f"secret {name!r} not found in namespace {namespace!r}") from None
        self._refresh(name, namespace)

    def _refresh(self, name: str, namespace: str) -> None:
        """Rotate a changed secret into every folder that holds it, as Kubernetes does for mounted secrets."""
        for dest, (names, ns) in list(self._mounts.items()):
            if ns == namespace and name in names and dest.is_dir():
                self.materialize(names, ns, dest)

    def missing(self, names: list[str], namespace: str) -> list[str]:
        return [n for n in names if not self._path(n, namespace).is_file()]

    def materialize(self, names: list[str], namespace: str, dest: Path) -> Path:
        """Make ``dest`` hold exactly the listed secrets, readable by the owner only; return ``dest``.

        Each file is replaced atomically, so a running replica never reads a half-written secret; later changes
        to these secrets are copied in too."""
        self._mounts[dest] = (list(names), namespace)
        private_dir(dest)
        for name in names:
            source = self._path(name, namespace)
            try:
                value = source.read_bytes()
            except FileNotFoundError:
                (dest / name).unlink(missing_ok=True)  # deleted since: the function sees it gone
                continue
            write_atomic(dest / name, value, mode=0o400)
        for stale in dest.iterdir():
            if stale.name not in names and not is_temporary(stale):
                stale.unlink()
        return dest
