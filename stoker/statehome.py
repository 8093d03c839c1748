"""``STOKER_HOME`` is private to the platform's user: folders 0700, files 0600, from the first start on.

What it holds is worth stealing: the admin password, the platform key, queued request bodies with their callers'
``Authorization`` headers and the results (``queue.db``), logs, code bundles (an SDK bundle carries the token that
lets a caller send pickles) and secrets. :func:`prepare` runs before a platform process writes anything there:

- the process's umask becomes 077, so everything it creates (SQLite's journal files, logs, extracted code,
  whatever a library writes) is private without each writer having to remember; the processes it starts (local
  replicas, pip during builds) inherit it;
- the home is created 0700, and an existing one is tightened: every folder to 0700 and every file loses its group
  and other bits (a 0400 secret stays 0400). What was tightened is logged as a warning, since it means something
  else (an older stoker, a copy, a restore) wrote it readable.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from stoker.atomicfile import PRIVATE_DIR, private_dir

logger = logging.getLogger(__name__)

UMASK = 0o077
# What an earlier start leaves in a home: a missing platform key is then lost, not new (see stoker.credentials).
EARLIER_STATE = ("credentials", "local", "docker", "secrets", "queue.db")


def prepare(home: Path) -> list[Path]:
    """Set the umask, create or tighten ``home``; return the paths whose modes were tightened."""
    os.umask(UMASK)
    private_dir(home)
    tightened = tighten(home)
    if tightened:
        shown = ", ".join(str(p.relative_to(home)) or "." for p in tightened[:5])
        more = f" and {len(tightened) - 5} more" if len(tightened) > 5 else ""
        logger.warning(
            "stoker: %s: made %d path(s) private to the platform's user (they were readable or writable by "
            "others): %s%s",
            home,
            len(tightened),
            shown,
            more,
        )
    return tightened


def tighten(home: Path) -> list[Path]:
    """Remove group and other permissions from everything under ``home`` (itself included; symbolic links are not
    followed); return what changed."""
    changed: list[Path] = []

    def fix(path: Path, is_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            return
        mode = stat.S_IMODE(st.st_mode)
        wanted = PRIVATE_DIR if is_dir else mode & 0o700
        if mode != wanted and mode & 0o077:
            try:
                os.chmod(path, wanted)
            except FileNotFoundError:  # removed meanwhile
                return
            changed.append(path)

    fix(home, True)
    for folder, dirs, files in os.walk(home):
        base = Path(folder)
        for name in dirs:
            fix(base / name, True)
        for name in files:
            fix(base / name, False)
    return changed


def earlier_state(home: Path) -> list[str]:
    """What an earlier start of a platform left in ``home`` (empty for a new home)."""
    return [name for name in EARLIER_STATE if (home / name).exists()]
