"""Timer triggers, as pure functions: which functions have a schedule and which ticks are due at a given time.

A schedule comes from the OpenFaaS cron-connector annotations (``topic: cron-function`` and ``schedule: "*/5 * * *
*"``) or from ``com.stoker.schedule``. Expressions are parsed by croniter (5 fields, or 6 with seconds last).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

from croniter import croniter

from stoker.errors import InvalidRequest

SCHEDULE = "com.stoker.schedule"
MAX_CATCH_UP = 1  # after a pause (restart), run only the latest missed tick, not every one of them


class ScheduleError(InvalidRequest, ValueError):
    """A cron expression that cannot be used; the message says which and why."""


def schedule_source(labels: Mapping[str, str], annotations: Mapping[str, str]) -> tuple[str, str] | None:
    """(the annotation it came from, the function's cron expression), or None when it has no timer trigger."""
    values = {**labels, **annotations}
    if values.get(SCHEDULE, "").strip():
        return SCHEDULE, values[SCHEDULE].strip()
    if values.get("topic", "").strip() == "cron-function":
        return "schedule", values.get("schedule", "").strip()
    return None


def schedule_of(labels: Mapping[str, str], annotations: Mapping[str, str]) -> str | None:
    """The function's cron expression, or None when it has no timer trigger."""
    source = schedule_source(labels, annotations)
    return source[1] if source and source[1] else None


def problem(expression: str, now: float | None = None) -> str | None:
    """Why ``expression`` cannot be used as a schedule, or None when it can. It must parse, and it must fire: its
    next tick after ``now`` (default: the current time) is computed once, so an expression that parses but names no
    date (``0 0 31 2 *``, February 31st) is refused too."""
    example = "example: '*/5 * * * *', or 6 fields with seconds last"
    try:
        it = croniter(expression, datetime.fromtimestamp(time.time() if now is None else now, UTC))
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors; the others for odd input
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        return f"{expression!r} is not a cron expression ({reason}); {example}"
    try:
        it.get_next(float)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:  # CroniterBadDateError is a ValueError
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        return f"{expression!r} never fires: croniter finds no date it matches ({reason}); {example}"
    return None


def deployment_problem(
    labels: Mapping[str, str], annotations: Mapping[str, str], now: float | None = None
) -> str | None:
    """The deploy-time check: the annotation naming a schedule that cannot be used, and why; None when fine."""
    source = schedule_source(labels, annotations)
    if source is None:
        return None
    annotation, expression = source
    if not expression:
        return f"{annotation}: missing; a function with topic cron-function needs a cron expression"
    reason = problem(expression, now)
    return f"{annotation}: {reason}" if reason else None


def valid(expression: str) -> bool:
    return problem(expression) is None


def validate(expression: str) -> str:
    reason = problem(expression)
    if reason:
        raise ScheduleError(reason)
    return expression


def due_ticks(expression: str, after: float, now: float) -> list[float]:
    """Ticks (epoch seconds) in ``(after, now]``; at most :data:`MAX_CATCH_UP`, the latest ones. Raises croniter's
    ValueError for an expression that does not parse or never fires (deploys refuse those: :func:`problem`)."""
    it = croniter(expression, datetime.fromtimestamp(after, UTC))
    ticks: list[float] = []
    while True:
        tick = float(it.get_next(float))
        if tick > now:
            return ticks[-MAX_CATCH_UP:]
        ticks.append(tick)
        if len(ticks) > 1000:  # a per-second schedule after a long pause: keep the tail only
            ticks = ticks[-MAX_CATCH_UP:]
