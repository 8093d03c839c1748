"""Whether a process is still running, asked of the kernel by pid (signal 0 sends nothing, it only checks).

Two questions, because a pid outlives its process and may be given to another one:

- :func:`alive`: does a process with this pid exist and has it not ended? Another user's process exists too (the
  kernel answers ``PermissionError`` when asked about it, which says it is there). A zombie has ended: it only waits
  for its parent to collect its exit status.
- :func:`alive_and_ours`: the same, but only a process this user may signal counts: a pid recorded by one of our own
  processes that now belongs to another user's is a reused pid, and ours has gone.
"""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """The process ``pid`` exists and has not ended (another user's counts; a zombie does not)."""
    return _signalable(pid) is not None and not _zombie(pid)


def alive_and_ours(pid: int) -> bool:
    """The process ``pid`` exists, has not ended, and this user may signal it."""
    return _signalable(pid) is True and not _zombie(pid)


def _signalable(pid: int) -> bool | None:
    """``None``: no such process; ``False``: it exists but is another user's; ``True``: it exists and is ours."""
    if pid <= 0:  # 0 and negative pids name process groups, not a process
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return False
    return True


def _zombie(pid: int) -> bool:
    try:  # the command name (in parentheses) may hold spaces and ")": the state is the first field after the last ")"
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):  # no /proc (not Linux), or the process ended meanwhile: not a zombie
        return False
