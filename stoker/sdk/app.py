"""``App`` and ``@app.function``: plain Python functions deployed as stoker functions and called from Python.

    app = App("thumbs")

    @app.function(max_replicas=20, memory="256Mi", timeout=30, requirements=["pillow"])
    def resize(data: bytes, width: int) -> bytes: ...

    app.deploy()
    resize.remote(b"...", 128)                       # one call through the gateway, msgpack both ways
    resize.spawn(b"...", 128).get(timeout=60)        # queued call, result later
    for out in resize.map(items, concurrency=32): ...   # many items per request, results in order

The gateway comes from ``STOKER_GATEWAY`` (or where ``stoker up`` recorded it in ``$STOKER_HOME``) and the credentials
from ``STOKER_ADMIN_PASSWORD`` / ``$STOKER_HOME/credentials``, as for the CLI (:mod:`stoker.client`). Each function
deploys as ``{app}-{function}`` (underscores become dashes), a source bundle built by :mod:`.packaging`; calling it
locally (``resize(...)``) runs the plain function.
"""

from __future__ import annotations

import base64
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, overload

from stoker.client import Client, GatewayError, error_text
from stoker.names import InvalidName, validate_name
from stoker.sdk import packaging, serialization
from stoker.sdk.batching import Caller, ChunkRunner, Encoded, chunks
from stoker.sdk.calls import FunctionCall
from stoker.sdk.chunking import ChunkSizer
from stoker.sdk.errors import CallFailed, DeployError
from stoker.sdk.mapping import Progress, ordered_map
from stoker.sdk.shim import TOKEN_HEADER
from stoker.sdk.transport import Transport

P = ParamSpec("P")
R = TypeVar("R")

TOKEN_ANNOTATION = "com.stoker.sdk.token"
APP_LABEL = "com.stoker.sdk.app"
_CALL_MARGIN_S = 10.0  # beyond the function's own timeout, for the gateway's queueing and the network


@dataclass(frozen=True)
class FunctionOptions:
    """How one SDK function is deployed (see :meth:`App.function`)."""

    name: str
    min_replicas: int = 1
    max_replicas: int = 20
    memory: str | None = None
    cpu: str | None = None
    timeout: float = 60.0
    concurrency: int = 0
    requirements: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()


