"""Where a running ``stoker up`` listens, recorded in ``$STOKER_HOME/gateway.json`` for the CLI and SDK.

``stoker up --port 8094`` writes ``{"url": "http://127.0.0.1:8094", "pid": ...}`` (atomically, 0600) once its port
is bound and removes it when it stops; a record whose process is gone (the platform was killed) is ignored. The
CLI and SDK look here after ``--gateway``, ``STOKER_GATEWAY`` and ``OPENFAAS_URL``
(see :func:`stoker.config.gateway_url`).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from stoker.atomicfile import write_atomic
from stoker.processes import alive_and_ours

RECORD = "gateway.json"
BACKEND_RECORD = "backend"  # the backend the last `stoker up` of this home used; kept at stop (for `stoker down`)


def client_url(host: str, port: int) -> str:
    """The URL a client on this machine uses for a gateway bound to ``host:port`` (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write(home: Path, url: str, pid: int) -> None:
    write_atomic(home / RECORD, json.dumps({"url": url, "pid": pid}).encode() + b"\n")


def write_backend(home: Path, backend: str) -> None:
    """Remember the backend this home's platform runs on, for ``stoker down`` and ``stoker purge``."""
    write_atomic(home / BACKEND_RECORD, backend.encode() + b"\n")


def last_backend(home: Path) -> str:
    """The backend the last ``stoker up`` of ``home`` used, else ``""``."""
    try:
        return (home / BACKEND_RECORD).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def running_pid(home: Path) -> int:
    """The pid of the platform of ``home`` if it is running (as recorded), else 0."""
    pid = _read(home).get("pid")
    return pid if isinstance(pid, int) and alive_and_ours(pid) else 0


def remove(home: Path, pid: int) -> None:
    """Remove the record if it is this process's (a second platform may have replaced it)."""
    if _read(home).get("pid") == pid:
        with contextlib.suppress(FileNotFoundError):
            (home / RECORD).unlink()


def read(home: Path) -> str:
    """The recorded URL of a platform still running, else ``""``."""
    data = _read(home)
    url, pid = data.get("url"), data.get("pid")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not isinstance(pid, int):
        return ""
    return url if alive_and_ours(pid) else ""


def _read(home: Path) -> dict[str, object]:
    try:
        data = json.loads((home / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
