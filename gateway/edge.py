"""``stoker edge``: a small HTTP load balancer in front of the gateways of a Compose or Swarm install.

Why: a client of a platform with one published gateway sees every restart of it (an upgrade, a killed task) as
refused connections and cut keep-alive connections. The edge holds the client connections itself and:

- resolves its upstream name (``STOKER_EDGE_UPSTREAM``, ``gateway:8080``; on Swarm ``tasks.gateway:8080``) to every
  address, and checks each gateway's ``/readyz`` every ``STOKER_EDGE_CHECK_INTERVAL_S``; a gateway that leaves the
  name's answer gets no new request, and those in flight there finish (:meth:`Edge.check`);
- sends each request to the ready gateway with the fewest in flight (:mod:`gateway.edge_choice`), over pooled
  keep-alive connections (:mod:`gateway.upstream`);
- sends a request again, to another gateway or the same once it is back, when it never reached one (connection
  refused, or broken before a byte was written), and a GET or HEAD when it broke before any answer; never a request
  a gateway may have run otherwise (502);
- while no gateway is ready, sends requests to a stopping one that says it still serves for a while
  (``X-Stoker-Stops-In``, less a margin), else holds them for up to ``STOKER_EDGE_HOLD_S`` until one is ready (the
  one gateway of a Compose install being replaced), rather than refusing them (503 with ``Retry-After`` after
  that).

Gateways answer ``/readyz`` 503 from the moment they are told to stop and keep serving for
``STOKER_SHUTDOWN_DELAY_S`` (gateway/server.py), longer than a check interval: the edge has stopped sending them
requests before they stop accepting, so no request is written to a connection a gateway is closing.

Bodies are read whole first (bounded like the gateway's: 413, and 503 past the in-memory budget), because a request
can only be sent again if the edge still has it. Answers stream through at the client's pace. The edge's own
``/readyz`` and ``/healthz`` (answered here, not forwarded) say 200 while at least one gateway is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.budget import BodyBudget
from gateway.edge_choice import Gateway, may_resend, pick
from gateway.proxy import read_body, send_error
from gateway.upstream import Upstream, UpstreamError, UpstreamResponse
from runtime import edgelimits
from runtime.httpserver import CoalescingHttpToolsProtocol
from stoker import logconfig
from stoker.envsettings import from_environ
from stoker.errors import ConfigError, StokerError, error_body

logger = logging.getLogger(__name__)

OWN_PATHS = frozenset(("/healthz", "/readyz"))
# What the edge sets itself, or must not pass on from a gateway's answer (framing is uvicorn's).
_DROP_RESPONSE = frozenset((b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"date", b"server"))
_CHECK_TIMEOUT_S = 2.0
_NO_SUCH_NAME = frozenset(getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n))
_RESENDS = 3
STOPS_IN = b"x-stoker-stops-in"  # on a stopping gateway's /readyz 503: seconds it serves on (gateway/app.py)
_STOP_MARGIN_S = 1.0  # a GET or HEAD that broke after it was sent goes again at most this many times


@dataclass(frozen=True)
class EdgeConfig:
    """``stoker edge``'s settings, from ``STOKER_EDGE_*`` variables and flags."""

    # host:port[,host:port...]; each host is resolved to every address it has, again at every check
    upstream: str = "gateway:8080"
    host: str = "0.0.0.0"
    port: int = 8080
    check_interval_s: float = 0.5
    hold_s: float = 60.0  # how long a request waits for a ready gateway before 503
    upstream_timeout_s: float = 310.0  # above the gateway's own ceiling (STOKER_UPSTREAM_TIMEOUT_S, 300)
    max_body_bytes: int = 20 * 1024 * 1024  # as the gateway's STOKER_MAX_BODY_BYTES
    max_inflight_body_bytes: int = 256 * 1024 * 1024
    header_timeout_s: float = edgelimits.DEFAULT_HEADER_TIMEOUT_S
    max_header_bytes: int = edgelimits.DEFAULT_MAX_HEADER_BYTES
    max_connections: int = 0  # 0: derived from the open-files limit
    drain_timeout_s: float = 60.0  # on SIGTERM: how long answers in flight may take to finish

    @classmethod
    def from_env(cls, environ: dict[str, str], **overrides: object) -> EdgeConfig:
        values = from_environ(cls, environ, "STOKER_EDGE_")
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for item in self.upstream.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigError(f"STOKER_EDGE_UPSTREAM: {item!r} is not host:port")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"STOKER_EDGE_PORT: {self.port} is not a TCP port")
        for name in ("check_interval_s", "hold_s", "upstream_timeout_s", "max_body_bytes", "header_timeout_s",
                     "drain_timeout_s"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"STOKER_EDGE_{name.upper()}: must be greater than zero")
        if self.max_inflight_body_bytes < self.max_body_bytes:
            raise ConfigError("STOKER_EDGE_MAX_INFLIGHT_BODY_BYTES: must be at least STOKER_EDGE_MAX_BODY_BYTES")

    @property
    def upstream_addresses(self) -> list[tuple[str, int]]:
        out = []
        for item in self.upstream.split(","):
            host, _, port = item.strip().rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return out


