"""Code bundles: a function folder as a deterministic tar.gz, signed with the platform key.

The CLI packs a folder and uploads it; the gateway checks it (size, member count and paths, ``handler.py`` present),
signs it and hands it to the backend. A replica (and later a warm-pool replica) verifies the signature before it
extracts or imports anything. Checking and unpacking take time in proportion to the member count (a 620 KB bundle
can hold 100,000 empty files), so the gateway does both in a thread, never in its event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import stat
import tarfile
from pathlib import Path, PurePosixPath

from stoker.errors import InvalidRequest, PayloadTooLarge

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_FILES = 10_000
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "build", ".mypy_cache", ".pytest_cache"}


def pack(folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Tar and gzip ``folder`` reproducibly (sorted names, zero times and owners): same files, same bytes."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidRequest(f"{root}: not a folder")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        # gzip writes the time into its header; the tarfile API gives no way around it, so it is reset below.
        for path in sorted(_walk(root)):
            rel = path.relative_to(root).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755 if info.mode & stat.S_IXUSR else 0o644
            if info.isfile():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            if buf.tell() > max_bytes:
                raise PayloadTooLarge(f"{root}: the bundle is over the limit of {max_bytes} bytes")
    data = bytearray(buf.getvalue())
    data[4:8] = b"\0\0\0\0"  # gzip MTIME field
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{root}: the bundle is {len(data)} bytes, over the limit of {max_bytes}")
    return bytes(data)


def _walk(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file() or name.endswith(".pyc"):
                continue  # symlinks could point outside the folder; they are not shipped
            out.append(path)
    return out


def check(
    data: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    required: str | None = "handler.py",
    max_files: int | None = DEFAULT_MAX_FILES,
) -> list[str]:
    """Validate a bundle without extracting it; return its member names.

    Refuses members that are not plain files or folders, absolute paths and paths that escape the folder, an
    unpacked size over ``max_bytes``, more than ``max_files`` members (None: no limit, for bundles checked and
    signed before), and (when ``required`` is set) a bundle without that file.
    """
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the bundle is {len(data)} bytes, over the limit of {max_bytes}")
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise InvalidRequest(f"bundle member {member.name!r} escapes the function folder")
                if not (member.isfile() or member.isdir()):
                    raise InvalidRequest(f"bundle member {member.name!r} is not a plain file or folder")
                total += member.size
                if total > max_bytes:
                    raise PayloadTooLarge(f"the bundle unpacks to more than {max_bytes} bytes")
                names.append(path.as_posix())
                if max_files is not None and len(names) > max_files:
                    raise PayloadTooLarge(f"the bundle holds more than {max_files} files and folders")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidRequest(f"the bundle is not a valid tar.gz archive: {exc}") from None
    if required and required not in names:
        raise InvalidRequest(f"the function folder has no {required}")
    return names


def _owner_only(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    member = tarfile.data_filter(member, dest)
    return member.replace(mode=0o700 if member.isdir() or (member.mode or 0) & 0o100 else 0o600, deep=False)


def unpack(
    data: bytes, dest: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES, max_files: int | None = None
) -> Path:
    """Check and extract a bundle into ``dest`` (created); return ``dest``. The member count is not limited unless
    ``max_files`` is given: a replica unpacks only bundles the gateway checked and signed. What is extracted is
    readable by its owner only (folders 0700, files 0600, or 0700 when executable): extracted code is run by whoever
    extracted it."""
    check(data, max_bytes, required=None, max_files=max_files)
    target = Path(dest)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter=_owner_only)
            # A folder that is not a member of its own (pack() adds none) is created by tarfile with the umask's
            # mode, not through the filter.
            for dirpath, dirnames, _ in os.walk(target):
                for name in dirnames:
                    os.chmod(os.path.join(dirpath, name), 0o700)
            return target
        # Python before 3.11.4 (Debian bookworm's 3.11.2, in the base image) has no extraction filters. check() has
        # refused everything but plain files and folders inside the folder, so writing them one by one is safe.
        for member in tar:
            path = target / member.name
            if member.isdir():
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                continue
            source = tar.extractfile(member)
            if source is not None:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                path.write_bytes(source.read())
                path.chmod(0o700 if member.mode & 0o100 else 0o600)
    return target


def digest(data: bytes) -> str:
    """Content address of a bundle (hex SHA-256, first 16 characters)."""
    return hashlib.sha256(data).hexdigest()[:16]


def sign(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of the bundle with the platform key, hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def verify(key: bytes, data: bytes, signature: str) -> bool:
    """True when ``signature`` is this bundle's signature under ``key`` (constant-time comparison). A signature that
    is not even ASCII (it can come from a request header) is simply wrong: compare_digest raises on such a str."""
    try:
        given = signature.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(sign(key, data).encode("ascii"), given)
