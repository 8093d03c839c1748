"""Platform secrets under ``$STOKER_HOME``: the admin password (``credentials``) and the bundle-signing key.

Both files are created on first start with mode 0600 (written atomically, :mod:`stoker.atomicfile`) and reused
afterwards; the CLI reads ``credentials`` to log in.

The platform key signs every deployed bundle, so it is never silently replaced: a ``platform.key`` that is empty,
short or not hex, or missing from a home where an earlier start left state, stops the platform with a message
saying what to do. Only a home with no state yet gets a new key.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from stoker.atomicfile import write_atomic
from stoker.statehome import earlier_state

USERNAME = "admin"
KEY_BYTES = 32
KEY_FILE = "platform.key"


def load_or_create_password(home: Path, configured: str = "") -> str:
    """The admin password: ``configured`` if set (and written for the CLI), else the stored one, else a new one."""
    path = home / "credentials"
    if not configured:
        stored = read_password(home)
        if stored:
            return stored
    password = configured or secrets.token_urlsafe(24)
    write_atomic(path, json.dumps({"username": USERNAME, "password": password}).encode())
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
    if len(key) < KEY_BYTES:
        raise ValueError(f"STOKER_PLATFORM_KEY_FILE: {key_file} holds {len(key)} bytes; use at least {KEY_BYTES}")
    return key


def load_or_create_key(home: Path) -> bytes:
    """The platform key that signs code bundles (32 random bytes, hex in ``platform.key``).

    Created only in a home without state; ValueError (one line: what is wrong and what to do) for a key that is
    missing where one is expected, unreadable, empty, short or not hex."""
    path = home / KEY_FILE
    lost = (
        "every function deployed with it would fail its signature check: restore the file from a backup, or, to "
        f"start over, move {home} away and deploy the functions again"
    )
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        earlier = earlier_state(home)
        if earlier:
            raise ValueError(
                f"{path} is missing, but {home} holds state of an earlier start ({', '.join(earlier)}); {lost}"
            ) from None
        key = secrets.token_bytes(KEY_BYTES)
        write_atomic(path, key.hex().encode() + b"\n")
        return key
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"{path} is corrupt (it does not hold a hex key); {lost}") from None
    if len(key) < KEY_BYTES:
        what = "is empty" if not key else f"holds {len(key)} bytes, not {KEY_BYTES}"
        raise ValueError(f"{path} {what}; {lost}")
    return key
