"""How a supervised replica slot (local process, Docker container) reads an exit and when it restarts.

Pure decisions shared by :mod:`runtime.backends.local.replica` and :mod:`runtime.backends.docker.replica`: the
backoff schedule, what an exit code says (:mod:`runtime.contract`), and the text a deploy waiting for its first
replica reports.
"""

from __future__ import annotations

from runtime.contract import EXIT_CANNOT_LOAD, EXIT_HUNG, LOAD_ERROR_PREFIX, load_error_reason

BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 10.0  # a replica that stayed up this long resets the backoff


def next_backoff(failures: int, cap: float = BACKOFF_MAX_S) -> float:
    """Delay before restart number ``failures`` (1-based): 0.2 s, 0.4 s, ... capped at ``cap`` (30 s)."""
    return float(min(BACKOFF_FIRST_S * 2.0 ** (failures - 1), cap))


def failures_after(failures: int, code: int, was_ready: bool, ran_s: float) -> int:
    """The failure count after an exit: a replica that was healthy for a while (or hung) starts the count anew."""
    return 1 if (was_ready and ran_s >= HEALTHY_AFTER_S) or code == EXIT_HUNG else failures + 1


def restart_delay(code: int, failures: int) -> float:
    """A hung replica is replaced at once; anything else backs off."""
    return 0.0 if code == EXIT_HUNG else next_backoff(failures)


def exit_reason(code: int, tail: list[str]) -> str:
    """Why the replica stopped: the load-error line it wrote when it could not import the handler, else its code."""
    load_error = next((t for t in reversed(tail) if t.startswith(LOAD_ERROR_PREFIX)), "")
    return load_error if code == EXIT_CANNOT_LOAD and load_error else f"exited with code {code}"


def failure_text(code: int, reason: str, tail: list[str]) -> str:
    """What a deploy waiting for its first replica reports when that replica exits before it is ready."""
    if code == EXIT_CANNOT_LOAD and reason.startswith(LOAD_ERROR_PREFIX):
        return load_error_reason(reason)
    lines = [t for t in tail if t.strip()][-8:]
    return f"the replica {reason} before it was ready" + (": " + " | ".join(lines) if lines else "")
