from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.platform_fixture import FUNCTIONS, Platform, start_platform

EXAMPLES = {"hello", "echo", "wordcount"}


@pytest.fixture(scope="module")
def console_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """A platform with the example functions, charts sampled every half second, and one attempt per queued call
    (a failing async call becomes a dead letter at once)."""
    env = {"STOKER_CONSOLE_SAMPLE_S": "0.5", "STOKER_QUEUE_ATTEMPTS": "1"}
    p = start_platform(tmp_path_factory.mktemp("console-home"), "--stack", str(FUNCTIONS / "stack.yml"), env=env)
    # The stack is deployed once the gateway serves: wait for every example, whichever test runs first.
    deadline = time.monotonic() + 60
    with p.client() as c:
        while {f["name"] for f in c.get("/system/functions").json() if f.get("availableReplicas")} < EXAMPLES:
            assert time.monotonic() < deadline, "the example functions were not deployed"
            time.sleep(0.2)
    yield p
    p.stop()
