"""The least memory each engine can give a replica, and what the status says when a deployment asks for less.

OpenFaaS accepts any ``limits.memory`` and leaves it to the engine; the Docker Engine refuses a container under
6 MiB, and a local replica cannot start its runtime under 96 MiB (:mod:`runtime.backends.local.limits`). Rather than
refusing a deploy that works on OpenFaaS, a smaller limit (or request) is raised to the engine's minimum, and the
function's status message says so: the deployment keeps the value as sent, the replica runs with the minimum.
"""

from __future__ import annotations

from runtime.backends.quantities import memory_size
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment

MIB = 1024 * 1024
DOCKER_MIN_MEMORY = 6 * MIB  # the Docker Engine's own floor (Swarm tasks run on it too)
LOCAL_MIN_MEMORY = 96 * MIB  # the runtime itself uses about 60 MiB of RLIMIT_DATA
FLOORS = {"docker": DOCKER_MIN_MEMORY, "swarm": DOCKER_MIN_MEMORY, "local": LOCAL_MIN_MEMORY}
_ENGINES = {"docker": "the Docker Engine", "swarm": "the Docker Engine", "local": "a local replica"}


def at_least(value: str, what: str, floor: int) -> int:
    """Bytes of a memory quantity, raised to ``floor``; InvalidRequest when it is not a quantity."""
    return max(memory_size(value, what), floor)


def floor_note(dep: FunctionDeployment, backend: str) -> str:
    """For the status message: which memory amounts of ``dep`` the backend raised to its minimum (empty: none)."""
    floor = FLOORS.get(backend)
    if floor is None:
        return ""
    notes = []
    for field, values in (("limits", dep.limits), ("requests", dep.requests)):
        raw = values.get("memory")
        if not raw:
            continue
        try:
            below = memory_size(raw, f"{field}.memory") < floor
        except InvalidRequest:  # a stored deployment from before a stricter check: not this note's business
            continue
        if below:
            notes.append(
                f"{field}.memory {raw} is below the {floor // MIB}Mi {_ENGINES[backend]} needs: "
                f"rounded up to {floor // MIB}Mi"
            )
    return "; ".join(notes)
