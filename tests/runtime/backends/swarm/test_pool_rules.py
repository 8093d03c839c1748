"""Which functions take Swarm pool replicas, and when a bridge goes (pure rules of runtime.backends.swarm.pool)."""

from __future__ import annotations

import pytest

from runtime.backends.swarm.config import SwarmSettings
from runtime.backends.swarm.pool import GONE_GRACE_S, poolable, retire_reason
from stoker.spec import FunctionDeployment


def _reason(**changes: object) -> str:
    facts: dict[str, object] = {
        "exists": True, "replicas": 1, "current": True, "own_ready": 0, "running": True, "age_s": 1.0,
    }  # fmt: skip
    facts.update(changes)
    return retire_reason(**facts)  # type: ignore[arg-type]


def test_a_bridge_serves_until_the_functions_own_replicas_are_ready() -> None:
    assert _reason() == ""  # claimed a second ago, nothing of the function's own is ready yet
    assert _reason(replicas=3, own_ready=2) == ""  # still short of what was asked
    assert "ready" in _reason(replicas=3, own_ready=3)
    assert "ready" in _reason(own_ready=1)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exists": False}, "removed"),
        ({"replicas": 0}, "zero"),
        ({"current": False}, "updated"),
        ({"running": False, "age_s": GONE_GRACE_S + 1}, "not running"),
    ],
)
def test_a_bridge_goes_when_its_function_no_longer_needs_it(changes: dict[str, object], why: str) -> None:
    assert why in _reason(**changes)


def test_a_bridge_whose_task_is_not_yet_reported_running_gets_a_grace_period() -> None:
    assert _reason(running=False, age_s=GONE_GRACE_S - 1) == ""


def test_only_functions_a_started_generic_task_can_become_take_pool_replicas() -> None:
    settings = SwarmSettings()
    assert poolable(FunctionDeployment("f"), settings)
    assert poolable(FunctionDeployment("f", limits={"memory": settings.docker.memory}), settings)
    for dep in (
        FunctionDeployment("f", secrets=["token"]),  # a secret mount cannot be added to a running task
        FunctionDeployment("f", constraints=["node.role == worker"]),  # nor can its placement change
        FunctionDeployment("f", limits={"cpu": "0.5"}),
        FunctionDeployment("f", limits={"memory": "1Gi"}),
        FunctionDeployment("f", requests={"memory": "64Mi"}),
        FunctionDeployment("f", envProcess="python3 other.py"),
    ):
        assert not poolable(dep, settings), dep
