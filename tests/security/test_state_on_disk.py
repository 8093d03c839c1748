"""STOKER_HOME against other local users and against a damaged platform key, on a real ``stoker up``.

- After real use (deploys, a secret, an async call, logs, an SDK-style bundle), nothing under the home is open to
  group or others: folders 0700, files 0600 (or stricter).
- An existing home written readable (an older stoker, a restore) is tightened at start, and the log says so.
- ``platform.key`` is never silently replaced: empty, short, corrupt, or missing where an earlier start left state,
  and the platform refuses to start with one line saying what to do, leaving the file as it was.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.platform_fixture import FUNCTIONS, ROOT, start_platform, write_handler

pytestmark = pytest.mark.slow

READS_SECRET = """
def handle(event, context):
    print("read a secret of", len(context.secret("db-password")), "bytes")
    return "ok"
"""


def _open_modes(home: Path) -> list[str]:
    """Every path under ``home`` (itself included) that group or others can use, with its mode."""
    found = []
    for path in [home, *home.rglob("*")]:
        try:
            st = path.lstat()
        except FileNotFoundError:  # a temporary file the running platform renamed meanwhile (atomic writes)
            continue
        if stat.S_ISLNK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & 0o077 or (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != 0o700):
            found.append(f"{path.relative_to(home)} {stat.S_IMODE(st.st_mode):o}")
    return found


def test_everything_under_the_home_is_private_after_real_use(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = start_platform(home)
    try:
        assert p.deploy("hello", FUNCTIONS / "hello").status_code == 202
        with p.client() as c:
            assert c.post("/system/secrets", json={"name": "db-password", "value": "hunter2"}).status_code == 201
        write_handler(tmp_path / "reader", READS_SECRET)
        assert p.deploy("reader", tmp_path / "reader", secrets=["db-password"]).status_code == 202
        assert httpx.get(f"{p.url}/function/reader", timeout=30).text == "ok"
        # An async call with an Authorization header: queue.db holds both until the call is done (and the result).
        r = httpx.post(
            f"{p.url}/async-function/hello", content=b"queued", headers={"Authorization": "Bearer caller-secret"}
        )
        assert r.status_code == 202
        assert p.async_result(r.headers["x-call-id"], 30).status_code == 200
        with p.client() as c:
            logs = c.get("/system/logs", params={"name": "reader", "tail": "50"}).text
        assert "read a secret of 7 bytes" in logs
        with p.client() as c:  # a scale writes the function's state again
            assert c.post("/system/scale-function/hello", json={"replicas": 2}).status_code == 202
        kinds = {q.name for q in home.rglob("*")}
        assert {"queue.db", "credentials", "platform.key", "reader.log", "db-password"} <= kinds, kinds
        assert any(q.suffixes == [".tar", ".gz"] for q in (home / "local" / "bundles").iterdir())
        assert _open_modes(home) == []
    finally:
        p.stop()
    assert _open_modes(home) == []  # what shutdown writes too


def test_an_existing_home_is_tightened_at_start_and_the_log_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "local" / "logs").mkdir(parents=True)
    for path in (home, home / "local", home / "local" / "logs"):
        path.chmod(0o755)
    (home / "credentials").write_text('{"username": "admin", "password": "old"}')
    (home / "credentials").chmod(0o644)
    (home / "platform.key").write_text("ab" * 32)
    (home / "platform.key").chmod(0o666)
    p = start_platform(home)
    try:
        assert _open_modes(home) == []
        assert stat.S_IMODE((home / "platform.key").stat().st_mode) == 0o600
    finally:
        p.stop()
    text = "".join(p.output)
    assert "made 5 path(s) private" in text and "platform.key" in text, text


def _up(home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STOKER_HOME": str(home), "STOKER_ADMIN_PASSWORD": "pw"}
    env.pop("STOKER_PLATFORM_KEY_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "stoker", "up", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("content", "needle"),
    [("", "is empty"), ("\n", "is empty"), ("abcd", "holds 2 bytes"), ("zz" * 32, "corrupt"), ("\x00" * 64, "corrupt")],
)
def test_a_damaged_platform_key_stops_the_platform_and_is_kept(tmp_path: Path, content: str, needle: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "platform.key").write_text(content)
    r = _up(home)
    assert r.returncode == 1
    message = r.stderr.strip().splitlines()[-1]  # the line before it (if any) says the home was tightened
    assert needle in message and "restore the file from a backup" in message, r.stderr
    assert (home / "platform.key").read_text() == content  # never replaced by a new key
    assert not (home / "credentials").exists()  # and nothing else written


def test_a_missing_key_is_created_only_in_a_home_without_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = start_platform(home)
    p.stop()
    key = (home / "platform.key").read_text().strip()
    assert len(bytes.fromhex(key)) == 32 and stat.S_IMODE((home / "platform.key").stat().st_mode) == 0o600
    (home / "platform.key").unlink()
    r = _up(home)
    assert r.returncode == 1
    assert "platform.key is missing" in r.stderr and "credentials" in r.stderr, r.stderr
    assert not (home / "platform.key").exists()
