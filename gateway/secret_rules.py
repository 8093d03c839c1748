"""What the management API refuses about secrets, the same on every backend (decided here, before the backend acts).

- An empty value: a function reading it would get nothing, which is never what was meant (400).
- Deleting a secret that deployed functions use: they would fail (local) or keep the old value until a redeploy
  (Docker), so the delete is refused naming them (409), unless forced (``?force=true``, ``stoker secret rm --force``).
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.backends.base import FunctionRecord
from stoker.errors import Conflict, InvalidRequest


def users(records: Iterable[FunctionRecord], name: str) -> list[str]:
    """The names of the functions whose deployment uses secret ``name``, sorted."""
    return sorted(r.deployment.service for r in records if name in r.deployment.secrets)


def check_delete(name: str, namespace: str, using: list[str], force: bool) -> None:
    if using and not force:
        shown = ", ".join(using[:10]) + (f" and {len(using) - 10} more" if len(using) > 10 else "")
        raise Conflict(
            f"secret {name!r} is used by {shown} in {namespace!r}: redeploy them without it first, or remove it "
            "anyway with force=true (stoker secret remove --force)"
        )


def check_value(name: str, value: bytes) -> None:
    if not value:
        raise InvalidRequest(f"secret {name!r}: the value is empty")


def truthy(raw: object) -> bool:
    """``force`` from a query string or a JSON body."""
    return raw is True or (isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes"))
