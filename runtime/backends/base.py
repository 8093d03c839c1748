"""The one small interface every orchestrator backend fills in (local processes, Docker, Swarm, Kubernetes).

The gateway asks a backend only for what it needs: deploy, remove, scale, the current function records, the ready
endpoints of a function (to route to) and logs. Endpoints are shared objects: the gateway counts requests in flight
on each (``inflight``), and a backend that stops a replica first takes it out of the list, then waits for that count
to reach zero, then stops it, so scale-down and redeploys lose nothing.

Scaling: ``scale`` returns once the change is under way, not when new replicas are ready; they appear in
``endpoints`` when they are (the gateway's activator holds requests meanwhile). A backend with a warm pool
(:mod:`runtime.backends.pool`) should take replicas from it when scaling up.

Optional capabilities are named Protocols, checked with ``isinstance`` where they are used, never probed with
``getattr``: :class:`WarmReplicas` (the pool's size, exported as ``stoker_warm_pool_ready``), :class:`TendsPool` (a
pool that lives in the orchestrator, Swarm and Kubernetes, where every gateway may take from it: the process that
autoscales calls ``tend_pool`` once a tick to refill it and retire pool replicas that bridged a cold start) and
:class:`ReportsGoneReplicas` (a backend that sees a replica exit tells the gateway, which fails the calls in flight
on it at once: a killed container sends no reset, so they would otherwise hang until their timeout).

The invoke path needs one method, :class:`FunctionLookup` (``get``), and depends on nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from runtime.backends.secrets import SecretStore
from stoker.errors import NotFound
from stoker.spec import FunctionDeployment

T = TypeVar("T")


class HasRecord(Protocol):
    @property
    def record(self) -> FunctionRecord: ...


R = TypeVar("R", bound=HasRecord)


def known(functions: Mapping[tuple[str, str], T], name: str, namespace: str) -> T:
    """A backend's entry for a function, by ``(name, namespace)``; NotFound, worded for the API, when it has none."""
    fn = functions.get((name, namespace))
    if fn is None:
        raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
    return fn


class Endpoint:
    """One ready replica the gateway can send requests to."""

    __slots__ = ("host", "inflight", "instance", "port")

    def __init__(self, instance: str, host: str, port: int) -> None:
        self.instance = instance
        self.host = host
        self.port = port
        self.inflight = 0  # maintained by the gateway

    def __repr__(self) -> str:
        return f"Endpoint({self.instance} {self.host}:{self.port} inflight={self.inflight})"


@dataclass
class FunctionRecord:
    """What a backend knows of one deployed function."""

    deployment: FunctionDeployment
    created_at: float
    replicas: int  # desired
    endpoints: list[Endpoint] = field(default_factory=list)  # ready replicas, in routing order
    message: str = ""  # last problem (crash loop, start failure); empty when healthy

    @property
    def available(self) -> int:
        return len(self.endpoints)


@dataclass(frozen=True)
class LogLine:
    name: str
    namespace: str
    instance: str
    timestamp: float
    text: str


class Backend(Protocol):
    name: str

    @property
    def secrets(self) -> SecretStore:
        """What /system/secrets manages; replicas get the secrets their deployment lists."""
        ...

    async def start(self) -> None:
        """Load or adopt what was deployed before and bring it back to its desired replicas."""

    async def close(self) -> None:
        """Stop (or leave, as configured) the replicas; release every resource."""

    async def deploy(self, deployment: FunctionDeployment, bundle: bytes | None) -> None:
        """Create or update a function. Raises DeployFailed when it cannot start; an update that fails leaves the
        previous version serving."""

    async def remove(self, name: str, namespace: str) -> None:
        """Drain and remove a function's replicas and state. Raises NotFound."""

    async def scale(self, name: str, namespace: str, replicas: int) -> None:
        """Set the desired replica count (0 allowed). Raises NotFound."""

    def get(self, name: str, namespace: str) -> FunctionRecord | None: ...

    def functions(self, namespace: str | None = None) -> list[FunctionRecord]: ...

    def namespaces(self) -> list[str]: ...

    def logs(
        self, name: str, namespace: str, tail: int | None, since: float | None, follow: bool
    ) -> AsyncIterator[LogLine]:
        """Log lines of a function's replicas, oldest first; with ``follow``, new lines as they come."""
        ...


class FunctionLookup(Protocol):
    """All the invoke path needs of a backend: the record (with its ready endpoints) of one function."""

    def get(self, name: str, namespace: str) -> FunctionRecord | None: ...


@runtime_checkable
class WarmReplicas(Protocol):
    """A backend with a warm pool that can say how many generic replicas are ready in it."""

    def warm_replicas(self) -> int: ...


@runtime_checkable
class TendsPool(Protocol):
    """A backend whose warm pool lives in the orchestrator; the process that autoscales tends it once a tick."""

    async def tend_pool(self) -> None: ...


@runtime_checkable
class ReportsGoneReplicas(Protocol):
    """A backend that sees its replicas exit; the gateway sets ``on_replica_gone`` to fail their calls in flight."""

    on_replica_gone: Callable[[Endpoint], None] | None


class FunctionTable(Generic[R]):
    """The reads a backend answers from its table of functions by ``(name, namespace)``."""

    _functions: dict[tuple[str, str], R]

    def get(self, name: str, namespace: str) -> FunctionRecord | None:
        fn = self._functions.get((name, namespace))
        return fn.record if fn is not None else None

    def functions(self, namespace: str | None = None) -> list[FunctionRecord]:
        return [fn.record for key, fn in sorted(self._functions.items()) if namespace in (None, key[1])]

    def _known(self, name: str, namespace: str) -> R:
        return known(self._functions, name, namespace)
