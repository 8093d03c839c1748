from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.platform_fixture import PASSWORD, Platform, start_platform


@pytest.fixture(scope="package")
def sdk_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """One ``stoker up`` (local backend, default 20 MiB body limit) for the SDK tests, found the way users find it:
    ``STOKER_GATEWAY`` and ``STOKER_ADMIN_PASSWORD`` in the environment. The queue's retry backoff starts at 0.2 s
    instead of 1 s (the attempts are the same; a spawned call that fails waits 3 s for its last one, not 15 s)."""
    p = start_platform(tmp_path_factory.mktemp("sdk-home"), env={"STOKER_QUEUE_BACKOFF_S": "0.2"})
    saved = {k: os.environ.get(k) for k in ("STOKER_GATEWAY", "STOKER_ADMIN_PASSWORD", "STOKER_HOME")}
    os.environ.update({"STOKER_GATEWAY": p.url, "STOKER_ADMIN_PASSWORD": PASSWORD, "STOKER_HOME": str(p.home)})
    try:
        yield p
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        p.stop()
