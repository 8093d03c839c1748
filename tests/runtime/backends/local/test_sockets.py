"""The folder of local replica sockets: private, cleared of leftovers, and usable however deep STOKER_HOME is
(a socket path must fit in 107 bytes)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import httpx

from runtime.backends.local.sockets import MAX_PATH, SocketFolder
from tests.platform_fixture import FUNCTIONS, start_platform


def _roundtrip(address: str, listener: socket.socket) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address)
        conn, _ = listener.accept()
        with conn:
            client.sendall(b"ping")
            return conn.recv(4)


def test_sockets_are_private_and_leftovers_of_a_previous_run_are_cleared(tmp_path: Path) -> None:
    folder_path = tmp_path / "sockets"
    folder_path.mkdir()
    (folder_path / "r1-1.sock").write_text("left by a killed platform")
    folder = SocketFolder(folder_path)
    try:
        assert list(folder_path.iterdir()) == []
        assert stat.S_IMODE(folder_path.stat().st_mode) == 0o700
        listener, address = folder.bind()
        with listener:
            assert Path(address).parent == folder_path
            assert stat.S_IMODE(Path(address).stat().st_mode) == 0o600
            assert _roundtrip(address, listener) == b"ping"
    finally:
        folder.close()


def test_a_folder_too_deep_for_a_socket_path_is_reached_through_its_descriptor(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "sockets"
    assert len(str(deep)) > MAX_PATH
    folder = SocketFolder(deep)
    try:
        listener, address = folder.bind()
        with listener:
            assert address.startswith("/proc/self/fd/") and len(address) <= MAX_PATH
            assert _roundtrip(address, listener) == b"ping"
            assert [p.name for p in deep.iterdir()] == [address.rsplit("/", 1)[1]]  # the socket is in the folder
    finally:
        folder.close()


def test_a_platform_with_a_deep_home_serves_its_functions(tmp_path: Path) -> None:
    home = tmp_path / ("h" * 80) / "home"
    p = start_platform(home, env={"STOKER_POOL_SIZE": "1"})
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        r = httpx.post(f"{p.url}/function/hello", content=b"deep", timeout=30)
        assert r.status_code == 200, r.text
    finally:
        p.stop()
