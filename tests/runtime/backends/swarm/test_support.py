"""The local swarm the Swarm tests run on (no tests here: helpers the test_swarm_* modules share).

``scripts/setup.d/25-swarm.sh`` runs ``docker swarm init`` when the engine is in no swarm and exports
``STOKER_TEST_SWARM_CREATED=1``; a direct ``pytest`` run does the same here. The swarm is left again when the test
process exits, and only when this run created it: a swarm that existed before is never touched. Exits that skip
``atexit`` are covered too: SIGTERM and SIGHUP leave it first, and a run killed outright (SIGKILL, ``os._exit``) left
a marker naming its swarm, which the next run leaves if that very swarm (same cluster ID) is still there.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stoker.processes import alive
from tests import wait_support
from tests.docker_support import docker_client

T = TypeVar("T")
_state: dict[str, bool] = {}


MARKER = Path(tempfile.gettempdir()) / "stoker-test-swarm-created.json"  # {"pid", "cluster"} of the run that made it


def _leave() -> None:
    subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True, check=False, timeout=120)
    MARKER.unlink(missing_ok=True)


def _cluster_id(client: Any) -> str:
    return str(((client.info().get("Swarm") or {}).get("Cluster") or {}).get("ID") or "")


def _leave_a_killed_runs_swarm(client: Any) -> None:
    """A run that made a swarm and was killed before it could leave: leave that swarm now (and only that one)."""
    try:
        marker = json.loads(MARKER.read_text())
    except (OSError, ValueError):
        return
    if alive(int(marker.get("pid", 0))):
        return  # still running: its swarm is in use
    if marker.get("cluster") and marker["cluster"] == _cluster_id(client):
        _leave()
    MARKER.unlink(missing_ok=True)


def _on_signal(signum: int, _frame: object) -> None:
    _leave()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def swarm_engine() -> Any:
    """A client on a local engine that is a swarm manager (made one when needed)."""
    client = docker_client()
    if not _state:
        _leave_a_killed_runs_swarm(client)
        created = os.environ.get("STOKER_TEST_SWARM_CREATED") == "1"
        if client.info()["Swarm"]["LocalNodeState"] != "active":
            address = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=True).stdout.split()
            cmd = ["docker", "swarm", "init"] + (["--advertise-addr", address[0]] if address else [])
            subprocess.run(cmd, capture_output=True, check=True, timeout=120)
            MARKER.write_text(json.dumps({"pid": os.getpid(), "cluster": _cluster_id(client)}))
            created = True
        _state["created"] = created
        if created:
            atexit.register(_leave)
            if threading.current_thread() is threading.main_thread():
                for signum in (signal.SIGTERM, signal.SIGHUP):
                    signal.signal(signum, _on_signal)
    return client


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    """:func:`tests.wait_support.wait_for` at the pace of the Swarm API (each check asks the engine)."""
    return wait_support.wait_for(check, timeout, what, poll_s=0.3)


def remove_platform(engine: Any, platform: str, network: str = "") -> None:
    """Remove what a platform left in the swarm: its services (functions and warm pool replicas), then, once their
    containers are gone, its secrets and code configs and ``network``."""
    import contextlib

    from runtime.backends.swarm.cleanup import remove_platform as remove

    remove(engine.api, platform)  # a container slow to stop: its secret stays, nothing else fails
    if network:
        with contextlib.suppress(Exception):
            engine.api.remove_network(network)
