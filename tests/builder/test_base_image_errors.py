"""``stoker base-image`` says why it failed in one whole line (issue 14, item 10): the engine's own explanation, not
docker-py's wrapper cut at 200 characters in the middle of a word."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest

from builder.engine import engine_message
from tests.docker_support import docker_client
from tests.platform_fixture import ROOT

MISSING = "registry.invalid/nothing/here:1"  # .invalid never resolves (RFC 2606): the pull fails at once


@pytest.fixture(scope="module")
def client() -> Any:
    return docker_client()


def test_a_failed_pull_says_what_the_engine_said_in_full(client: Any) -> None:
    import docker.errors

    with pytest.raises(docker.errors.APIError) as raised:
        client.images.pull(MISSING)
    explanation = " ".join(str(raised.value.explanation).split())
    name = f"stoker-test-dayone2-{uuid.uuid4().hex[:8]}/base"  # never exists: nothing is built or left behind
    proc = subprocess.run(
        [sys.executable, "-m", "stoker", "base-image", "--from", MISSING, "--name", name],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"stoker: cannot pull {MISSING}: {explanation}"], proc.stderr


def test_a_long_message_is_cut_at_a_word() -> None:
    long = Exception("word " * 200 + "end")
    text = engine_message(long, limit=50)
    assert text.endswith(" ...") and len(text) <= 54
    assert all(w == "word" for w in text.removesuffix(" ...").split())
    assert engine_message(Exception("two\nlines")) == "two lines" and engine_message(Exception()) == "Exception"
