"""The gateway's ASGI application: one dispatcher in front of the invoke path and the management API.

``/function/`` goes straight to the raw :class:`~gateway.proxy.FunctionProxy` (the hot path); ``/system/`` passes
authentication first; ``/ui`` is the web console (:mod:`gateway.console`); ``/healthz`` and ``/metrics`` are open,
like OpenFaaS's (docs/security.md says why). Every
route is described in ``gateway/openapi.yaml``, served at ``/system/openapi.json``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Receive, Scope, Send

from autoscaler.loop import AutoscalerLoop
from events.queue import QueueUnavailable
from events.retry import RetryPolicy
from events.service import QueueService, open_queue
from events.worker import WorkerSettings
from gateway import openapi
from gateway.activator import Activator
from gateway.api import ManagementAPI
from gateway.async_api import ASYNC_PREFIX, AsyncAPI, ProxyInvoker
from gateway.auth import RequireAuth
from gateway.budget import BodyBudget
from gateway.console import PREFIX as CONSOLE_PREFIX
from gateway.console import Console
from gateway.health import HealthCheck
from gateway.history_store import FileHistory, HistoryStore, RedisHistory
from gateway.jsonbody import error
from gateway.metrics import Metrics
from gateway.proxy import PREFIX, FunctionProxy
from gateway.resources import resource
from gateway.upstream import Upstream
from runtime.backends.base import Backend, Endpoint, ReportsGoneReplicas, WarmReplicas
from stoker.atomicfile import is_full
from stoker.callback_policy import CallbackPolicy
from stoker.config import Config
from stoker.errors import StokerError


class GatewayApp:
    def __init__(self, config: Config, backend: Backend, password: str) -> None:
        self.config = config
        self.backend = backend
        self.metrics = Metrics()
        self.upstream = Upstream()
        if isinstance(backend, ReportsGoneReplicas):
            backend.on_replica_gone = self._replica_gone
        self.autoscaler = AutoscalerLoop(config, backend, self.metrics)
        self.activator = Activator(backend, config.wait_queue_size, self.autoscaler.scale_to)
        self.budget = BodyBudget(config.max_inflight_body_bytes)
        self.proxy = FunctionProxy(config, backend, self.upstream, self.metrics, self.activator, self.budget)
        self.queue = QueueService(
            open_queue(config.redis_url, config.home),
            functions=lambda: [r.deployment for r in backend.functions()],
            invoke=ProxyInvoker(self.proxy, config.max_body_bytes),
            settings=worker_settings(config),
            callback_policy=CallbackPolicy.parse(config.callback_allow),
            ready=self._ready,
        )
        self.health = HealthCheck(self.queue.queue.ping)
        self.draining = False  # set on SIGTERM: /readyz answers 503 from then on (gateway/server.py)
        self.stops_at = 0.0  # time.monotonic() when a draining gateway stops accepting
        self.api = ManagementAPI(config, backend, self.metrics, history_store(config, self.queue), self.queue.subscribe)
        self.autoscaler.backlog = self.queue_lag  # queued calls count as load (docs/autoscaling.md)
        self.async_api = AsyncAPI(config, backend, self.queue, self.budget)
        self.console = Console(config, backend, self.metrics, self.autoscaler, self.queue, password)
        routes = [
            resource("/healthz", GET=self.healthz),
            resource("/readyz", GET=self.readyz),
            resource("/metrics", GET=self.prometheus),
            resource(openapi.PATH, GET=self.openapi),
            *self.api.routes(),
            *self.async_api.routes(),
            *self.console.api.routes(),
        ]
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={
                StokerError: self._stoker_error,
                HTTPException: self._http_error,
                QueueUnavailable: self._queue_unavailable,
                OSError: self._os_error,
            },
        )
        self.system = RequireAuth(self.starlette, password, self.console.sessions.check)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.draining and scope["type"] == "http":
            send = _closing(send)
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                await self.proxy(scope, receive, send)
                return
            if path.startswith(ASYNC_PREFIX):
                await self.async_api(scope, receive, send)
                return
            if path.startswith("/system/"):
                await self.system(scope, receive, send)
                return
            if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
                await self.console.pages(scope, receive, send)
                return
        await self.starlette(scope, receive, send)

    def _ready(self, function: str) -> int:
        """Ready replicas of ``function`` (name.namespace) as the proxy routes to them: the queue worker's size."""
        name, _, namespace = function.partition(".")
        record = self.backend.get(name, namespace)
        return record.available if record is not None else 0

    async def queue_lag(self, function: str) -> tuple[int, int]:
        return (await self.queue.load(function)).for_scaling()

    def _replica_gone(self, endpoint: Endpoint) -> None:
        self.upstream.abort(endpoint.host, endpoint.port)

    async def healthz(self, request: Request) -> Response:
        """``/healthz`` and ``/readyz``: 200 ``OK``, or 503 naming why the gateway cannot work (gateway/health.py)."""
        problem = await self.health.problem()
        if problem:
            return error(503, problem, {"Retry-After": "1"})
        return PlainTextResponse("OK")

    async def readyz(self, request: Request) -> Response:
        """``/readyz``: as ``/healthz``, but 503 from the moment the gateway is asked to stop (``draining``), while it
        still serves every call for ``STOKER_SHUTDOWN_DELAY_S``: load balancers take it out before it stops."""
        if self.draining:
            # How long it serves on: a balancer with no other gateway may still send calls until then (gateway/edge.py)
            left = max(0.0, self.stops_at - time.monotonic())
            return error(503, "the gateway is stopping", {"Retry-After": "1", "X-Stoker-Stops-In": f"{left:.3f}"})
        return await self.healthz(request)

    async def prometheus(self, request: Request) -> Response:
        replicas = [(f"{r.deployment.service}.{r.deployment.namespace}", r.replicas) for r in self.backend.functions()]
        return PlainTextResponse(
            self.metrics.render(replicas, self._scaling_metrics), media_type="text/plain; version=0.0.4"
        )

    def _scaling_metrics(self) -> Iterable[str]:
        yield from self.autoscaler.render_metrics()
        yield "# HELP stoker_function_waiting Requests waiting for a replica, by function"
        yield "# TYPE stoker_function_waiting gauge"
        for (name, namespace), n in sorted(self.activator.lines().items()):
            yield f'stoker_function_waiting{{function_name="{name}.{namespace}"}} {n}'
        yield "# HELP stoker_warm_pool_ready Generic replicas ready in the warm pool"
        yield "# TYPE stoker_warm_pool_ready gauge"
        yield f"stoker_warm_pool_ready {self.backend.warm_replicas() if isinstance(self.backend, WarmReplicas) else 0}"

    async def openapi(self, request: Request) -> Response:
        return Response(openapi.document_json(), media_type="application/json")

    async def _queue_unavailable(self, request: Request, exc: Exception) -> Response:
        message = f"the queue is unavailable: {exc}"
        return error(503, message, {"Retry-After": "1"})

    async def _stoker_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StokerError)
        return error(exc.status, str(exc))

    async def _os_error(self, request: Request, exc: Exception) -> Response:
        """A file or socket error no route turned into a StokerError: still a JSON answer naming the cause (507
        when the disk is full)."""
        assert isinstance(exc, OSError)
        filename = f" ({exc.filename})" if exc.filename else ""
        return error(507 if is_full(exc) else 500, f"{exc.strerror or exc}{filename}")

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail, exc.headers)


def history_store(config: Config, queue: QueueService) -> HistoryStore:
    """Deploy history in Redis when the platform has one (shared by every gateway), else in STOKER_HOME."""
    redis = getattr(queue.queue, "redis", None)
    if config.redis_url and redis is not None:
        return RedisHistory(redis)
    return FileHistory(config.home / "history")


def worker_settings(config: Config) -> WorkerSettings:
    """The queue worker's settings from the platform's config."""
    return WorkerSettings(
        concurrency=config.queue_concurrency,
        policy=RetryPolicy(config.queue_attempts, config.queue_backoff_s, config.queue_backoff_max_s),
        claim_idle_s=config.queue_claim_idle_s,
        result_ttl_s=config.result_ttl_s,
    )


def _closing(send: Send) -> Send:
    """``send`` with ``connection: close`` on the answer: a stopping gateway ends each keep-alive connection after
    its answer, so none sits idle when it stops (a load balancer's request written into an idle connection as the
    gateway closes it is lost, and a POST cannot be sent again)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing
