"""What the docker backend keeps of each function under ``$STOKER_HOME/docker/functions`` besides container labels.

Labels describe running containers only: a function scaled to zero has none, and replicas specialised from the warm
pool carry the pool's labels. So every change also writes ``<namespace>/<name>.json`` (the deployment, desired
replicas, version, volumes, codesign variables; mode 0600, it holds the function's derived key) and, for functions
that can start from the pool, ``<name>.bundle``. A restarted platform restores every function from these files and
adopts the containers of the recorded version; labels remain the fallback for containers without a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.backends.docker.volumes import FunctionCode
from stoker.atomicfile import write_atomic
from stoker.spec import FunctionDeployment


@dataclass(frozen=True)
class SavedFunction:
    deployment: FunctionDeployment
    replicas: int
    created_at: float
    version: str
    secrets_volume: str
    code: FunctionCode


class FunctionFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str, namespace: str, suffix: str) -> Path:
        return self.root / namespace / f"{name}{suffix}"

    def save(self, fn: SavedFunction) -> None:
        dep = fn.deployment
        state: dict[str, Any] = {
            "deployment": dep.to_stored(),
            "replicas": fn.replicas,
            "created_at": fn.created_at,
            "version": fn.version,
            "secrets_volume": fn.secrets_volume,
            "code": {"volume": fn.code.volume, "env": fn.code.env},
        }
        bundle_path = self._path(dep.service, dep.namespace, ".bundle")
        if fn.code.data:
            write_atomic(bundle_path, fn.code.data)
        else:
            bundle_path.unlink(missing_ok=True)
        write_atomic(self._path(dep.service, dep.namespace, ".json"), json.dumps(state).encode())

    def delete(self, name: str, namespace: str) -> None:
        for suffix in (".json", ".bundle"):
            self._path(name, namespace, suffix).unlink(missing_ok=True)

    def load_all(self) -> tuple[list[SavedFunction], list[str]]:
        """Every saved function, and a message per file that could not be read (the others still load)."""
        saved: list[SavedFunction] = []
        problems: list[str] = []
        for path in sorted(self.root.glob("*/*.json")):
            try:
                state = json.loads(path.read_text())
                dep = FunctionDeployment.from_stored(state["deployment"])
                bundle_path = path.with_suffix(".bundle")
                data = bundle_path.read_bytes() if bundle_path.is_file() else b""
                code = FunctionCode(str(state["code"]["volume"]), dict(state["code"]["env"]), data)
                saved.append(
                    SavedFunction(
                        dep,
                        int(state["replicas"]),
                        float(state["created_at"]),
                        str(state["version"]),
                        str(state["secrets_volume"]),
                        code,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(f"cannot restore {path}: {exc}")
        return saved, problems
