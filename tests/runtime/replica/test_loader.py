"""A replica that cannot load its handler exits 3 with one line saying why (shown to users at deploy time)."""

from __future__ import annotations

import pytest

from tests.runtime.replica.conftest import StartReplica

PREFIX = "stoker: cannot load handler: "


@pytest.mark.parametrize(
    ("source", "files", "env", "reason"),
    [
        (
            "def handle(event, context):\n    return 1\nx = = 2\n",
            {},
            {},
            "SyntaxError: invalid syntax (handler.py, line 3)",
        ),
        (
            "import os\nimport no_such_module_xyz\n",
            {},
            {},
            "ModuleNotFoundError: No module named 'no_such_module_xyz' (handler.py, line 2)",
        ),
        (
            "import helper\n\ndef handle(event, context):\n    return 1\n",
            {"helper.py": "RATE = 1 / 0\n"},
            {},
            "ZeroDivisionError: division by zero (helper.py, line 1)",
        ),
        (None, {}, {}, "handler.py not found in "),
        ("def handler(event, context):\n    return 1\n", {}, {}, "handler.py has no function 'handle'"),
        ("handle = 3\n", {}, {}, "handler.py:handle is not callable (it is a int)"),
        ("def run(e, c):\n    return 1\n", {}, {"STOKER_ENTRYPOINT": "main:run"}, "main.py not found in "),
    ],
    ids=[
        "syntax",
        "import",
        "helper-module",
        "missing-file",
        "missing-function",
        "not-callable",
        "entrypoint",
    ],
)
def test_load_failure_exits_3_with_a_reason(
    start_replica: StartReplica, source: str | None, files: dict[str, str], env: dict[str, str], reason: str
) -> None:
    replica = start_replica(source, env=env, files=files)
    assert replica.wait_exit() == 3
    last = replica.stderr[-1].rstrip("\n")
    assert last.startswith(PREFIX + reason), last


def test_syntax_error_traceback_precedes_the_reason(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(event, context)\n    return 1\n")
    assert replica.wait_exit() == 3
    output = "".join(replica.stderr)
    assert 'handler.py", line 1' in output
    assert replica.stderr[-1].startswith(PREFIX + "SyntaxError: expected ':' (handler.py, line 1)")


def test_custom_entrypoint_and_sibling_modules_load(start_replica: StartReplica) -> None:
    replica = start_replica(
        None,
        env={"STOKER_ENTRYPOINT": "app.main:run"},
        files={
            "app/__init__.py": "",
            "app/main.py": "from app.words import WORD\n\ndef run(e, c):\n    return WORD\n",
        }
        | {"app/words.py": "WORD = 'sibling'\n"},
    )
    with replica.client() as client:
        assert client.get("/").text == "sibling"


def test_async_callable_object_is_awaited(start_replica: StartReplica) -> None:
    replica = start_replica(
        """
        class Handler:
            async def __call__(self, event, context):
                return "awaited"

        handle = Handler()
        """
    )
    with replica.client() as client:
        assert client.get("/").text == "awaited"
