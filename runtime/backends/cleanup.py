"""``stoker down`` and ``stoker purge``: remove what one platform left on its orchestrator, and nothing else.

Each orchestrator has a ``cleanup`` module beside its backend with two functions, imported lazily by name (as
uvicorn's protocol table) so that cleaning the local backend needs neither Docker's nor Kubernetes's client:

- ``tear_down(config) -> list[str]``: the platform's runtime objects (replicas, pool replicas, secrets, code volumes or
  configs, its network), found by this platform's identity only: the owner label (a hash of ``STOKER_HOME``) on
  Docker, the platform label (``STOKER_SWARM_PLATFORM``) on Swarm, the managed-by label in the platform's one
  namespace (``STOKER_K8S_NAMESPACE``) on Kubernetes, the process-group records and socket folder of
  ``$STOKER_HOME`` locally. State in ``STOKER_HOME`` stays: the next ``stoker up`` deploys the same functions again.
- ``built_images(config) -> list[str]`` (``stoker purge`` only): images this platform built and no container uses.

Each returns one line per thing removed, for the command to print. The platform must not be running meanwhile
(the command stops it first), else it would start what is being removed again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from builder.engine import engine_message
from stoker.config import Config

CLEANUPS = {name: f"runtime.backends.{name}.cleanup" for name in ("local", "docker", "swarm", "kubernetes")}


def _function(backend: str, name: str) -> Callable[[Config], list[str]]:
    module = importlib.import_module(CLEANUPS[backend])
    fn: Callable[[Config], list[str]] = getattr(module, name)
    return fn


def tear_down(backend: str, config: Config) -> list[str]:
    """Remove the runtime objects of the platform of ``config`` on ``backend`` (see the module)."""
    return _function(backend, "tear_down")(config)


def built_images(backend: str, config: Config) -> list[str]:
    """Remove the images the platform of ``config`` built on ``backend`` that nothing uses."""
    return _function(backend, "built_images")(config)


def removal(kind: str, name: str, remove: Callable[[], object]) -> list[str]:
    """Remove one engine object (``remove()``) and say so: ``["removed <kind> <name>"]``, or ``["kept <kind> <name>:
    <why>"]`` when the engine refuses (a volume or secret still mounted by a container slow to stop, an image in
    use), or nothing when it had gone already. The families' ``tear_down`` loops are this over what they own."""
    import docker.errors

    try:
        remove()
    except docker.errors.NotFound:
        return []
    except docker.errors.APIError as exc:
        return [f"kept {kind} {name}: {engine_message(exc)}"]
    return [f"removed {kind} {name}"]
