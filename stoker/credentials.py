"""Platform secrets under ``$STOKER_HOME``: the admin password (``credentials``) and the bundle-signing key.

Both files are created on first start with mode 0600 and reused afterwards; the CLI reads ``credentials`` to log in.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

USERNAME = "admin"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create_password(home: Path, configured: str = "") -> str:
    """The admin password: ``configured`` if set (and written for the CLI), else the stored one, else a new one."""
    path = home / "credentials"
    if not configured:
        stored = read_password(home)
        if stored:
            return stored
    password = configured or secrets.token_urlsafe(24)
    _write_private(path, json.dumps({"username": USERNAME, "password": password}).encode())
    return password


def read_password(home: Path) -> str | None:
    """The stored admin password, or None when there is none (no platform started here yet)."""
    try:
        data = json.loads((home / "credentials").read_text())
    except (OSError, ValueError):
        return None
    password = data.get("password") if isinstance(data, dict) else None
    return password if isinstance(password, str) and password else None


def platform_key(home: Path, key_file: str = "") -> bytes:
    """The platform key: from ``key_file`` when given (several gateways must share one), else ``platform.key``.

    A given file that cannot be read, or does not hold at least 32 bytes as hex, is a ValueError naming it."""
    if not key_file:
        return load_or_create_key(home)
    try:
        key = bytes.fromhex(Path(key_file).read_text().strip())
    except OSError as exc:
        raise ValueError(f"STOKER_PLATFORM_KEY_FILE: cannot read {key_file}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"STOKER_PLATFORM_KEY_FILE: {key_file} does not hold a hex key") from None
    if len(key) < 32:
        raise ValueError(f"STOKER_PLATFORM_KEY_FILE: {key_file} holds {len(key)} bytes; use at least 32")
    return key


def load_or_create_key(home: Path) -> bytes:
    """The platform key that signs code bundles (32 random bytes, hex in ``platform.key``)."""
    path = home / "platform.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        key = secrets.token_bytes(32)
        _write_private(path, key.hex().encode())
        return key
