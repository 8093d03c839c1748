"""A refused update leaves the previous version serving, and its error does not stay in that version's status
(``describe`` showed ``Ready`` with the refused version's load error until the platform restarted). Swarm never sets
a status message; Kubernetes reads it from the Deployment's own conditions each time
(runtime/backends/kubernetes/status.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stoker import bundle
from tests.platform_fixture import Platform, start_platform, write_handler

pytestmark = pytest.mark.slow

GOOD = "def handle(event, context):\n    return 'old version'\n"
BROKEN = "raise RuntimeError('this version cannot load')\ndef handle(event, context):\n    return 'new'\n"


@pytest.fixture(scope="module", params=["local", "docker"])
def platform_of(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    if request.param == "docker":
        request.getfixturevalue("docker_engine")  # skips without an engine (fails with STOKER_TEST_DOCKER=1)
        p = start_platform(tmp_path_factory.mktemp("home"), "--backend", "docker")
    else:
        p = start_platform(tmp_path_factory.mktemp("home"), env={"STOKER_POOL_SIZE": "0"})
    yield p
    p.stop(timeout=120)


def test_a_refused_update_leaves_no_error_in_the_status_of_the_version_still_serving(
    platform_of: Platform, tmp_path: Path
) -> None:
    p = platform_of
    assert p.deploy("updated", write_handler(tmp_path / "good", GOOD)).status_code == 202
    body = {"service": "updated", "source": base64.b64encode(bundle.pack(write_handler(tmp_path / "bad", BROKEN)))}
    with p.client() as c:
        refused = c.put("/system/functions", json={**body, "source": body["source"].decode()}, timeout=120)
        assert refused.status_code == 422 and "this version cannot load" in refused.json()["error"]
        described: dict[str, Any] = c.get("/system/function/updated").json()
    assert described["availableReplicas"] == 1
    assert described["message"] == "", described["message"]
    assert httpx.get(f"{p.url}/function/updated", timeout=30).text == "old version"
