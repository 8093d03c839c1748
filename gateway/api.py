"""The management API under ``/system/``, with OpenFaaS paths and JSON field names."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import platform
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from builder.stream import build_output
from events.schedule import deployment_problem as schedule_problem
from events.service import check_streams
from gateway import history, secret_rules
from gateway.auth import AUTH_KEY
from gateway.history_store import HistoryStore, Recorder
from gateway.jsonbody import json_limits, parse, read_body, read_json
from gateway.metrics import Metrics
from gateway.namespaces import NamespaceAPI
from gateway.removals import Removals
from gateway.resources import resource
from runtime.backends.base import Backend, FunctionRecord, LogLine
from runtime.backends.memory_floor import floor_note
from runtime.backends.root_fs import read_only_root, root_note
from stoker import __version__
from stoker.buildinfo import build_info
from stoker.bundle import check as check_bundle
from stoker.config import Config
from stoker.errors import Conflict, InvalidRequest, NotFound, StokerError
from stoker.names import DEFAULT_NAMESPACE, InvalidName, validate_name
from stoker.spec import FunctionDeployment, FunctionStatus, check_values, parse_duration, text_field

NDJSON = "application/x-ndjson"
HEARTBEAT_S = 10.0
# Makes a deployment's queue subscriptions live (events.service.QueueService.subscribe); raises QueueUnavailable.
Subscribe = Callable[[FunctionDeployment], Awaitable[None]]


async def _no_queue(dep: FunctionDeployment) -> None:
    return None


async def _progress(deploy: Coroutine[Any, Any, None]) -> AsyncIterator[bytes]:
    """A deploy asked for with ``Accept: application/x-ndjson``: its build progress as it happens, one
    ``{"log": line}`` per line, then ``{"status": 202}`` or ``{"status": <code>, "error": message}`` (the answer the
    plain request would have had). A blank line every ``HEARTBEAT_S`` of silence keeps proxies and clients from
    timing out during a long step. A client that goes away does not stop the deploy."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def out(line: str) -> None:  # called from the build's thread
        loop.call_soon_threadsafe(lines.put_nowait, line)

    async def run() -> dict[str, Any]:
        build_output.set(out)  # this task's own context: only this deploy's build writes here
        try:
            await deploy
            return {"status": 202}
        except StokerError as exc:
            return {"status": exc.status, "error": str(exc)}
        finally:
            loop.call_soon_threadsafe(lines.put_nowait, None)  # after every line the build sent

    task = asyncio.create_task(run())
    while True:
        try:
            line = await asyncio.wait_for(lines.get(), HEARTBEAT_S)
        except TimeoutError:
            yield b"\n"
            continue
        if line is None:
            break
        yield json.dumps({"log": line}).encode() + b"\n"
    yield json.dumps(await task).encode() + b"\n"


