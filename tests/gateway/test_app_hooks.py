"""Each gateway gets the notices of its own backend: two platforms in one process (as the tests run them) do not
take each other's replica-gone hook, which used to be a class variable set by whichever gateway was built last."""

from __future__ import annotations

from pathlib import Path

from gateway.app import GatewayApp
from runtime.backends import create_backend
from runtime.backends.base import ReportsGoneReplicas, TendsPool, WarmReplicas
from stoker.config import Config


def test_two_gateways_in_one_process_keep_their_own_replica_gone_hook(tmp_path: Path) -> None:
    apps = []
    for name in ("one", "two"):
        config = Config.from_env({"STOKER_HOME": str(tmp_path / name)})
        apps.append(GatewayApp(config, create_backend(config, b"k" * 32), "password"))
    first, second = (app.backend for app in apps)
    assert isinstance(first, ReportsGoneReplicas) and isinstance(second, ReportsGoneReplicas)
    assert first.on_replica_gone == apps[0]._replica_gone
    assert second.on_replica_gone == apps[1]._replica_gone


def test_optional_capabilities_are_protocols(tmp_path: Path) -> None:
    """The local backend keeps its pool in-process: it reports its size but has no pool to tend."""
    config = Config.from_env({"STOKER_HOME": str(tmp_path)})
    backend = create_backend(config, b"k" * 32)
    assert isinstance(backend, WarmReplicas)
    assert not isinstance(backend, TendsPool)
