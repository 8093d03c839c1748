"""What ``/healthz`` and ``/readyz`` answer: whether the gateway can do its work, decided from one probe of its queue.

``/healthz`` (liveness for Docker and Swarm healthchecks): 200 ``OK`` while the queue answers; 503 with
``{"error": ...}`` naming the cause when it does not (Redis down, wrong password). The embedded queue always answers.
``/readyz`` (for load balancers and Kubernetes readiness): the same answer today, on its own path so an orchestrator's
liveness probe can stay on the TCP port (restarting a gateway does not bring Redis back) while its readiness follows
the queue.

A probe is at most one ``PING`` per ``interval_s`` however often the endpoints are hit (they are open to anyone),
bounded by ``timeout_s``; callers in between get the last answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class HealthCheck:
    """Remembers the last probe of a dependency and probes again when it is older than ``interval_s``."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        interval_s: float = 1.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._checked = float("-inf")
        self._problem = ""
        self._lock = asyncio.Lock()

    async def problem(self) -> str:
        """Why the gateway is unhealthy ("" when it is healthy)."""
        if self.clock() - self._checked < self.interval_s:
            return self._problem
        async with self._lock:  # one probe at a time; the others wait for its answer
            if self.clock() - self._checked < self.interval_s:
                return self._problem
            try:
                await asyncio.wait_for(self.probe(), self.timeout_s)
                self._problem = ""
            except TimeoutError:
                self._problem = f"the queue did not answer within {self.timeout_s:g}s"
            except Exception as exc:  # any failure of the dependency is the answer, not a crash of the probe
                self._problem = str(exc) or type(exc).__name__
            self._checked = self.clock()
        return self._problem
