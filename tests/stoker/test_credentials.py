"""Platform credentials: the generated key and password, and a shared key file for several gateways."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stoker.credentials import platform_key
from tests.platform_fixture import ROOT


def test_generated_key_is_private_and_stable(tmp_path: Path) -> None:
    first = platform_key(tmp_path)
    assert len(first) == 32 and platform_key(tmp_path) == first
    assert (tmp_path / "platform.key").stat().st_mode & 0o777 == 0o600


def test_a_shared_key_file_is_used_as_given(tmp_path: Path) -> None:
    shared = tmp_path / "key"
    shared.write_text("ab" * 32 + "\n")
    assert platform_key(tmp_path / "home", str(shared)) == bytes.fromhex("ab" * 32)
    assert not (tmp_path / "home" / "platform.key").exists()  # nothing generated beside it


@pytest.mark.parametrize(("content", "needle"), [(None, "cannot read"), ("zz", "hex"), ("abcd", "at least 32")])
def test_a_bad_key_file_is_a_clear_error(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=needle) as info:
        platform_key(tmp_path, str(path))
    assert "STOKER_PLATFORM_KEY_FILE" in str(info.value)


def test_stoker_up_refuses_a_bad_key_file_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "STOKER_HOME": str(tmp_path), "STOKER_PLATFORM_KEY_FILE": str(tmp_path / "missing")}
    r = subprocess.run(
        [sys.executable, "-m", "stoker", "up", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "STOKER_PLATFORM_KEY_FILE" in r.stderr
