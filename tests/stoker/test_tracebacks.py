"""stoker/tracebacks.py on real exceptions: stacks start at the user's frames, chains are trimmed each, and a stack
with no user frame (the runtime's own error) is kept whole. Through real replicas: tests/platform/test_tracebacks.py."""

from __future__ import annotations

import os

from stoker.tracebacks import in_folder, user_traceback

HERE = os.path.dirname(__file__)


def _runtime_calls(fn):  # type: ignore[no-untyped-def]
    return fn()  # stands for the runtime's frames: this file is "the runtime" below


def _library(text: str) -> int:
    return int(text)  # stands for an installed package the user's code calls


def _user_code() -> dict[str, object]:
    """Functions compiled as if from files in the function folder /srv/fn."""
    source = (
        "def boom():\n    try:\n        {}['missing']\n"
        "    except KeyError as exc:\n        raise ValueError('x') from exc\n"
        "def calls_library():\n    return library('z')\n"
    )
    namespace: dict[str, object] = {"library": _library}
    exec(compile(source, "/srv/fn/handler.py", "exec"), namespace)
    return namespace


def test_frames_before_the_users_are_dropped_in_each_exception_of_a_chain() -> None:
    try:
        _runtime_calls(_user_code()["boom"])
    except ValueError as exc:
        text = user_traceback(exc, in_folder("/srv/fn"))
    assert __file__ not in text  # the runtime's frame is gone from both tracebacks
    assert text.count('File "handler.py", line 3, in boom') == 1 and 'File "handler.py", line 5, in boom' in text
    assert "The above exception was the direct cause" in text and text.endswith("ValueError: x\n")


def test_libraries_the_user_calls_are_shortened_and_a_stack_without_user_frames_is_kept_whole() -> None:
    try:
        _runtime_calls(_user_code()["calls_library"])
    except ValueError as exc:
        shortened = user_traceback(exc, in_folder("/srv/fn"), [HERE])
    assert 'File "handler.py", line 7, in calls_library' in shortened.splitlines()[1]
    assert f'File "site-packages/{os.path.basename(__file__)}"' in shortened and "in _library" in shortened
    try:
        _runtime_calls(lambda: int("z"))
    except ValueError as exc:
        whole = user_traceback(exc, in_folder("/srv/fn"), [HERE])
    assert f'File "{__file__}"' in whole and "in _runtime_calls" in whole
