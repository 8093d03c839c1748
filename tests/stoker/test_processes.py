"""Whether a process runs, by pid: a process that ended (reaped or a zombie) is gone; another user's process is
there (signal 0 answers PermissionError for it), but it is not ours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stoker.processes import alive, alive_and_ours

NOBODY = 65534


def test_this_process_is_alive_and_ours() -> None:
    assert alive(os.getpid())
    assert alive_and_ours(os.getpid())


def test_an_ended_process_is_not_alive_whether_reaped_or_a_zombie() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # it has exited and is not reaped yet: a zombie
    assert not alive(proc.pid)
    assert not alive_and_ours(proc.pid)
    proc.wait()  # reaped: the pid names no process (until the kernel gives it to another one)
    assert not alive(proc.pid)
    assert not alive_and_ours(proc.pid)


def test_pids_that_name_no_single_process_are_not_alive() -> None:
    for pid in (0, -1, -os.getpid()):
        assert not alive(pid)
        assert not alive_and_ours(pid)


def test_another_users_process_is_alive_but_not_ours() -> None:
    if os.geteuid() != 0:
        if Path("/proc/1").stat().st_uid == os.geteuid():
            pytest.skip("no process of another user to ask about")
        assert alive(1)
        assert not alive_and_ours(1)
        return
    # root may signal every process: a child that becomes nobody asks about this (root's) process instead
    parent = os.getpid()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through its exit code)
        code = 4
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = (0 if alive(parent) else 1) + (0 if not alive_and_ours(parent) else 2)
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "1: not alive; 2: taken for ours; 4: could not become nobody"
