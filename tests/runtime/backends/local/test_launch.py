"""Local replicas find the runtime first on their path, whatever the install: the project root (the folder that
holds the ``runtime`` package) leads their PYTHONPATH, for the replica and for the group watcher."""

from __future__ import annotations

from pathlib import Path

from runtime.backends.local import backend, launch


def test_the_replicas_path_starts_at_the_folder_that_holds_the_packages() -> None:
    for module in (launch, backend):
        root = Path(module._PROJECT_ROOT)
        assert (root / "runtime" / "__main__.py").is_file(), module.__name__
        assert (root / "stoker" / "__init__.py").is_file(), module.__name__
