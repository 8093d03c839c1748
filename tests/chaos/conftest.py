"""Fault-injection tests: their figures (calls failed per fault, time unavailable) are printed after the run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.chaos_support import REPORTS
from tests.docker_support import docker_client


@pytest.fixture(scope="module")
def docker_engine() -> Any:
    return docker_client()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTS:
        terminalreporter.section("chaos figures")
        for line in REPORTS:
            terminalreporter.write_line(line)
