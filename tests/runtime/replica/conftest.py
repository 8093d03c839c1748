from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.runtime.replica.replica_process import ReplicaProcess, write_function

StartReplica = Callable[..., ReplicaProcess]


@pytest.fixture
def start_replica(tmp_path: Path) -> Iterator[StartReplica]:
    """``start_replica(handler_source, env={...}, files={...})``: a running replica; killed after the test."""
    started: list[ReplicaProcess] = []

    def start(
        source: str | None, env: dict[str, str] | None = None, files: dict[str, str] | None = None
    ) -> ReplicaProcess:
        folder = write_function(tmp_path / f"fn{len(started)}", source, files)
        replica = ReplicaProcess(folder, env or {})
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()
