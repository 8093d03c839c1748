"""Timer triggers, as pure functions: which functions have a schedule and which ticks are due at a given time.

A schedule comes from the OpenFaaS cron-connector annotations (``topic: cron-function`` and ``schedule: "*/5 * * *
*"``) or from ``com.stoker.schedule``. Expressions are parsed by croniter (5 fields, or 6 with seconds last).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from croniter import croniter

SCHEDULE = "com.stoker.schedule"
MAX_CATCH_UP = 1  # after a pause (restart), run only the latest missed tick, not every one of them


class ScheduleError(ValueError):
    """A cron expression that cannot be used; the message says which and why."""


def schedule_of(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    """The function's cron expression, or None when it has no timer trigger."""
    values = {**labels, **annotations}
    if values.get(SCHEDULE):
        return values[SCHEDULE].strip()
    if values.get("topic", "").strip() == "cron-function" and values.get("schedule"):
        return values["schedule"].strip()
    return None


def valid(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


def validate(expression: str) -> str:
    if not croniter.is_valid(expression):
        raise ScheduleError(f"{expression!r} is not a cron expression (example: '*/5 * * * *')")
    return expression


def due_ticks(expression: str, after: float, now: float) -> list[float]:
    """Ticks (epoch seconds) in ``(after, now]``; at most :data:`MAX_CATCH_UP`, the latest ones."""
    it = croniter(validate(expression), datetime.fromtimestamp(after, UTC))
    ticks: list[float] = []
    while True:
        tick = float(it.get_next(float))
        if tick > now:
            return ticks[-MAX_CATCH_UP:]
        ticks.append(tick)
        if len(ticks) > 1000:  # a per-second schedule after a long pause: keep the tail only
            ticks = ticks[-MAX_CATCH_UP:]
