"""The one way state files are written: atomically, privately, and with a clear error when the disk is full.

:func:`write_atomic` writes a temporary file in the destination's own folder (so the rename cannot cross file
systems), fsyncs it, renames it over the destination, then fsyncs the folder so the rename itself survives a power
cut. A reader sees the old content or the new one, never a truncated file, and a failure (a full disk, a crash)
leaves the old file and no temporary one behind.

Errors are :class:`~stoker.errors.StorageFull` (507) when the file system is out of space or quota, else
:class:`~stoker.errors.StateNotSaved` (500); both name the file and the cause, and the gateway answers them as JSON.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from stoker.errors import StateNotSaved, StorageFull

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
TMP_MARK = ".tmp-"  # temporary files are ``.<name>.tmp-<random>``: hidden, and never taken for state


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (file mode ``mode``), creating its folder (0700) if needed. ``durable=False``
    skips the fsyncs, for records that only have to outlive the process, not the machine (nothing is left of them
    after a reboot anyway)."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(4)}")
    try:
        private_dir(path.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)  # whatever the umask
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise state_error(exc, path) from None


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700 (existing folders are left as they are)."""
    missing: list[Path] = []
    folder = path
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue  # made meanwhile by another writer
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode goes through the umask
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` means the file system is out of space (or of the user's quota)."""
    return isinstance(exc, OSError) and exc.errno in _FULL


def state_error(exc: OSError, path: Path | str) -> StateNotSaved:
    """The error to raise for ``exc`` while saving ``path``: :class:`StorageFull` for a full disk."""
    reason = exc.strerror or str(exc)
    if is_full(exc):
        return StorageFull(f"cannot save {path}: {reason} (free space where STOKER_HOME is, then retry)")
    return StateNotSaved(f"cannot save {path}: {reason}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary file of :func:`write_atomic` (left only by a crash mid-write)."""
    return path.name.startswith(".") and TMP_MARK in path.name