def check_schedule(dep: FunctionDeployment) -> None:
    """Refuse what the queue cannot use: a cron schedule that does not parse or never fires (``com.stoker.schedule``,
    or ``topic: cron-function``), a ``com.stoker.queue.stream`` naming one of stoker's own streams.

    Checked where deployments come in, not in :mod:`stoker.spec`: that module is imported by every replica, whose
    image has neither :mod:`events` nor croniter, and by backends restoring stored functions, which must not lose a
    function to a stricter check later."""
    problem = schedule_problem(dep.labels, dep.annotations)
    if problem:
        raise InvalidRequest(problem)
    check_streams(dep)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _object(body: Any, expected: str) -> dict[str, Any]:
    """A JSON object body (read with ``empty={}``); anything else is refused saying what was expected."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body must be a JSON object {expected}")
    return body


def _from_body_or_query(body: dict[str, Any], request: Request, key: str) -> str:
    """A field that may come in the body or the query; the body wins, but a query value is checked either way (a
    bad one is 400 even when the body makes it moot)."""
    queried = request.query_params.get(key) or ""
    if queried:
        try:
            validate_name(queried, "namespace" if key == "namespace" else "function")
        except InvalidName as exc:
            raise InvalidRequest(f"{key} (query): {exc}") from None
    return text_field(body, key) or queried


def _name(value: str, what: str) -> str:
    try:
        return validate_name(value, what)
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None


def _namespace(value: Any) -> str:
    return validate_name(value or DEFAULT_NAMESPACE, "namespace")


class ManagementAPI:
    def __init__(
        self,
        config: Config,
        backend: Backend,
        metrics: Metrics,
        history: HistoryStore,
        subscribe: Subscribe = _no_queue,
    ) -> None:
        self.config = config
        self.backend = backend
        self.metrics = metrics
        self.recorder = Recorder(history)
        self.subscribe = subscribe
        self._deploy_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # A removal holds the deploy lock until done: a deploy of the same name waits for it (gateway/removals.py).
        self.closing = asyncio.Event()  # set when the platform stops: followed logs end then
        self.removals = Removals(backend, self._deploy_locks, lambda name, ns: metrics.forget(f"{name}.{ns}"))
        self.limits = json_limits(config)
        self.namespace_api = NamespaceAPI(backend, self.limits)
        # A deployment may carry a base64 bundle (4/3 of its size) besides what every body may have.
        self.deploy_limits = replace(self.limits, body_bytes=config.max_bundle_bytes * 4 // 3 + config.max_json_bytes)
        build = build_info()  # now, at startup: it reads files and may run git
        self._version = {"release": __version__, "sha": build.sha, "commit_message": build.commit_message}

    def routes(self) -> list[Route]:
        return [
            resource(
                "/system/functions", GET=self.list_functions, POST=self.create, PUT=self.update, DELETE=self.delete
            ),
            resource("/system/function/{name}", GET=self.get_function),
            resource("/system/function/{name}/history", GET=self.get_history),
            resource("/system/scale-function/{name}", POST=self.scale),
            resource("/system/info", GET=self.info),
            resource("/system/logs", GET=self.logs),
            resource("/system/namespaces", GET=self.namespaces),
            *self.namespace_api.routes(),
            resource(
                "/system/secrets",
                GET=self.list_secrets,
                POST=self.create_secret,
                PUT=self.update_secret,
                DELETE=self.delete_secret,
            ),
        ]

    # --- helpers -------------------------------------------------------------------------------------------
    def status(self, record: FunctionRecord) -> dict[str, Any]:
        dep = record.deployment
        return FunctionStatus(
            name=dep.service,
            namespace=dep.namespace,
            image=dep.image or f"source:{dep.service}",
            replicas=record.replicas,
            availableReplicas=record.available,
            invocationCount=self.metrics.invocation_count(f"{dep.service}.{dep.namespace}"),
            createdAt=_iso(record.created_at),
            envProcess=dep.envProcess,
            envVars=dep.envVars,
            labels=dep.labels,
            annotations=dep.annotations,
            secrets=dep.secrets,
            constraints=dep.constraints,
            limits=dep.limits,
            requests=dep.requests,
            readOnlyRootFilesystem=read_only_root(dep, self.backend.name),
            message="; ".join(
                m for m in (record.message, floor_note(dep, self.backend.name), root_note(dep, self.backend.name)) if m
            ),
        ).to_json()

    def _record(self, name: str, namespace: str) -> FunctionRecord:
        record = self.backend.get(name, namespace)
        if record is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        return record

    # --- functions -----------------------------------------------------------------------------------------
    async def list_functions(self, request: Request) -> Response:
        namespace = _namespace(request.query_params.get("namespace"))
        return JSONResponse([self.status(r) for r in self.backend.functions(namespace)])

    async def get_function(self, request: Request) -> Response:
        name = request.path_params["name"]
        namespace = _namespace(request.query_params.get("namespace"))
        return JSONResponse(self.status(self._record(name, namespace)))

    async def create(self, request: Request) -> Response:
        return await self._deploy(request, create=True)

    async def update(self, request: Request) -> Response:
        return await self._deploy(request, create=False)

    async def _deploy(self, request: Request, create: bool) -> Response:
        raw = await read_body(request, self.deploy_limits.body_bytes)
        # Parsing, decoding and checking a bundle take time in proportion to its size and member count: in a
        # thread, so that calls to every other function go on meanwhile.
        dep, bundle = await asyncio.to_thread(self._parse_deployment, raw)
        via = str(request.scope.get(AUTH_KEY, ""))
        if NDJSON in request.headers.get("accept", ""):
            return StreamingResponse(_progress(self._apply(dep, bundle, create, via)), media_type=NDJSON)
        await self._apply(dep, bundle, create, via)
        return Response(status_code=202)

    def _parse_deployment(self, raw: bytes) -> tuple[FunctionDeployment, bytes | None]:
        """A deployment body: the deployment (its source taken out) and its checked bundle, if it has one."""
        dep = FunctionDeployment.from_json(parse(raw, self.deploy_limits))
        check_values(dep)
        check_schedule(dep)
        if not dep.source:
            return dep, None
        try:
            bundle = base64.b64decode(dep.source, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("source is not valid base64") from None
        check_bundle(bundle, self.config.max_bundle_bytes, max_files=self.config.max_bundle_files)
        return FunctionDeployment(**{**dep.to_json(), "source": ""}), bundle

    async def _apply(self, dep: FunctionDeployment, bundle: bytes | None, create: bool, via: str = "") -> None:
        key = (dep.service, dep.namespace)
        lock = self._deploy_locks.setdefault(key, asyncio.Lock())
        action = history.Action.DEPLOY if create else history.Action.UPDATE
        async with lock:  # one deploy per function at a time; the check below is then race-free
            before = self.backend.get(dep.service, dep.namespace)
            if not create and before is None:
                raise NotFound(f"function {dep.service!r} not found in namespace {dep.namespace!r}")
            code = history.code_of(dep, bundle)
            old_code = await self.recorder.last_code(before.deployment) if before is not None else ""
            change = history.changes(before.deployment if before else None, dep, old_code, code)
            try:
                if create and before is not None:
                    raise Conflict(f"function {dep.service!r} already exists in {dep.namespace!r}; use PUT to update")
                # Before the answer (and before the deploy: a 503 here deploys nothing): every message published to
                # the function's streams once the deploy is answered is delivered, though its worker starts a moment
                # later.
                await self.subscribe(dep)
                await self.backend.deploy(dep, bundle)
            except StokerError as exc:
                await self.recorder.note(action, dep.service, dep.namespace, via, exc.status, str(exc), code, change)
                raise
            except Exception as exc:
                await self.recorder.note(
                    action, dep.service, dep.namespace, via, 500, f"{type(exc).__name__}: {exc}", code
                )
                raise
            await self.recorder.note(action, dep.service, dep.namespace, via, 202, "", code, change)

    async def get_history(self, request: Request) -> Response:
        name = _name(request.path_params["name"], "function")
        namespace = _namespace(request.query_params.get("namespace"))
        entries = await self.recorder.store.entries(name, namespace)
        if not entries and self.backend.get(name, namespace) is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r} and has no history")
        return JSONResponse({"name": name, "namespace": namespace, "entries": entries})

    async def delete(self, request: Request) -> Response:
        body = _object(await read_json(request, self.limits, {}), "with functionName")
        name = _from_body_or_query(body, request, "functionName")
        namespace = _namespace(_from_body_or_query(body, request, "namespace"))
        validate_name(name)
        assert isinstance(name, str)
        via = str(request.scope.get(AUTH_KEY, ""))
        try:
            await self.removals.remove(name, namespace)  # once it gets no traffic; its replicas drain after
        except NotFound:
            raise
        except StokerError as exc:
            await self.recorder.note(history.Action.REMOVE, name, namespace, via, exc.status, str(exc))
            raise
        await self.recorder.note(history.Action.REMOVE, name, namespace, via, 202)
        return Response(status_code=202)

    async def scale(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = _object(await read_json(request, self.limits, {}), "with replicas")
        text_field(body, "serviceName")  # OpenFaaS clients send it; the path names the function
        namespace = _namespace(_from_body_or_query(body, request, "namespace"))
        replicas = body.get("replicas")
        if isinstance(replicas, float) and replicas.is_integer():
            replicas = int(replicas)  # 3.0 is a JSON integer as much as 3 is
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise InvalidRequest(f"replicas must be a whole number >= 0, got {replicas!r}")
        record = self._record(name, namespace)
        settings = record.deployment.settings
        via = str(request.scope.get(AUTH_KEY, ""))
        change = [f"replicas: {record.replicas} -> {replicas}"]
        if replicas > settings.max_replicas:
            problem = f"replicas {replicas} is over the function's maximum ({settings.max_replicas})"
            await self.recorder.note(history.Action.SCALE, name, namespace, via, 400, problem, change=change)
            raise InvalidRequest(problem)
        try:
            await self.backend.scale(name, namespace, replicas)
        except StokerError as exc:
            await self.recorder.note(history.Action.SCALE, name, namespace, via, exc.status, str(exc), change=change)
            raise
        await self.recorder.note(history.Action.SCALE, name, namespace, via, 202, change=change)
        return Response(status_code=202)

    # --- secrets (values are write-only: listing shows names) ----------------------------------------------
    async def list_secrets(self, request: Request) -> Response:
        namespace = _namespace(request.query_params.get("namespace"))
        return JSONResponse([{"name": n, "namespace": namespace} for n in self.backend.secrets.names(namespace)])

    async def create_secret(self, request: Request) -> Response:
        name, namespace, value = await self._secret_body(request, with_value=True)
        secret_rules.check_value(name, value)
        self.backend.secrets.set(name, namespace, value, create=True)
        return Response(status_code=201)

    async def update_secret(self, request: Request) -> Response:
        name, namespace, value = await self._secret_body(request, with_value=True)
        secret_rules.check_value(name, value)
        self.backend.secrets.set(name, namespace, value, create=False)
        return Response(status_code=200)

    async def delete_secret(self, request: Request) -> Response:
        name, namespace, _ = await self._secret_body(request, with_value=False)
        force = secret_rules.truthy(request.query_params.get("force"))
        if name in self.backend.secrets.names(namespace):  # else the backend's own 404
            using = secret_rules.users(self.backend.functions(namespace), name)
            secret_rules.check_delete(name, namespace, using, force)
        self.backend.secrets.delete(name, namespace)
        return Response(status_code=200)

    async def _secret_body(self, request: Request, with_value: bool) -> tuple[str, str, bytes]:
        """OpenFaaS's Secret: ``{name, namespace, value}`` or ``rawValue`` (base64) for binary values."""
        body = _object(await read_json(request, self.limits, {}), "with name and value")
        name = body.get("name")
        validate_name(name, "secret")
        assert isinstance(name, str)
        namespace = _namespace(_from_body_or_query(body, request, "namespace"))
        value = b""
        if with_value:
            raw, text = text_field(body, "rawValue"), text_field(body, "value")
            if raw:
                try:
                    value = base64.b64decode(raw, validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidRequest("rawValue is not valid base64") from None
            elif body.get("value") is not None:
                value = text.encode()
            else:
                raise InvalidRequest(f"secret {name!r}: give a value (text) or rawValue (base64)")
        return name, namespace, value

    # --- platform ------------------------------------------------------------------------------------------
    async def info(self, request: Request) -> Response:
        return JSONResponse(
            {
                "provider": {
                    "provider": "stoker",
                    "orchestration": self.backend.name,
                    "version": self._version,
                },
                "version": self._version,
                "arch": platform.machine(),
                # The SDK refuses to deploy from another Python minor version (cloudpickle is not portable across
                # them). Known only where replicas run this interpreter: the local backend's default.
                "python": platform.python_version() if self.backend.name == "local" and not self.config.python else "",
            }
        )

    async def namespaces(self, request: Request) -> Response:
        return JSONResponse(await self.namespace_api.names())

    async def logs(self, request: Request) -> Response:
        q = request.query_params
        name = q.get("name", "")
        validate_name(name)
        namespace = _namespace(q.get("namespace"))
        tail = _int_param(q.get("tail"), "tail")
        since = _since(q.get("since"))
        follow = _bool_param(q.get("follow"), "follow")
        self._record(name, namespace)

        # Server-sent events (what a browser's EventSource asks for: the console's live log): the same objects, one
        # per ``data:`` line.
        sse = "text/event-stream" in request.headers.get("accept", "")

        async def lines() -> AsyncIterator[bytes]:
            source = self.backend.logs(name, namespace, tail, since, follow)
            async for line in _until_set(source, self.closing) if follow else source:
                item = {
                    "name": line.name,
                    "namespace": line.namespace,
                    "instance": line.instance,
                    "timestamp": _iso(line.timestamp),
                    "text": line.text,
                }
                data = json.dumps(item).encode()
                yield b"data: " + data + b"\n\n" if sse else data + b"\n"

        if sse:
            return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
        return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _until_set(source: AsyncIterator[LogLine], closing: asyncio.Event) -> AsyncIterator[LogLine]:
    """``source``'s items until ``closing`` is set: a followed log ends when the platform stops, instead of holding
    the shutdown for the whole drain timeout (it is not work in flight)."""
    stop = asyncio.ensure_future(closing.wait())
    try:
        while True:
            item = asyncio.ensure_future(anext(source))
            await asyncio.wait((item, stop), return_when=asyncio.FIRST_COMPLETED)
            if not item.done():
                item.cancel()
                return
            try:
                yield item.result()
            except StopAsyncIteration:
                return
    finally:
        stop.cancel()


_WHOLE = re.compile(r"-?[0-9]{1,19}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?", re.A
)
_DURATION = re.compile(r"[0-9]+(\.[0-9]+)?(ms|s|m|h)?")


def _int_param(value: str | None, what: str) -> int | None:
    """A whole number (ASCII digits, 64 bits); a negative one means no limit (None)."""
    if value in (None, ""):
        return None
    assert value is not None
    if not _WHOLE.fullmatch(value) or not -(2**63) <= int(value) < 2**63:
        raise InvalidRequest(f"{what}: {value!r} is not a whole number (64 bits)")
    n = int(value)
    return None if n < 0 else n


def _bool_param(value: str | None, what: str) -> bool:
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise InvalidRequest(f"{what}: {value!r} is neither true nor false")


def _since(value: str | None) -> float | None:
    """RFC 3339 time (as OpenFaaS sends it; without an offset, UTC) or a duration back from now (``5m``)."""
    if not value:
        return None
    if _RFC3339.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(f"since: {value!r} is not a valid time") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if _DURATION.fullmatch(value):
        try:
            return time.time() - parse_duration(value, "since")
        except StokerError as exc:
            raise InvalidRequest(str(exc)) from None
    raise InvalidRequest(f"since: {value!r} is neither an RFC 3339 time nor a duration (such as 5m)")
