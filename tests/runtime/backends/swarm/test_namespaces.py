"""Created namespaces on Swarm live in Docker configs (issue 15, item 7), so every gateway of the Swarm sees the
same ones: create, read, replace and remove against the local swarm's real engine."""

from __future__ import annotations

from typing import Any

from runtime.backends.namespaces import FunctionNamespace
from runtime.backends.swarm.namespaces import SwarmNamespaceStore
from tests.runtime.backends.swarm.test_support import swarm_engine


def test_namespaces_are_configs_every_gateway_reads(swarm_platform: str) -> None:
    engine: Any = swarm_engine()
    one, other = SwarmNamespaceStore(engine.api, swarm_platform), SwarmNamespaceStore(engine.api, swarm_platform)
    long_name = "n" * 63  # the config's own name stays within Docker's 64 characters
    first = FunctionNamespace("team-a", {"openfaas": "1", "env": "dev"}, {"owner": "ops"})
    one.save(first)
    one.save(FunctionNamespace(long_name, {"openfaas": "1"}))
    assert other.get("team-a") == first and other.names() == sorted(["team-a", long_name])
    changed = FunctionNamespace("team-a", {"openfaas": "1", "env": "prod"})
    other.save(changed)
    assert one.get("team-a") == changed
    versions = engine.api.configs(filters={"label": ["com.stoker.namespace=team-a"]})
    assert len([c for c in versions if c["Spec"]["Labels"].get("com.stoker.platform") == swarm_platform]) == 1
    one.delete("team-a")
    one.delete(long_name)
    assert other.get("team-a") is None and other.names() == []
    assert SwarmNamespaceStore(engine.api, swarm_platform + "x").names() == []  # another platform's are apart