class App:
    """A named group of functions deployed together to one gateway."""

    def __init__(
        self,
        name: str,
        gateway: str | None = None,
        namespace: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> None:
        self.name = validate_name(name, "app name")
        self.namespace = validate_name(namespace, "namespace") if namespace else None
        self.functions: dict[str, Function[..., Any]] = {}
        self._gateway, self._password, self._token = gateway, password, token
        self._client: Client | None = None
        self._transport: Transport | None = None

    def configure(self, gateway: str | None = None, namespace: str | None = None) -> None:
        """Point the app at another gateway or namespace (the CLI's ``--gateway`` and ``-n``), before first use."""
        if gateway:
            self._gateway = gateway
            self._client = self._transport = None
        if namespace:
            self.namespace = validate_name(namespace, "namespace")
            for function in self.functions.values():
                function.retarget()

    @property
    def client(self) -> Client:
        """The management client (created on first use, so defining an App needs no running gateway)."""
        if self._client is None:
            self._client = Client(self._gateway, password=self._password, token=self._token)
        return self._client

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(self.client.gateway, self.client.timeout)
        return self._transport

    @overload
    def function(self, fn: Callable[P, R]) -> Function[P, R]: ...

    @overload
    def function(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        min_replicas: int = 1,
        max_replicas: int = 20,
        memory: str | None = None,
        cpu: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 0,
        requirements: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> Callable[[Callable[P, R]], Function[P, R]]: ...

    def function(
        self,
        fn: Callable[P, R] | None = None,
        *,
        name: str | None = None,
        min_replicas: int = 1,
        max_replicas: int = 20,
        memory: str | None = None,
        cpu: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 0,
        requirements: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> Function[P, R] | Callable[[Callable[P, R]], Function[P, R]]:
        """Register ``fn`` as a function of this app (usable bare, ``@app.function``, or with options).

        ``min_replicas``/``max_replicas`` bound scaling, ``timeout`` is the exec timeout in seconds,
        ``concurrency`` the calls one replica takes at once (0: no limit), ``requirements`` pip requirements the
        runtime must have, ``env`` environment variables and ``secrets`` platform secrets for the function.
        """

        def register(f: Callable[P, R]) -> Function[P, R]:
            service = name or f"{self.name}-{f.__name__.replace('_', '-').lower()}"
            try:
                validate_name(service)
            except InvalidName as exc:
                raise ValueError(f"{exc} (give a shorter one with @app.function(name=...))") from None
            if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
                raise ValueError(
                    f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {min_replicas}, {max_replicas}"
                )
            if timeout <= 0 or concurrency < 0:
                raise ValueError("timeout must be > 0 and concurrency >= 0")
            options = FunctionOptions(
                service, min_replicas, max_replicas, memory, cpu, float(timeout), concurrency,
                tuple(requirements), dict(env or {}), tuple(secrets),
            )  # fmt: skip
            function = Function(self, f, options)
            self.functions[service] = function
            return function

        return register(fn) if fn is not None else register

    def deploy(self) -> list[str]:
        """Deploy (create or update) every function; return their names. :class:`DeployError` names the first
        function refused and why; functions before it stay deployed."""
        check_python(self.client)
        return [function.deploy(check=False) for function in self.functions.values()]

    def remove(self) -> None:
        """Remove every function of the app from the gateway (those not deployed are skipped)."""
        for function in self.functions.values():
            try:
                self.client.remove(function.name, self.namespace)
            except GatewayError as exc:
                if exc.status != 404:
                    raise DeployError(f"{function.name}: {exc.message}") from None


def check_python(client: Client) -> None:
    """Refuse to deploy when the runtime's Python minor version differs from ours (where the gateway says it)."""
    try:
        info = client.info()
    except GatewayError as exc:  # unreachable or refused: an SDKError like every other deploy failure
        raise DeployError(exc.message) from None
    problem = python_mismatch(packaging.python_version(), str(info.get("python") or ""))
    if problem:
        raise DeployError(f"{problem} (runtime at {client.gateway})")


def python_mismatch(ours: str, runtime: str) -> str | None:
    """Why code pickled by Python ``ours`` cannot run on ``runtime`` (None when it can, or ``runtime`` is unknown)."""
    if not runtime or runtime.split(".")[:2] == ours.split(".")[:2]:
        return None
    wanted = ".".join(runtime.split(".")[:2])
    return (
        f"this program runs Python {ours} but the runtime runs Python {runtime}: functions pickled by one minor "
        f"version do not load in another. Deploy from Python {wanted}"
    )


def _plain(fn: Any) -> Any:
    return fn


class Function(Generic[P, R]):
    """A deployable function. Call it to run locally; ``.remote``, ``.spawn`` and ``.map`` run it on the platform."""

    def __init__(self, app: App, fn: Callable[P, R], options: FunctionOptions) -> None:
        self.app = app
        self.fn = fn
        self.options = options
        self.name = options.name
        self.retarget()
        self._call_token: str | None = None
        functools.update_wrapper(self, fn)

    def __reduce__(self) -> tuple[Callable[[Any], Any], tuple[Any]]:
        # Pickled (as a global another remote function uses, or itself when recursive) it becomes the plain
        # function: a replica calls it in-process, and the App's client and connections stay here.
        return _plain, (self.fn,)

    def retarget(self) -> None:
        """Follow a change of the app's namespace."""
        self._path = f"/function/{self.name}" + (f".{self.app.namespace}" if self.app.namespace else "")

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, in this process."""
        return self.fn(*args, **kwargs)

    # -- deploying ----------------------------------------------------------------------------------------
    def deployment(self, token: str) -> dict[str, Any]:
        """The management API body that deploys this function (OpenFaaS fields plus the source bundle)."""
        o = self.options
        source = packaging.build_bundle(self.fn, self.name, list(o.requirements), token)
        body: dict[str, Any] = {
            "service": self.name,
            "source": base64.b64encode(source).decode(),
            "labels": {
                "com.openfaas.scale.min": str(o.min_replicas),
                "com.openfaas.scale.max": str(o.max_replicas),
                # stoker's own model, stated: bounds alone would mean OpenFaaS CE's rule (docs/autoscaling.md)
                "com.openfaas.scale.type": "capacity",
                APP_LABEL: self.app.name,
            },
            "annotations": {
                "com.stoker.timeout": f"{o.timeout:g}s",
                "com.stoker.concurrency": str(o.concurrency),
                TOKEN_ANNOTATION: token,
            },
            "envVars": dict(o.env),
            "secrets": list(o.secrets),
            "limits": {k: v for k, v in (("memory", o.memory), ("cpu", o.cpu)) if v},
        }
        if self.app.namespace:
            body["namespace"] = self.app.namespace
        return body

    def deploy(self, check: bool = True) -> str:
        """Create or update this function on the gateway; return its name."""
        if check:
            check_python(self.app.client)
        token = packaging.new_token()
        try:
            self.app.client.deploy(self.deployment(token))
        except GatewayError as exc:
            raise DeployError(f"{self.name}: {exc.message}") from None
        self._call_token = token
        return self.name

    # -- calling ------------------------------------------------------------------------------------------
    def remote(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function on the platform and return its result (or raise its exception)."""
        body, pickled = serialization.encode_call(args, kwargs)
        return self._caller().one(body, pickled)  # type: ignore[no-any-return]

    def spawn(self, *args: P.args, **kwargs: P.kwargs) -> FunctionCall:
        """Queue a call (``/async-function/``) and return at once; ``.get()`` waits for the result."""
        body, headers = self._request(args, kwargs)
        try:
            reply = self.app.client.invoke(
                self.name, body, headers=headers, namespace=self.app.namespace, asynchronous=True
            )
        except GatewayError as exc:
            raise CallFailed(f"{self.name}: {exc.message}", exc.status, retryable=exc.status == 0) from None
        if reply.status != 202 or not reply.headers.get("x-call-id"):
            raise CallFailed(
                f"{self.name}: the gateway did not queue the call ({reply.status}: "
                f"{error_text(reply.body, reply.status)})",
                reply.status,
            )
        return FunctionCall(self.app.client, self.name, reply.headers["x-call-id"])

    def map(
        self,
        *iterables: Iterable[Any],
        concurrency: int = 32,
        retries: int = 3,
        progress: bool = False,
        return_exceptions: bool = False,
        kwargs: Mapping[str, Any] | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """``remote(*args)`` for each tuple of ``zip(*iterables)``, results in input order, streamed.

        Items travel in chunks, many per request: ``chunksize`` items each, or by default as many as keep the
        per-request overhead small given the measured time per item (one item for slow functions). ``concurrency``
        chunks run at once; a chunk that failed on the way (replica died, none ready, no answer) is sent again up
        to ``retries`` times; ``progress`` draws a bar on stderr; with ``return_exceptions`` a remote exception is
        yielded in its item's place instead of raised; ``kwargs`` go to every call.
        """
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        sizes = [len(it) for it in iterables if isinstance(it, Sized)]
        total = min(sizes) if len(sizes) == len(iterables) else None
        return self._map(zip(*iterables, strict=False), total, concurrency, retries, progress, return_exceptions,
                         kwargs, chunksize)  # fmt: skip

    def starmap(
        self,
        iterable: Iterable[Iterable[Any]],
        concurrency: int = 32,
        retries: int = 3,
        progress: bool = False,
        return_exceptions: bool = False,
        kwargs: Mapping[str, Any] | None = None,
        chunksize: int | None = None,
    ) -> Iterator[Any]:
        """``remote(*args)`` for each ``args`` of ``iterable`` (as :func:`itertools.starmap`); otherwise as
        :meth:`map`."""
        total = len(iterable) if isinstance(iterable, Sized) else None
        return self._map(iterable, total, concurrency, retries, progress, return_exceptions, kwargs, chunksize)

    def _map(
        self,
        items: Iterable[Iterable[Any]],
        total: int | None,
        concurrency: int,
        retries: int,
        progress: bool,
        return_exceptions: bool,
        kwargs: Mapping[str, Any] | None,
        chunksize: int | None,
    ) -> Iterator[Any]:
        if concurrency < 1 or retries < 0:
            raise ValueError(f"need concurrency >= 1 and retries >= 0, got {concurrency}, {retries}")
        if chunksize is not None and not 1 <= chunksize <= serialization.MAX_BATCH_ITEMS:
            raise ValueError(f"chunksize must be between 1 and {serialization.MAX_BATCH_ITEMS}, got {chunksize}")
        extra = dict(kwargs or {})
        sizer = ChunkSizer(concurrency, self.options.timeout, fixed=chunksize)
        lock = threading.Lock()
        # chunksize=1 sends each item as .remote() does (no batch body): also the way to call an older runtime
        runner = ChunkRunner(self._caller(), sizer, lock, retries, batched=chunksize != 1)
        encode: Callable[[Iterable[Any]], Encoded] = lambda args: serialization.encode_call(tuple(args), extra)  # noqa: E731
        return ordered_map(
            runner.run,
            chunks(items, encode, sizer, lock, total),
            concurrency,
            return_exceptions,
            Progress(self.name, total) if progress else None,
            probe=chunksize is None,
        )

    def _caller(self) -> Caller:
        timeout_s = self.options.timeout + _CALL_MARGIN_S
        return Caller(self.name, self._path, self.app.transport, self.app.client.gateway, timeout_s, self._token)

    def _request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body, pickled = serialization.encode_call(args, kwargs)
        headers = {"Content-Type": serialization.MSGPACK, "Accept": serialization.MSGPACK}
        if pickled:
            headers[TOKEN_HEADER] = self._token()
        return body, headers

    def _token(self) -> str:
        """The function's call token: from our own deploy, else from its annotations (needs credentials)."""
        if self._call_token is None:
            try:
                status = self.app.client.get_function(self.name, self.app.namespace)
            except GatewayError as exc:
                raise CallFailed(f"{self.name}: {exc.message}", exc.status) from None
            token = (status.get("annotations") or {}).get(TOKEN_ANNOTATION)
            if not token:
                raise CallFailed(f"{self.name} was not deployed by the stoker SDK: it cannot take pickled arguments")
            self._call_token = str(token)
        return self._call_token


__all__ = ["App", "Function", "FunctionOptions", "check_python"]
