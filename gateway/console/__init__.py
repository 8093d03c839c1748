"""The web console at ``/ui/`` (docs/console.md): pages and assets (:mod:`.pages`), login sessions and CSRF
(:mod:`.session`), the per-function chart series kept off the invoke path (:mod:`.series`), and the JSON routes it
reads under ``/system/`` (:mod:`.api`)."""

from __future__ import annotations

from autoscaler.loop import AutoscalerLoop
from events.service import QueueService
from gateway.console.api import ConsoleAPI, Sampler
from gateway.console.pages import PREFIX, Pages
from gateway.console.session import Sessions
from gateway.metrics import Metrics
from runtime.backends.base import Backend
from stoker.config import Config

__all__ = ["PREFIX", "Console"]


class Console:
    """Everything the console adds to a gateway: ``pages`` (ASGI, for ``/ui``), ``api.routes()`` (for ``/system/``),
    ``sessions.check`` (for :class:`gateway.auth.RequireAuth`), and the sampler's lifecycle."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        metrics: Metrics,
        autoscaler: AutoscalerLoop,
        queue: QueueService,
        password: str,
    ) -> None:
        self.sessions = Sessions(password, config.console_session_s)
        self.sampler = Sampler(config, backend, metrics, autoscaler, queue)
        self.api = ConsoleAPI(config, backend, metrics, autoscaler, self.sampler)
        self.pages = Pages(self.sessions, password)

    def start(self) -> None:
        self.sampler.start()

    async def stop(self) -> None:
        await self.sampler.stop()
