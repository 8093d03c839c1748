"""Let a replica check its own code bundle before it unpickles or imports anything from it.

The backend verifies a bundle against the platform key before extracting it, but code that deserialises (the SDK's
cloudpickled functions) must not trust the extracted folder: the replica itself re-reads the signed ``tar.gz`` and
checks it just before use, and reads what it unpickles from those verified bytes, never from the folder.

Key handling: a replica never gets the platform key. The backend derives a per-function key,
``HMAC(platform_key, "stoker-replica-bundle\\0" + namespace + "/" + name)``, and signs the bundle with it. A function
can read anything its own replica holds, so the key it could leak lets it forge bundles for itself only, which it
can already run. The three variables (:func:`replica_env`) are:

- ``STOKER_BUNDLE``: path of the signed ``tar.gz`` (readable by the replica);
- ``STOKER_BUNDLE_KEY``: the per-function key, hex;
- ``STOKER_BUNDLE_SIGNATURE``: ``HMAC-SHA256(per-function key, bundle bytes)``, hex.

A backend that runs SDK functions (or any code that wants this check) passes them; a replica without them refuses
to load signed code (:class:`CodeSignatureError`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from stoker import bundle
from stoker.errors import InvalidRequest

BUNDLE_VAR = "STOKER_BUNDLE"
KEY_VAR = "STOKER_BUNDLE_KEY"
SIGNATURE_VAR = "STOKER_BUNDLE_SIGNATURE"
# Set by a backend that runs the plain base image: the replica unpacks the (verified) bundle and serves it.
UNPACK_VAR = "STOKER_UNPACK_BUNDLE"
_CONTEXT = b"stoker-replica-bundle\0"


class CodeSignatureError(InvalidRequest):
    """The bundle is missing, unreadable, or its signature does not verify; nothing of it may run."""


def function_key(platform_key: bytes, namespace: str, name: str) -> bytes:
    """The key one function's replicas verify their bundle with (never the platform key itself)."""
    return hmac.new(platform_key, _CONTEXT + f"{namespace}/{name}".encode(), hashlib.sha256).digest()


def replica_env(
    platform_key: bytes,
    namespace: str,
    name: str,
    bundle_path: Path,
    platform_signature: str,
    replica_path: str | None = None,
) -> dict[str, str]:
    """The variables a backend gives a replica so that it can verify ``bundle_path`` itself.

    ``replica_path``: where the replica sees the file when that differs (a container with the bundle mounted
    read-only, for example); by default ``bundle_path``.

    The file is first checked against ``platform_signature`` (the backend's own HMAC under the platform key): a
    bundle changed on disk is never re-signed. It then gets a signature no replica will accept, so the replica
    refuses it with its usual message and the backend's restart loop reports it.
    """
    key = function_key(platform_key, namespace, name)
    try:
        stat = bundle_path.stat()
        signature = _signature(platform_key, key, str(bundle_path), stat.st_size, stat.st_mtime_ns, platform_signature)
    except OSError:
        signature = "unreadable"
    return {BUNDLE_VAR: replica_path or str(bundle_path), KEY_VAR: key.hex(), SIGNATURE_VAR: signature}


def replica_env_for_bytes(
    platform_key: bytes, namespace: str, name: str, data: bytes, replica_path: str
) -> dict[str, str]:
    """:func:`replica_env` for a backend that holds the bundle's bytes (just received and signed, so there is no file
    to re-check) and copies them to ``replica_path`` inside the replica (a volume, a container's own folder)."""
    key = function_key(platform_key, namespace, name)
    return {BUNDLE_VAR: replica_path, KEY_VAR: key.hex(), SIGNATURE_VAR: bundle.sign(key, data)}


@functools.lru_cache(maxsize=64)
def _signature(platform_key: bytes, key: bytes, path: str, size: int, mtime_ns: int, expected: str) -> str:
    # Cached by file identity, so several replicas of one version read the bundle once. A cached value always
    # signs the bytes that verified, so a later change to the file still fails in the replica.
    data = Path(path).read_bytes()
    if not hmac.compare_digest(bundle.sign(platform_key, data), expected):
        return "tampered"
    return bundle.sign(key, data)


def read_verified_bundle(environ: Mapping[str, str] = os.environ) -> bytes:
    """The bundle's bytes, read once and verified; raise :class:`CodeSignatureError` when they do not verify.

    Use only the returned bytes afterwards: reading the file again would reopen the window for a swap.
    """
    path, key_hex, signature = (environ.get(v, "") for v in (BUNDLE_VAR, KEY_VAR, SIGNATURE_VAR))
    if not (path and key_hex and signature):
        raise CodeSignatureError(
            f"no signed bundle was given to this replica ({BUNDLE_VAR}, {KEY_VAR} and {SIGNATURE_VAR} must be "
            "set by the backend); refusing to load unverified code"
        )
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise CodeSignatureError(f"{KEY_VAR} is not hex") from None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CodeSignatureError(f"cannot read the bundle {path}: {exc.strerror or exc}") from None
    if not hmac.compare_digest(bundle.sign(key, data), signature):
        raise CodeSignatureError(f"the bundle {path} does not match its signature; refusing to run it")
    return data
