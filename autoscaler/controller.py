"""``stoker controller``: the autoscaler (and a backend's warm pool) for every gateway, one active instance at a time.

Gateways serve calls and publish their load counters to Redis (:mod:`autoscaler.shared`); the controller serves no
call. Every tick it takes or renews leadership (:mod:`autoscaler.leader`: the Redis lock, or a Kubernetes Lease when
``STOKER_LEASE_NAME`` is set); the leader adds up the gateways' counters and runs :class:`AutoscalerLoop` on the total,
plus each function's queue lag; a standby only keeps its view of the backend current, ready to take over.

Lifecycle: start the backend (it fills its warm pool where it has one), listen for ``/healthz`` and ``/metrics``,
tick until SIGINT/SIGTERM (which only set a flag), then give leadership up so a standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

import uvicorn

from autoscaler.leader import Elector, KubeLease, RedisLock
from autoscaler.loop import AutoscalerLoop
from autoscaler.shared import SharedLoad, gateway_id
from events.service import QueueService, open_queue
from events.worker import WorkerSettings
from runtime.backends import create_backend
from runtime.backends.base import Backend, WarmReplicas
from stoker import logconfig
from stoker.config import Config
from stoker.credentials import platform_key
from stoker.errors import ConfigError, StokerError
from stoker.statehome import prepare as prepare_home

logger = logging.getLogger(__name__)


class Controller:
    """One tick: elect, then (the leader only) read the shared load and let the autoscaler decide and apply."""

    def __init__(self, config: Config, backend: Backend, elector: Elector, load: SharedLoad) -> None:
        self.config = config
        self.backend = backend
        self.elector = elector
        self.load = load
        self.leading = False
        self.autoscaler: AutoscalerLoop | None = None
        # Queue load only: no workers run here (never started); QueueService.load reads each function's streams as
        # deployed (its async stream, annotated streams and triggers).
        self.queue = QueueService(
            open_queue(config.redis_url, config.home),
            functions=lambda: [r.deployment for r in backend.functions()],
            invoke=_no_invoke,
            settings=WorkerSettings(1),
        )

    async def tick(self, wall: float, now: float) -> bool:
        """Elect at ``wall`` (epoch seconds); decide at ``now`` (the autoscaler's clock). True while leading."""
        leading = await self.elector.tick(wall)
        if leading and not self.leading:
            self._log(f"leading as {self.elector.holder}")
            # A fresh loop: what an earlier term saw is stale; the first tick takes a baseline per function.
            self.autoscaler = AutoscalerLoop(self.config, self.backend, self.load, backlog=self._lag)
        elif not leading and self.leading:
            self._log(f"standing by ({self.elector.holder} lost the leadership)")
            self.autoscaler = None
        self.leading = leading
        if leading and self.autoscaler is not None:
            # Bounded: a slow orchestrator must not keep this leader from renewing while it still acts.
            async with asyncio.timeout(self.config.leader_ttl_s / 2):
                await self.load.refresh()
                await self.autoscaler.tick(now)
        return leading

    async def _lag(self, function: str) -> tuple[int, int]:
        return (await self.queue.load(function)).for_scaling()

    async def close(self) -> None:
        if self.leading:
            await self.elector.release()
            self._log("gave the leadership up")
        self.leading = False
        await self.queue.queue.close()
        await self.load.close()
        close = getattr(self.elector, "close", None)
        if callable(close):
            await close()

    def render_metrics(self) -> Iterable[str]:
        yield "# HELP stoker_controller_leader 1 while this controller is the one that acts"
        yield "# TYPE stoker_controller_leader gauge"
        yield f"stoker_controller_leader {int(self.leading)}"
        yield "# HELP stoker_controller_gateways Gateways whose load counters are live in Redis"
        yield "# TYPE stoker_controller_gateways gauge"
        yield f"stoker_controller_gateways {len(self.load.gateways)}"
        totals = self.load.totals
        yield "# HELP stoker_controller_inflight Calls in flight across all gateways, by function"
        yield "# TYPE stoker_controller_inflight gauge"
        for fn, n in sorted(totals.inflight.items()):
            yield f'stoker_controller_inflight{{function_name="{fn}"}} {n}'
        yield "# HELP stoker_controller_started Calls started, the sum of the live gateways' own counters"
        yield "# TYPE stoker_controller_started gauge"
        for fn, n in sorted(totals.started_now.items()):
            yield f'stoker_controller_started{{function_name="{fn}"}} {n}'
        if isinstance(self.backend, WarmReplicas):  # a backend whose warm pool the leader tends
            yield "# HELP stoker_warm_pool_ready Generic replicas ready in the warm pool (the leader keeps it full)"
            yield "# TYPE stoker_warm_pool_ready gauge"
            yield f"stoker_warm_pool_ready {self.backend.warm_replicas()}"
        if self.autoscaler is not None:
            yield from self.autoscaler.render_metrics()

    def _log(self, text: str) -> None:
        logger.info("controller: %s", text)


async def _no_invoke(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover - the controller runs no worker
    raise RuntimeError("the controller does not invoke functions")


def make_elector(config: Config) -> Elector:
    """A Kubernetes Lease when ``STOKER_LEASE_NAME`` is set, else the Redis lock."""
    holder = config.lease_holder or gateway_id()
    if config.lease_name:
        from kubernetes import client
        from kubernetes import config as kube_config

        try:
            kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kube_config.ConfigException:
            kube_config.load_kube_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
        return KubeLease(
            client.CoordinationV1Api(api),
            api.sanitize_for_serialization,
            config.lease_name,
            config.lease_namespace,
            holder,
            config.leader_ttl_s,
        )
    return RedisLock(config.redis_url, holder, config.leader_ttl_s)


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: the controller's handlers set its flag, then it shuts uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _App:
    """``/healthz`` and ``/metrics``: a two-route ASGI app, no framework needed."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            status, body, kind = 200, b"OK", b"text/plain"
        elif scope["path"] == "/metrics":
            status, body, kind = 200, ("\n".join(self.controller.render_metrics()) + "\n").encode(), b"text/plain"
        else:
            status, body, kind = 404, b"not found", b"text/plain"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
        await send({"type": "http.response.body", "body": body})


def check(config: Config) -> None:
    if config.backend == "local":
        raise ConfigError(
            "STOKER_BACKEND: the controller needs an orchestrator backend (docker, swarm or kubernetes); "
            "local replicas belong to their `stoker up` process, which runs its own autoscaler"
        )
    if not config.redis_url:
        raise ConfigError("STOKER_REDIS_URL: the controller reads the gateways' load counters from Redis; set it")


async def run(config: Config) -> None:
    check(config)
    try:
        prepare_home(config.home)
        key = platform_key(config.home, config.platform_key_file)
    except OSError as exc:
        raise ConfigError(f"STOKER_HOME: cannot use {config.home}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    backend = create_backend(config, key)
    controller = Controller(config, backend, make_elector(config), SharedLoad(config.redis_url, config.leader_ttl_s))
    server = _Server(
        uvicorn.Config(_App(controller), host=config.host, port=config.port, lifespan="off", log_level="warning")
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await backend.start()
    http = asyncio.create_task(server.serve())
    while not server.started and not http.done():
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else config.port
    print(f"stoker: controller on http://{config.host}:{port} (backend: {backend.name})", flush=True)
    # Renew well inside the TTL; decide every autoscaler tick.
    interval = min(config.autoscale_tick_s, config.leader_ttl_s / 3)
    try:
        while not stopping.is_set():
            try:
                await controller.tick(time.time(), time.monotonic())
            except Exception as exc:  # Redis or the orchestrator away for a moment: the next tick tries again
                logger.warning("controller: tick failed: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    finally:
        await controller.close()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await http
        await backend.close()


def run_controller(config: Config) -> int:
    """Run until SIGINT/SIGTERM; return the exit status."""
    logconfig.configure(config.log_format)
    try:
        asyncio.run(run(config))
    except (ConfigError, StokerError) as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
