"""The one writer of state files (stoker/atomicfile.py): private, atomic, and clean when it fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stoker.atomicfile import is_temporary, private_dir, write_atomic
from stoker.errors import StateNotSaved, StorageFull


def test_a_new_file_and_its_folders_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "a" / "b" / "state.json"
        write_atomic(path, b"one")
        write_atomic(path, b"two")
        write_atomic(tmp_path / "a" / "secret", b"s", mode=0o400)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a" / "secret").stat().st_mode) == 0o400
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(os.listdir(path.parent)) == ["state.json"]


def test_a_failed_write_leaves_the_old_state_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.mkdir()  # a folder where the file should go: the rename fails after the data was written
    (target / "keep").write_text("x")
    with pytest.raises(StateNotSaved, match=str(target)) as info:
        write_atomic(target, b"data")
    assert not isinstance(info.value, StorageFull) and info.value.status == 500
    assert sorted(os.listdir(tmp_path)) == ["state"] and (target / "keep").read_text() == "x"


def test_temporary_names_are_recognised_and_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    assert is_temporary(Path(".hello.json.tmp-0a1b2c3d")) and not is_temporary(Path("hello.json"))
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError):
        private_dir(tmp_path / "file")
