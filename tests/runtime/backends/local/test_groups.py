"""Nothing a local replica starts outlives it: not when the replica crashes or is scaled away, not when the platform
is SIGKILLed (its watcher cleans up), not even when the watcher dies too (the next start cleans up); and the cleanup
never touches a process that is not ours."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from runtime.backends.local.groups import GroupRecord, GroupRecords, Proc, boot_id, read_proc, survivors
from stoker.processes import alive
from tests.platform.scaling_support import status
from tests.platform_fixture import ROOT, Platform, start_platform, write_handler
from tests.wait_support import still_running, wait_until

SPAWNER = """
import os, subprocess

def handle(event, context):
    child = subprocess.Popen(["sleep", "3333"])
    return {"pid": os.getpid(), "child": child.pid}
"""

# --- the decision, on made-up process tables -------------------------------------------------------------------------
ME = 1000
RECORD = GroupRecord(pgid=500, start=100, boot="b1")


def test_the_members_of_a_recorded_group_are_its_survivors() -> None:
    procs = [Proc(500, 500, 100, ME), Proc(501, 500, 150, ME), Proc(502, 502, 90, ME)]
    assert survivors(RECORD, procs, "b1", ME) == [500, 501]


def test_a_group_whose_leader_died_still_has_its_children_as_survivors() -> None:
    assert survivors(RECORD, [Proc(501, 500, 150, ME), Proc(7, 7, 1, ME)], "b1", ME) == [501]


def test_a_group_number_taken_by_a_new_process_is_not_ours() -> None:
    procs = [Proc(500, 500, 400, ME), Proc(501, 500, 450, ME)]  # 500 is a newer process now, leading its own group
    assert survivors(RECORD, procs, "b1", ME) == []


def test_other_users_processes_older_processes_and_other_boots_are_left_alone() -> None:
    procs = [Proc(501, 500, 150, ME + 1), Proc(502, 500, 50, ME)]
    assert survivors(RECORD, procs, "b1", ME) == []
    assert survivors(RECORD, [Proc(501, 500, 150, ME)], "b2", ME) == []


# --- the records, with real processes --------------------------------------------------------------------------------
def test_reaping_kills_a_recorded_group_and_spares_one_whose_record_does_not_match(tmp_path: Path) -> None:
    ours = subprocess.Popen(["sleep", "3333"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "3333"], start_new_session=True)
    try:
        records = GroupRecords(tmp_path / "groups")
        records.add(ours.pid)
        started = read_proc(stranger.pid)
        assert started is not None
        # A record of the same number but another start time: the number was reused by a process not ours.
        (records.folder / str(stranger.pid)).write_text(f"{started.start - 1} {boot_id()}\n")
        assert records.reap() == [ours.pid]
        assert ours.wait(10) == -signal.SIGKILL
        assert stranger.poll() is None
        assert list(records.folder.iterdir()) == []  # every record is dealt with
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()


# --- on a real platform ----------------------------------------------------------------------------------------------
def _spawn_child(p: Platform, name: str) -> tuple[int, int]:
    r = httpx.get(f"{p.url}/function/{name}", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["pid"], r.json()["child"]


def _watcher(p: Platform | subprocess.Popen[bytes]) -> int:
    pid = p.pid if isinstance(p, subprocess.Popen) else p.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    [pid] = [int(c) for c in children if b"local.groups" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return pid


@pytest.fixture
def spawner(tmp_path: Path) -> Path:
    return write_handler(tmp_path / "spawner", SPAWNER)


def test_what_a_handler_starts_goes_when_its_replica_crashes_or_is_scaled_away(fresh_home: Path, spawner: Path) -> None:
    p = start_platform(fresh_home, env={"STOKER_POOL_SIZE": "0"})
    try:
        assert p.deploy("spawner", spawner).status_code == 202
        replica, child = _spawn_child(p, "spawner")
        os.kill(replica, signal.SIGKILL)
        assert still_running([child], 20) == []
        _, child = _spawn_child(p, "spawner")  # the restarted replica
        with p.client() as c:
            assert c.post("/system/scale-function/spawner", json={"replicas": 0}).status_code == 202
        wait_until(lambda: status(p, "spawner")["availableReplicas"] == 0, 30, "scale to zero")
        assert still_running([child], 20) == []
    finally:
        p.stop()


@pytest.mark.slow
def test_what_a_handler_starts_goes_when_the_platform_is_sigkilled(fresh_home: Path, spawner: Path) -> None:
    p = start_platform(fresh_home, env={"STOKER_POOL_SIZE": "0"})
    try:
        assert p.deploy("spawner", spawner).status_code == 202
        replica, child = _spawn_child(p, "spawner")
    finally:
        p.stop(signal.SIGKILL)
    assert still_running([replica, child], 20) == []


@pytest.mark.slow
def test_what_survives_a_platform_and_its_watcher_killed_together_goes_at_the_next_start(
    fresh_home: Path, spawner: Path
) -> None:
    p = start_platform(fresh_home, env={"STOKER_POOL_SIZE": "0"})
    try:
        assert p.deploy("spawner", spawner).status_code == 202
        replica, child = _spawn_child(p, "spawner")
        os.kill(_watcher(p), signal.SIGKILL)
    finally:
        p.stop(signal.SIGKILL)
    assert still_running([replica], 20) == []
    assert alive(child)  # nothing could clean up: the next start must
    p = start_platform(fresh_home, env={"STOKER_POOL_SIZE": "0"})
    try:
        assert still_running([child], 20) == []
        assert any("left running by the replicas of a previous run" in line for line in p.output)
    finally:
        p.stop()


def test_a_platform_stopped_while_its_warm_pool_fills_leaves_nothing_for_its_watcher(fresh_home: Path) -> None:
    """A clean stop stops every replica itself: the watcher (the safety net of a SIGKILL) finds nothing to kill. The
    warm pool is still starting its generic replicas right after the platform says it is up; one whose start was
    cut short by the stop was left running (the watcher killed it and warned that the platform had not stopped it)."""
    log = fresh_home.parent / "platform.log"
    env = {**os.environ, "STOKER_HOME": str(fresh_home), "STOKER_POOL_SIZE": "2"}
    env.pop("STOKER_GATEWAY", None)
    with open(log, "wb") as out:  # a file, read once every writer (the platform and its watcher) has exited
        proc = subprocess.Popen(
            [sys.executable, "-m", "stoker", "up", "--port", "0"], stdout=out, stderr=out, env=env, cwd=ROOT
        )
    try:
        wait_until(lambda: b"gateway on " in log.read_bytes(), 30, "the platform to start")
        watcher = _watcher(proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: not alive(watcher), 30, "the watcher to end")
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "stoker: stopped" in text
    assert "without stopping its replicas" not in text, text
