"""Build contexts: a Dockerfile and folders packed into the tar the Docker Engine's build API takes."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path


def pack_context(dockerfile: str, folders: Mapping[str, Path]) -> bytes:
    """A build context holding ``Dockerfile`` and each folder under its name. Owners are zeroed; modification times
    are kept, so the ``.pyc`` files pip compiled stay valid for their sources in the image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
        for arcname, folder in sorted(folders.items()):
            _add_tree(tar, folder, arcname)
    return buf.getvalue()


def _add_tree(tar: tarfile.TarFile, root: Path, arcname: str) -> None:
    def normalize(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        # Everything is readable by the function's unprivileged user; nothing is writable (read-only root anyway).
        info.mode = 0o755 if info.isdir() or info.mode & 0o100 else 0o644
        return info

    tar.add(str(root), arcname=arcname, recursive=False, filter=normalize)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in [*dirnames, *sorted(filenames)]:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.exists():
                continue
            tar.add(str(path), arcname=str(Path(arcname) / rel / name), recursive=False, filter=normalize)