Resolve = Callable[[str, int], Awaitable[set[str]]]  # a name's addresses now; socket.gaierror when it has none


async def resolve(name: str, port: int) -> set[str]:
    """Every address ``name`` resolves to (on Swarm, ``tasks.<service>`` or a dnsrr service: one per task)."""
    infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
    return {str(info[4][0]) for info in infos}


class Edge:
    """The edge's ASGI app and its view of the gateways."""

    def __init__(self, config: EdgeConfig, resolver: Resolve = resolve) -> None:
        self.config = config
        self.gateways: list[Gateway] = []
        # Gateways whose address left the name's answer with calls still in flight there (see check())
        self.leaving: dict[tuple[str, int], Gateway] = {}
        self._resolve = resolver
        self.upstream = Upstream()
        self.budget = BodyBudget(config.max_inflight_body_bytes)
        self._ready = asyncio.Event()  # set while at least one gateway is ready: held requests wait on it
        self._resolved: dict[tuple[str, int], set[tuple[str, int]]] = {}  # each upstream name's last addresses
        self._turn = 0

    # --- the gateways' state ---------------------------------------------------------------------------------
    async def check(self) -> None:
        """One round: resolve the upstream names, then ask every gateway's ``/readyz`` at once.

        A gateway whose address left the name's answer gets no new call, but the calls in flight there are left to
        finish: Swarm takes a task out of its DNS two seconds before it even tells it to stop (the gossip delay of
        its task shutdown), and the gateway, told to stop, still answers what it has for STOKER_SHUTDOWN_DELAY_S
        and its drain. Cutting those connections here lost every POST in flight on it, which cannot go again. The
        calls in flight on a gateway that left are cut only once nothing answers at its address any more (a gateway
        whose process dies resets its connections itself, but one on a node that is gone or cut off sends nothing,
        and its calls would wait out their whole timeout)."""
        addresses: set[tuple[str, int]] = set()
        for name, port in self.config.upstream_addresses:
            try:
                self._resolved[(name, port)] = {(host, port) for host in await self._resolve(name, port)}
            except OSError as exc:
                if isinstance(exc, socket.gaierror) and exc.errno in _NO_SUCH_NAME:
                    self._resolved[(name, port)] = set()  # no gateway task at all right now: the DNS says so
                # else a failed lookup (a DNS timeout) is no news: the addresses known stay, their checks decide
                logger.debug("cannot resolve %s: %s", name, exc)
            addresses |= self._resolved.get((name, port), set())
        known = {(g.host, g.port): g for g in self.gateways}
        for address in set(known) - addresses:
            self._leave(known.pop(address))
        for address in addresses & set(self.leaving):  # back in the answer (the address of a new task, or a flap)
            known[address] = self.leaving.pop(address)
        self.gateways = [known.get(a) or Gateway(*a) for a in sorted(addresses)]
        await asyncio.gather(
            *(self._check_one(g) for g in self.gateways), *(self._check_leaving(g) for g in list(self.leaving.values()))
        )
        self._update_ready()

    def _leave(self, gateway: Gateway) -> None:
        """``gateway`` left the name's answer: no new call goes to it (its idle connections are closed, so none is
        reused, even if its address comes back as another task's); the calls in flight there go on."""
        gateway.ready, gateway.serving_until, gateway.problem = False, 0.0, "no longer in the name's answer"
        self.upstream.drop_idle(gateway.host, gateway.port)
        self.leaving[(gateway.host, gateway.port)] = gateway
        inflight = max(gateway.inflight, self.upstream.active(gateway.host, gateway.port))
        logger.info("gateway %s:%s left the name's answer: no new call goes to it, %d in flight finish there",
                    gateway.host, gateway.port, inflight)  # fmt: skip

    async def _check_leaving(self, gateway: Gateway) -> None:
        """Forget a gateway that left once it has no call in flight; cut its calls when nothing answers there."""
        host, port = gateway.host, gateway.port
        inflight = max(gateway.inflight, self.upstream.active(host, port))
        if inflight and await reachable(host, port, _CHECK_TIMEOUT_S):
            return  # it still runs (it answers, or its kernel refuses: a process that died there reset its calls)
        if self.leaving.get((host, port)) is not gateway:
            return  # came back into the answer meanwhile
        del self.leaving[(host, port)]
        if inflight:
            logger.info("gateway %s:%s is gone: its %d calls in flight fail", host, port, inflight)
        self.upstream.abort(host, port)

    async def _check_one(self, gateway: Gateway) -> None:
        try:
            answer = await self.upstream.request(
                gateway.host, gateway.port, "GET", b"/readyz", [], b"", _CHECK_TIMEOUT_S
            )
            if answer.stream is not None:
                answer.stream.close()
            ready, problem = answer.status == 200, f"/readyz answered {answer.status}"
            gateway.serving_until = _serving_until(answer.headers) if not ready else 0.0
        except (UpstreamError, TimeoutError) as exc:
            ready, problem = False, str(exc) or "/readyz did not answer in time"
            gateway.serving_until = 0.0
        if ready != gateway.ready:
            logger.info("gateway %s:%s is %s", gateway.host, gateway.port, "ready" if ready else f"out: {problem}")
        if not ready:  # a stopping gateway closes its idle connections when it stops: use none of them again
            self.upstream.drop_idle(gateway.host, gateway.port)
        gateway.ready, gateway.problem = ready, "" if ready else problem

    def _update_ready(self) -> None:
        if any(g.ready for g in self.gateways):
            self._ready.set()
        else:
            self._ready.clear()

    async def watch(self) -> None:
        """Check the gateways every interval, for as long as the edge runs."""
        while True:
            started = time.monotonic()
            try:
                await self.check()
            except Exception:  # a failed round must not end the checks: the next one tries again
                logger.exception("checking the gateways failed")
            await asyncio.sleep(max(0.0, self.config.check_interval_s - (time.monotonic() - started)))

    async def _gateway(self, avoid: list[Gateway], deadline: float) -> Gateway | None:
        """A ready gateway, waiting (until ``deadline``) while there is none."""
        while True:
            self._turn += 1
            now = time.monotonic()
            chosen = pick(self.gateways, self._turn, avoid, now) or pick(self.gateways, self._turn, now=now)
            if chosen is not None:
                return chosen
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), min(left, self.config.check_interval_s))

    # --- requests --------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] in OWN_PATHS and scope["method"] in ("GET", "HEAD"):
            await self._own_health(send)
            return
        try:
            body = await read_body(scope, receive, self.config.max_body_bytes, self.budget)
        except StokerError as exc:
            await send_error(send, exc.status, str(exc), ((b"retry-after", b"1"),) if exc.status == 503 else ())
            return
        try:
            response = await self._forward(scope, bytes(body))
        finally:
            self.budget.give(len(body))
        del body
        if isinstance(response, tuple):
            status, message = response
            await send_error(send, status, message, ((b"retry-after", b"1"),) if status == 503 else ())
            return
        await self._answer(receive, send, response)

    async def _own_health(self, send: Send) -> None:
        ready = [g for g in self.gateways if g.ready]
        status, body = (200, b"OK") if ready else (503, error_body("no gateway is ready"))
        headers = [(b"content-type", b"text/plain" if ready else b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _forward(self, scope: Scope, body: bytes) -> UpstreamResponse | tuple[int, str]:
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        target = raw_path + b"?" + scope["query_string"] if scope["query_string"] else raw_path
        headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        deadline = time.monotonic() + self.config.hold_s
        tried: list[Gateway] = []
        while True:
            gateway = await self._gateway(tried, deadline)
            if gateway is None:
                return 503, f"no gateway became ready within {self.config.hold_s:g}s"
            gateway.inflight += 1
            try:
                return await self.upstream.request(
                    gateway.host, gateway.port, method, target, headers, body, self.config.upstream_timeout_s
                )
            except UpstreamError as exc:
                resent = sum(1 for g in tried if g.ready)  # sent=True failures (refusals unready their gateway)
                if not may_resend(method, exc.sent) or time.monotonic() > deadline or resent >= _RESENDS:
                    logger.info("%s %s: 502, not sent again (%s)", method, gateway.host, exc)
                    return 502, f"the gateway broke the connection: {exc}"
                if not exc.sent:  # refused or closed: out until its next check says otherwise
                    gateway.ready, gateway.serving_until = False, 0.0
                    self._update_ready()
                tried.append(gateway)
                logger.info("%s %s: sent again (%s)", method, gateway.host, exc)
            except TimeoutError:
                return 504, "the gateway did not answer in time"
            except StokerError as exc:  # a request that cannot be written safely (gateway.wire): nothing was sent
                return exc.status, f"cannot forward this request: {exc}"
            finally:
                gateway.inflight -= 1

    async def _answer(self, receive: Receive, send: Send, response: UpstreamResponse) -> None:
        headers = [(k, v) for k, v in response.headers if k not in _DROP_RESPONSE]
        stream = response.stream
        if stream is None:
            headers.append((b"content-length", str(len(response.body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
            return
        if response.length is not None:
            headers.append((b"content-length", str(response.length).encode()))
        gone = asyncio.ensure_future(receive())  # finishes when the client disconnects
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            while not gone.done():
                part = await stream.read(self.config.upstream_timeout_s)
                if not part:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                await send({"type": "http.response.body", "body": part, "more_body": True})
        finally:  # an answer the gateway breaks off is broken off to the client (raised: uvicorn closes)
            gone.cancel()
            stream.close()


async def reachable(host: str, port: int, timeout: float) -> bool:
    """Whether anything answers at ``host:port`` within ``timeout``: a connection accepted, or refused (the host's
    kernel answers), rather than nothing at all (the container and its address are gone)."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:  # TimeoutError is one, with no errno
        return exc.errno == errno.ECONNREFUSED
    writer.close()
    return True


def _serving_until(headers: list[tuple[bytes, bytes]]) -> float:
    """When to stop sending to a stopping gateway, from the seconds its ``/readyz`` says it serves on, less a margin:
    nothing is written to it near the moment it closes its connections."""
    for name, value in headers:
        if name == STOPS_IN:
            try:
                left = float(value)
            except ValueError:
                return 0.0
            return time.monotonic() + left - _STOP_MARGIN_S if 0 < left < 3600 else 0.0
    return 0.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (the edge's handlers only set flags)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(config: EdgeConfig, ready: asyncio.Event | None = None) -> None:
    limits = edgelimits.resolve(config.header_timeout_s, config.max_header_bytes, config.max_connections)
    edge = Edge(config)
    server = _Server(
        uvicorn.Config(
            edge,
            host=config.host,
            port=config.port,
            lifespan="off",
            http=CoalescingHttpToolsProtocol.with_limits(limits),
            loop="none",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            log_level="warning",
            timeout_graceful_shutdown=int(config.drain_timeout_s),
            timeout_keep_alive=120,
            backlog=2048,
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.handle_exit, sig, None)
    watcher = asyncio.create_task(edge.watch())
    try:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"stoker: edge on {config.host}:{config.port}, gateways at {config.upstream}", flush=True)
        if ready is not None:
            ready.set()
        await serving
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        edge.upstream.close()


def run_edge(config: EdgeConfig) -> int:
    """Run until SIGINT/SIGTERM; return the exit code."""
    logconfig.configure("text")
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config))
    return 0
