"""What a local replica can reach and what can reach it: only the platform connects to it (a Unix socket in a private
folder, no TCP port), it holds none of the platform's files, runs in its code folder, and `limits.memory` holds.
Checked from outside the replica (its /proc entries, another user's connection attempt), on a real `stoker up`.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.platform.scaling_support import status
from tests.platform_fixture import ROOT, Platform, start_platform, write_handler
from tests.wait_support import wait_until

pytestmark = pytest.mark.slow

HANDLER = """
import os, threading, time

def handle(event, context):
    q = event.query
    if "mb" in q:
        block = bytearray(int(q["mb"]) << 20)
        return {"allocated": len(block)}
    deadline = time.monotonic() + 30
    while threading.active_count() < int(q.get("threads", "0")) and time.monotonic() < deadline:
        time.sleep(0.01)  # held until that many handler threads run at once
    return {"pid": os.getpid(), "cwd": os.getcwd(), "threads": threading.active_count()}
"""
NOBODY = 65534


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_POOL_SIZE": "1"})
    yield p
    p.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_handler(tmp_path_factory.mktemp("fns") / "probe", HANDLER)


def _call(p: Platform, name: str, **params: str) -> httpx.Response:
    return httpx.get(f"{p.url}/function/{name}", params=params, timeout=60)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp_inodes() -> set[int]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            inodes.add(int(line.split()[9]))
    return inodes


def _unix_paths(inodes: set[int]) -> list[str]:
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[6]) in inodes:
            paths.append(fields[7])
    return paths


def _connect_as(uid: int, path: str) -> str:
    """Try to connect to the Unix socket ``path`` as user ``uid`` (in a forked child); the outcome's name."""
    outcomes = {0: "connected", 1: "PermissionError", 2: "other error"}
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only
        code = 2
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            code = 0
        except PermissionError:
            code = 1
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(child, 0)
    return outcomes[os.waitstatus_to_exitcode(wait_status)]


def _assert_contained(p: Platform, pid: int, cwd: str) -> None:
    sockets = _socket_inodes(pid)
    assert not sockets & _tcp_inodes(), "the replica holds a TCP socket: it can be reached without the gateway"
    [path] = {a for a in _unix_paths(sockets) if a.startswith("/")}  # listening and accepted sockets show the path
    folder = Path(path).parent
    assert folder.is_relative_to(p.home)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    if os.geteuid() == 0:  # another user cannot even reach the socket
        assert _connect_as(NOBODY, path) == "PermissionError"
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    assert not [link for link in links if link.startswith(str(p.home))], "it holds files of the platform's state"
    assert cwd != str(ROOT) and (Path(cwd) / "handler.py").is_file(), cwd


def test_a_replica_is_reachable_by_the_platform_only_and_holds_nothing_of_it(local: Platform, folder: Path) -> None:
    assert local.deploy("probe", folder).status_code == 202
    r = _call(local, "probe")
    assert r.status_code == 200, r.text
    _assert_contained(local, r.json()["pid"], r.json()["cwd"])


def test_a_replica_from_the_warm_pool_is_contained_the_same_way(local: Platform, folder: Path) -> None:
    labels = {"com.openfaas.scale.zero": "true", "com.openfaas.scale.zero-duration": "1s"}
    limits = {"memory": "128Mi"}
    assert local.deploy("warm", folder, labels=labels, limits=limits).status_code == 202
    wait_until(lambda: status(local, "warm")["availableReplicas"] == 0, 60, "scale to zero")
    wait_until(lambda: b"STOKER_POOL=1" in _pool_environs(local), 60, "a generic replica in the pool")
    r = _call(local, "warm")
    assert r.status_code == 200, r.text
    pid = r.json()["pid"]
    assert b"STOKER_POOL=1" in Path(f"/proc/{pid}/environ").read_bytes(), "not a replica of the warm pool"
    _assert_contained(local, pid, r.json()["cwd"])
    assert _data_limit(pid) == 128 << 20
    assert _call(local, "warm", mb="256").status_code == 500


def _pool_environs(p: Platform) -> bytes:
    children = Path(f"/proc/{p.proc.pid}/task/{p.proc.pid}/children").read_text().split()
    return b"".join(Path(f"/proc/{pid}/environ").read_bytes() for pid in children)


def _data_limit(pid: int) -> int:
    line = next(x for x in Path(f"/proc/{pid}/limits").read_text().splitlines() if x.startswith("Max data size"))
    return int(line.split()[3])


def test_limits_memory_holds_a_handler_that_allocates_too_much(local: Platform, folder: Path) -> None:
    labels = {"com.openfaas.scale.max": "1"}  # one replica takes every call below
    assert local.deploy("mem", folder, labels=labels, limits={"memory": "128Mi"}).status_code == 202
    first = _call(local, "mem")
    assert _data_limit(first.json()["pid"]) == 128 << 20
    r = _call(local, "mem", mb="256")
    assert r.status_code == 500 and "MemoryError" in r.text
    assert _call(local, "mem", mb="16").status_code == 200  # within the limit
    again = _call(local, "mem")
    assert again.status_code == 200 and again.json()["pid"] == first.json()["pid"]  # the replica kept serving
    # Its handler threads fit under the limit too: 64 calls at once, each on a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda _: _call(local, "mem", threads="64"), range(64)))
    assert [a.status_code for a in answers] == [200] * 64
    assert min(a.json()["threads"] for a in answers) >= 64


def test_a_memory_limit_the_local_backend_cannot_honour_is_refused(local: Platform, folder: Path) -> None:
    # (One below the 96Mi a replica needs is raised to it: tests/compat/test_openfaas_shapes.py.)
    bad = local.deploy("tiny", folder, limits={"memory": "lots"})
    assert bad.status_code == 400 and "not a memory size" in bad.json()["error"]
    huge = local.deploy("tiny", folder, limits={"memory": "99999999Ti"})
    assert huge.status_code == 400 and "larger than any machine" in huge.json()["error"]
    with local.client() as c:
        assert c.get("/system/function/tiny").status_code == 404
