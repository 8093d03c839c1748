"""Nothing a local replica starts outlives it: process groups, recorded on disk, killed when their replica ends.

Each replica (and each generic process of the warm pool) leads a process group of its own, which everything its
handler starts joins unless it leaves on purpose. When the replica ends, the backend kills its group, so a
``subprocess.Popen(["sleep", "3333"])`` in a handler goes with it. A replica dies with the platform even on SIGKILL
(``PR_SET_PDEATHSIG``), but nothing would kill its group then; so every group is also recorded as a file in
``$STOKER_HOME/local/groups`` and killed by whichever comes first:

- the watcher, a small process the backend starts (``python -m runtime.backends.local.groups FOLDER``, in a session
  of its own so a Ctrl-C at the terminal does not reach it) that waits for the platform to end (its stdin, a pipe
  only the platform holds, reaches end of file) and then kills the groups still recorded;
- the next ``stoker up`` on the same home, before it starts anything (the watcher may have been killed too).

A record names the group (its leader's pid), the leader's start time and the boot it ran in. A group is only killed
when it is still ours: same boot, processes of the platform's user, started no earlier than the leader, and, if a
process with the group's number exists, it is the very leader recorded (not a new process that got the number).
This is housekeeping for code you trust, not a sandbox: a handler that calls ``setsid()`` leaves its group (use the
docker backend for code you do not trust; docs/security.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from stoker import logconfig
from stoker.atomicfile import write_atomic

logger = logging.getLogger("runtime.backends.local.groups")  # by name: this module also runs as __main__

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Proc:
    """What the reaper needs to know of one process (from ``/proc``)."""

    pid: int
    pgid: int
    start: int  # clock ticks after boot
    uid: int


@dataclass(frozen=True)
class GroupRecord:
    pgid: int
    start: int  # the leader's start time
    boot: str


def survivors(record: GroupRecord, procs: Iterable[Proc], boot: str, uid: int) -> list[int]:
    """The processes of ``record``'s group that are still ours; empty when the group number is someone else's now."""
    if record.boot != boot:
        return []  # a reboot ended the group
    members = []
    for p in procs:
        if p.pid == record.pgid and p.start != record.start:
            return []  # the number went to a new process: whatever is in that group is not ours
        if p.pgid == record.pgid and p.uid == uid and p.start >= record.start:
            members.append(p.pid)
    return sorted(members)


def read_proc(pid: int) -> Proc | None:
    """One process from ``/proc``, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name before it may hold spaces and parentheses
    return Proc(pid, int(fields[2]), int(fields[19]), uid)


def all_procs() -> list[Proc]:
    procs = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (p := read_proc(int(entry.name))) is not None:
            procs.append(p)
    return procs


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


class GroupRecords:
    """The record folder of one platform: a file per live process group."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._boot = boot_id()

    def add(self, pid: int) -> None:
        """Record the group led by ``pid`` (a child started in a session of its own)."""
        proc = read_proc(pid)
        if proc is None:
            return  # already gone; its group is killed when its exit is seen
        write_atomic(self.folder / str(pid), f"{proc.start} {self._boot}\n".encode(), durable=False)

    def ended(self, pid: int) -> None:
        """The leader ``pid`` has exited: kill what is left of its group, then forget it.

        The leader was just reaped, so its number is free again; but a pid is not handed out while a process group
        of that number still has members, so as long as anything of the group is left, the number is still ours."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            (self.folder / str(pid)).unlink()

    def reap(self) -> list[int]:
        """Kill the recorded groups that are still ours (a platform that ended without stopping its replicas);
        return the processes killed."""
        killed: list[int] = []
        records = [p for p in self.folder.iterdir() if p.name.isdigit()] if self.folder.is_dir() else []
        if not records:
            return killed
        procs, boot, uid = all_procs(), boot_id(), os.getuid()
        for path in records:
            record = _read_record(path)
            if record is not None:
                members = survivors(record, procs, boot, uid)
                if members:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(record.pgid, signal.SIGKILL)
                    killed += members
            with contextlib.suppress(OSError):
                path.unlink()
        return killed


def _read_record(path: Path) -> GroupRecord | None:
    try:
        start, boot = path.read_text().split()
        return GroupRecord(int(path.name), int(start), boot)
    except (OSError, ValueError):
        return None


def watch(folder: Path) -> int:
    """The watcher's main: wait for the platform to end (end of file on stdin), then reap its groups."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the platform, which stops its replicas itself
    with contextlib.suppress(OSError):
        while sys.stdin.buffer.read(4096):
            pass
    killed = GroupRecords(folder).reap()
    if killed:
        logger.warning("the platform ended without stopping its replicas; killed %d leftover process(es)", len(killed))
    return 0


if __name__ == "__main__":
    logconfig.configure()
    sys.exit(watch(Path(sys.argv[1])))
