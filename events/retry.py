"""The retry decision, as pure functions: what to do with a message after an attempt, and when to try again."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    ACK = "ack"  # the function answered 2xx (or a 4xx that a retry cannot fix)
    RETRY = "retry"
    DEAD = "dead"  # out of attempts: move to the dead letter stream


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (the first call included); the n-th retry waits ``base * 2**(n-1)``, capped."""

    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 60.0


def retryable(status: int) -> bool:
    """Failures that may pass on a later attempt: 5xx (502/503/504 included), 429 and 408; ``status`` 0 means no
    answer at all (connection error). Other 4xx are the caller's mistake and are not retried."""
    return status == 0 or status >= 500 or status in (408, 429)


def backoff(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one."""
    return float(min(policy.cap_s, policy.base_s * 2 ** max(0, attempt - 1)))


def decide(policy: RetryPolicy, status: int, attempt: int) -> tuple[Verdict, float]:
    """The verdict after attempt ``attempt`` answered ``status``, and the delay before a retry (0 otherwise)."""
    if 200 <= status < 300:
        return Verdict.ACK, 0.0
    if not retryable(status):
        return Verdict.DEAD, 0.0
    if attempt >= policy.attempts:
        return Verdict.DEAD, 0.0
    return Verdict.RETRY, backoff(policy, attempt)
