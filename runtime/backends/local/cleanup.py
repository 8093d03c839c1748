"""``stoker down`` on the local backend: the replica process groups a killed platform left and the socket folder.
Everything else the local backend keeps is state in ``$STOKER_HOME`` (see runtime/backends/cleanup.py)."""

from __future__ import annotations

import shutil

from runtime.backends.local.groups import GroupRecords
from stoker.config import Config


def tear_down(config: Config) -> list[str]:
    root = config.home / "local"
    out: list[str] = []
    groups = root / "groups"
    if groups.is_dir():
        killed = GroupRecords(groups).reap()
        out += [f"killed process {pid}, left by a replica" for pid in killed]
    sockets = root / "sockets"
    if sockets.is_dir():
        shutil.rmtree(sockets, ignore_errors=True)
        out.append(f"removed the replica sockets in {sockets}")
    return out


def built_images(config: Config) -> list[str]:
    """The local backend builds no image (its requirement folders are in ``$STOKER_HOME``, purged with it)."""
    return []
