"""How many queued calls a function's worker runs at once: replicas x their in-flight limit, within 1 and the cap."""

from __future__ import annotations

from events.worker import per_replica_limit, worker_concurrency
from stoker.spec import FunctionDeployment


def test_replicas_times_their_limit_within_one_and_the_cap() -> None:
    assert worker_concurrency(ready=2, per_replica=3, cap=256) == 6
    assert worker_concurrency(ready=4, per_replica=3, cap=256) == 12
    assert worker_concurrency(ready=100, per_replica=10, cap=256) == 256
    assert worker_concurrency(ready=0, per_replica=10, cap=256) == 1  # one call wakes a function at zero
    assert worker_concurrency(ready=3, per_replica=0, cap=64) == 64  # no per-replica figure: the cap
    assert worker_concurrency(ready=0, per_replica=0, cap=64) == 1


def test_per_replica_limit_is_the_in_flight_limit_else_the_capacity_target() -> None:
    d = FunctionDeployment(service="f", image="x", annotations={"com.stoker.concurrency": "4"})
    assert per_replica_limit(d.settings) == 4
    assert per_replica_limit(FunctionDeployment(service="f", image="x").settings) == 10  # capacity, target 10
    target = FunctionDeployment(
        service="f", image="x", labels={"com.openfaas.scale.target": "25", "com.openfaas.scale.type": "capacity"}
    )
    assert per_replica_limit(target.settings) == 25
    rps = FunctionDeployment(service="f", image="x", labels={"com.openfaas.scale.type": "rps"})
    assert per_replica_limit(rps.settings) == 0
