"""A failed call's traceback shows the user's own frames (issue 14, item 11), on the local and the Docker backend:
the function's log starts at the handler's frame with its files named relative to the function folder (not the
replica's server and thread frames, not a path under $STOKER_HOME); an SDK function's remote traceback names the
caller's own file, line and source text (not cloudpickle's ``<dynamic-code>``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stoker import App
from tests.docker_support import docker_client
from tests.platform_fixture import PASSWORD, Platform, start_platform, write_handler

HANDLER = """import helpers


def handle(event, context):
    return helpers.parse(event.body)
"""
HELPERS = """import json


def parse(body):
    return json.loads(body or b"{")
"""


@pytest.fixture(scope="module", params=["local", "docker"])
def any_platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    args: tuple[str, ...] = ()
    if request.param == "docker":
        docker_client().close()  # skips without an engine (fails with STOKER_TEST_DOCKER=1, as in CI)
        args = ("--backend", "docker")
    p = start_platform(tmp_path_factory.mktemp(f"tb-{request.param}"), *args, env={"STOKER_POOL_SIZE": "0"})
    yield p
    p.stop(timeout=120)


def _traceback(p: Platform, name: str, call_id: str) -> list[str]:
    """The traceback lines the function logged for one call, without their prefixes."""
    deadline = time.monotonic() + 60
    with p.client() as c:
        while True:
            text = c.get("/system/logs", params={"name": name, "tail": 200}).text
            lines = [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
            mine = [line.split(" ", 1)[1] for line in lines if line.startswith(f"call_id={call_id} ")]
            if any(line.startswith("json.decoder.JSONDecodeError") for line in mine):
                return mine
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)


def test_a_handler_error_shows_the_users_frames_with_their_own_file_names(
    any_platform: Platform, tmp_path: Path
) -> None:
    folder = write_handler(tmp_path / "tb", HANDLER)
    (folder / "helpers.py").write_text(HELPERS)
    assert any_platform.deploy("tb", folder).status_code == 202
    r = httpx.post(f"{any_platform.url}/function/tb", content=b"", headers={"X-Call-Id": "tb-call-1"}, timeout=60)
    assert r.status_code == 500 and "JSONDecodeError" in r.text
    lines = _traceback(any_platform, "tb", "tb-call-1")
    start = lines.index("Traceback (most recent call last):")
    assert lines[start + 1 : start + 3] == [
        '  File "handler.py", line 5, in handle',
        "    return helpers.parse(event.body)",
    ]
    assert '  File "helpers.py", line 5, in parse' in lines
    assert '    return json.loads(body or b"{")' in lines
    text = "\n".join(lines)
    assert "runtime/replica" not in text and "threads.py" not in text  # no runtime frame
    assert str(any_platform.home) not in text  # no path under $STOKER_HOME


def failing_helper(text: str) -> int:
    return int(text)  # the line the remote traceback must show


def test_an_sdk_remote_traceback_names_the_callers_file_line_and_source(
    any_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOKER_GATEWAY", any_platform.url)
    monkeypatch.setenv("STOKER_ADMIN_PASSWORD", PASSWORD)
    app = App("tbsdk")

    @app.function(timeout=60)
    def convert(text: str) -> int:
        return failing_helper(text) + 1

    app.deploy()
    with pytest.raises(ValueError, match="invalid literal") as raised:
        convert.remote("not a number")
    remote = raised.value.remote_traceback  # type: ignore[attr-defined]
    line = failing_helper.__code__.co_firstlineno + 1
    assert f'File "{__file__}", line {line}, in failing_helper' in remote
    assert "return int(text)  # the line the remote traceback must show" in remote
    assert "return failing_helper(text) + 1" in remote
    assert "<dynamic-code>" not in remote and "stoker/sdk/shim.py" not in remote
    first_frame = remote.splitlines()[1]
    assert first_frame.startswith(f'  File "{__file__}"') and first_frame.endswith("in convert")
