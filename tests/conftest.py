from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_fixture import Platform, start_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One platform shared by a test module (starting one costs about a second)."""
    p = start_platform(tmp_path_factory.mktemp("stoker-home"), env={"STOKER_MAX_BODY_BYTES": str(1024 * 1024)})
    yield p
    p.stop()


@pytest.fixture
def fresh_home(tmp_path: Path) -> Path:
    return tmp_path / "home"
