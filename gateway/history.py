"""A function's deploy history: what each deploy, update, scale and removal through the management API changed,
who asked, and how it ended (``GET /system/function/{name}/history``, the console's function page).

Pure: :func:`changes` compares two deployments and :func:`entry` builds the record; :mod:`gateway.history_store`
keeps the last :data:`KEEP` per function where the platform keeps its state (Redis, else ``STOKER_HOME``).
Environment values are never written, only their names (they often carry tokens); labels, annotations, limits and
the image are shown old -> new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from stoker.spec import FunctionDeployment

KEEP = 50  # entries per function
MAX_CHANGES = 20  # lines of one entry's summary
MAX_TEXT = 160  # characters of one value shown in a summary
MAX_ERROR = 500  # characters of a failure's message


class Action(StrEnum):
    DEPLOY = "deploy"
    UPDATE = "update"
    SCALE = "scale"
    REMOVE = "remove"


def code_of(dep: FunctionDeployment, bundle: bytes | None) -> str:
    """What runs: ``image:<reference>``, or ``source:sha256:<digest>`` of the uploaded bundle."""
    if bundle is not None:
        return "source:sha256:" + hashlib.sha256(bundle).hexdigest()
    return f"image:{dep.image}" if dep.image else ""


def _short(value: object) -> str:
    text = str(value)
    # A control character in a summary would garble a log line or a terminal: shown escaped.
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _map_changes(what: str, old: Mapping[str, str], new: Mapping[str, str], values: bool) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            out.append(f"{what} +{_short(key)}" + (f"={_short(new[key])}" if values else ""))
        elif key not in new:
            out.append(f"{what} -{_short(key)}")
        elif old[key] != new[key]:
            out.append(
                f"{what} {_short(key)}: " + (f"{_short(old[key])} -> {_short(new[key])}" if values else "changed")
            )
    return out


def changes(old: FunctionDeployment | None, new: FunctionDeployment, old_code: str, new_code: str) -> list[str]:
    """What ``new`` changes from ``old`` (None: a first deploy, whose summary is what it sets), one line each."""
    if old is None:
        old = FunctionDeployment(service=new.service, namespace=new.namespace)
        old_code = ""
    out: list[str] = []
    if new_code != old_code:
        out.append(f"code: {_short(old_code) or 'none'} -> {_short(new_code)}" if old_code else f"code: {new_code}")
    elif new_code.startswith("source:"):
        out.append("code: same source")
    out += _map_changes("env", old.envVars, new.envVars, values=False)
    out += _map_changes("label", old.labels, new.labels, values=True)
    out += _map_changes("annotation", old.annotations, new.annotations, values=True)
    out += _map_changes("limit", old.limits, new.limits, values=True)
    out += _map_changes("request", old.requests, new.requests, values=True)
    for what, before, after in (("secret", old.secrets, new.secrets), ("constraint", old.constraints, new.constraints)):
        out += [f"{what} +{_short(s)}" for s in after if s not in before]
        out += [f"{what} -{_short(s)}" for s in before if s not in after]
    if old.envProcess != new.envProcess:
        out.append(f"envProcess: {_short(old.envProcess) or 'none'} -> {_short(new.envProcess) or 'none'}")
    if old.readOnlyRootFilesystem != new.readOnlyRootFilesystem:
        out.append(f"readOnlyRootFilesystem: {old.readOnlyRootFilesystem} -> {new.readOnlyRootFilesystem}")
    if len(out) > MAX_CHANGES:
        out = [*out[: MAX_CHANGES - 1], f"and {len(out) - MAX_CHANGES + 1} more"]
    return out


def entry(
    action: Action,
    at: float,
    user: str,
    via: str,
    status: int,
    error: str = "",
    code: str = "",
    change: list[str] | None = None,
) -> dict[str, Any]:
    """One history record, as stored and as the API answers it."""
    return {
        "time": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "timestamp": round(at, 3),
        "action": str(action),
        "user": user,
        "via": via,
        "result": "ok" if status < 400 else "failed",
        "status": status,
        "error": error[:MAX_ERROR],
        "code": code,
        "changes": change or [],
    }
