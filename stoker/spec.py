"""Wire types of the management API (OpenFaaS field names) and the settings stoker reads from them.

A :class:`FunctionDeployment` is what ``POST/PUT /system/functions`` carries; :class:`FunctionStatus` is what
``GET /system/functions`` answers. ``source`` is stoker's own addition: a base64 code bundle (see
:mod:`stoker.bundle`) for backends that run source rather than images.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from stoker.errors import InvalidRequest
from stoker.names import DEFAULT_NAMESPACE, validate_name

# Labels and annotations read by stoker (OpenFaaS names first, then stoker's own).
SCALE_MIN = "com.openfaas.scale.min"
SCALE_MAX = "com.openfaas.scale.max"
SCALE_TARGET = "com.openfaas.scale.target"
SCALE_TYPE = "com.openfaas.scale.type"
SCALE_ZERO = "com.openfaas.scale.zero"
SCALE_ZERO_DURATION = "com.openfaas.scale.zero-duration"
TIMEOUT = "com.stoker.timeout"
CONCURRENCY = "com.stoker.concurrency"
ENTRYPOINT = "com.stoker.entrypoint"
FUNCTION_LABEL = "faas_function"  # added to status labels, as OpenFaaS's providers do

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_ENTRYPOINT = "handler:handle"
DEFAULT_MAX_REPLICAS = 20
DEFAULT_SCALE_TARGET = 10  # in-flight requests per replica (capacity) or requests per second per replica (rps)
DEFAULT_ZERO_DURATION_S = 900.0  # 15 minutes without traffic before scaling to zero, as OpenFaaS
# OpenFaaS CE scales a function up while it gets more than 5 requests per second: a function that carries OpenFaaS's
# bounds (scale.min / scale.max) but no scale.type or scale.target scales like that here (docs/autoscaling.md).
OPENFAAS_CE_RPS_TARGET = 5
SCALE_TYPES = ("capacity", "rps")  # capacity: in-flight requests (Knative's concurrency); rps: requests per second
# Stored deployments (labels, annotations, state files) carry this key from format 2 on. Before it, a deployment
# that did not say readOnlyRootFilesystem was stored as false like one that said false: :meth:`from_stored` reads
# such a false as not given (read-only), which is how those functions have always run.
STORED_FORMAT = "storedFormat"
STORED_FORMAT_VERSION = 2
_ENTRYPOINT_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(value: str | float | int, what: str) -> float:
    """Seconds from ``"10s"``, ``"250ms"``, ``"2m"``, ``"1h"`` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value).strip())
        if not m:
            raise InvalidRequest(f"{what}: {value!r} is not a duration (examples: 30, 30s, 500ms, 2m)")
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    if seconds <= 0:
        raise InvalidRequest(f"{what}: must be greater than zero, got {value!r}")
    return seconds


def text_field(body: dict[str, Any], key: str) -> str:
    """An optional string field of a JSON object (absent or null: empty); InvalidRequest for any other type."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string, got {type(value).__name__}")
    return value


def _texts(body: dict[str, Any], key: str) -> list[str]:
    """An optional list of strings (absent or null: empty)."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"{key} must be a list of strings")
    return value


def _text_map(body: dict[str, Any], key: str) -> dict[str, str]:
    """An optional object of strings (absent or null: empty), like OpenFaaS's ``map[string]string``."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest(f"{key} must be an object of strings")
    return value


def check_values(dep: FunctionDeployment) -> None:
    """Refuse values no backend can run: a NUL character anywhere, an environment variable name that is empty or
    holds ``=``. Checked where deployments come in (the API, stack files), not in :meth:`FunctionDeployment.from_json`,
    which also reads stored deployments: those must not be lost to a check added later."""
    if any(not name or "=" in name for name in dep.envVars):
        bad = next(name for name in dep.envVars if not name or "=" in name)
        raise InvalidRequest(f"envVars: {bad!r} is not an environment variable name (empty, or holds '=')")
    texts = [dep.image, dep.envProcess, *dep.constraints]
    for table in (dep.envVars, dep.labels, dep.annotations, dep.limits, dep.requests):
        texts += [*table, *table.values()]
    if any("\x00" in text for text in texts):
        raise InvalidRequest(f"function {dep.service!r}: a field of the deployment holds a NUL character")


def _int_setting(values: dict[str, str], key: str, default: int, minimum: int) -> int:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        n = int(raw)
    except ValueError:
        raise InvalidRequest(f"{key}: {raw!r} is not a whole number") from None
    if n < minimum:
        raise InvalidRequest(f"{key}: must be at least {minimum}, got {n}")
    return n


@dataclass(frozen=True)
class FunctionDeployment:
    """One function as deployed through the management API."""

    service: str
    namespace: str = DEFAULT_NAMESPACE
    image: str = ""
    envProcess: str = ""
    envVars: dict[str, str] = field(default_factory=dict)
    constraints: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    # None: not given, and the root filesystem is read-only (stoker's hardening); True: read-only; False: writable
    # (on the container backends; see read_only_root).
    readOnlyRootFilesystem: bool | None = None
    source: str = ""  # base64 code bundle (stoker's own field)

    @classmethod
    def from_json(cls, body: Any, require_code: bool = True) -> FunctionDeployment:
        """Validate a decoded JSON body; raise :class:`InvalidRequest` naming the bad field.

        ``require_code``: the body must carry an image or a source bundle (false when reading stored state, where
        the bundle is kept apart)."""
        if not isinstance(body, dict):
            raise InvalidRequest("the deployment must be a JSON object")
        service = validate_name(body.get("service"))
        namespace = validate_name(text_field(body, "namespace") or DEFAULT_NAMESPACE, "namespace")
        secrets = [validate_name(s, "secret") for s in _texts(body, "secrets")]
        read_only = body.get("readOnlyRootFilesystem")
        if read_only is not None and not isinstance(read_only, bool):
            raise InvalidRequest("readOnlyRootFilesystem must be true or false")
        dep = cls(
            service=service,
            namespace=namespace,
            image=text_field(body, "image"),
            envProcess=text_field(body, "envProcess"),
            envVars=_text_map(body, "envVars"),
            constraints=_texts(body, "constraints"),
            secrets=secrets,
            labels=_text_map(body, "labels"),
            annotations=_text_map(body, "annotations"),
            limits=_text_map(body, "limits"),
            requests=_text_map(body, "requests"),
            readOnlyRootFilesystem=read_only,
            source=text_field(body, "source"),
        )
        if require_code and not dep.image and not dep.source:
            raise InvalidRequest(f"function {service!r}: give an image or a source bundle")
        dep.settings  # noqa: B018 -- validates the stoker and scaling labels now, not at first use
        return dep

    @classmethod
    def from_stored(cls, data: Any) -> FunctionDeployment:
        """A deployment as a backend stored it (:meth:`to_stored`), migrating older formats: before format 2 an
        absent ``readOnlyRootFilesystem`` was saved as false, so a stored false without the format key is read as
        absent (a read-only root, as those functions always ran); only a false saved since means writable."""
        legacy = isinstance(data, dict) and data.get(STORED_FORMAT) != STORED_FORMAT_VERSION
        if legacy and data.get("readOnlyRootFilesystem") is False:
            data = {**data, "readOnlyRootFilesystem": None}
        return cls.from_json(data, require_code=False)

    def to_json(self, with_source: bool = True) -> dict[str, Any]:
        data = {f: getattr(self, f) for f in self.__dataclass_fields__}
        if not with_source:
            data.pop("source")
        return data

    def to_stored(self) -> dict[str, Any]:
        """What a backend keeps of the deployment (no source), read back with :meth:`from_stored`."""
        return {**self.to_json(with_source=False), STORED_FORMAT: STORED_FORMAT_VERSION}

    @property
    def read_only_root(self) -> bool:
        """Whether replicas get a read-only root filesystem: unless the deployment says false explicitly."""
        return self.readOnlyRootFilesystem is not False

    @cached_property
    def settings(self) -> FunctionSettings:
        """Settings read from labels and annotations (computed once; the invoke path reads them per call)."""
        return FunctionSettings.from_deployment(self)


@dataclass(frozen=True)
class FunctionSettings:
    """The settings stoker reads from a deployment's labels and annotations (annotations win)."""

    min_replicas: int
    max_replicas: int
    timeout_s: float
    concurrency: int  # per-replica in-flight limit; 0 means unlimited
    entrypoint: str
    scale_target: int = DEFAULT_SCALE_TARGET  # per replica, in the unit of scale_type
    scale_type: str = "capacity"
    scale_to_zero: bool = False  # com.openfaas.scale.zero=true, or min 0
    zero_duration_s: float = DEFAULT_ZERO_DURATION_S  # idle time before scaling to zero
    openfaas_ce: bool = False  # OpenFaaS bounds, no type or target: scaled on throughput, as OpenFaaS CE does

    @classmethod
    def from_deployment(cls, dep: FunctionDeployment) -> FunctionSettings:
        values = {**dep.labels, **dep.annotations}
        min_replicas = _int_setting(values, SCALE_MIN, 1, 0)
        max_replicas = _int_setting(values, SCALE_MAX, DEFAULT_MAX_REPLICAS, 1)
        if max_replicas < min_replicas:
            raise InvalidRequest(f"{SCALE_MAX} ({max_replicas}) is below {SCALE_MIN} ({min_replicas})")
        timeout = values.get(TIMEOUT) or dep.envVars.get("exec_timeout")
        entrypoint = values.get(ENTRYPOINT) or DEFAULT_ENTRYPOINT
        if not _ENTRYPOINT_RE.match(entrypoint):
            raise InvalidRequest(f"{ENTRYPOINT}: {entrypoint!r} is not of the form module:function")
        openfaas_ce = not (values.get(SCALE_TYPE) or values.get(SCALE_TARGET)) and bool(
            values.get(SCALE_MIN) or values.get(SCALE_MAX)
        )
        scale_type = (values.get(SCALE_TYPE) or ("rps" if openfaas_ce else "capacity")).strip().lower()
        if scale_type not in SCALE_TYPES:
            raise InvalidRequest(f"{SCALE_TYPE}: {scale_type!r} is not one of {', '.join(SCALE_TYPES)}")
        zero = (values.get(SCALE_ZERO) or "").strip().lower()
        if zero not in ("", "true", "false"):
            raise InvalidRequest(f"{SCALE_ZERO}: {values[SCALE_ZERO]!r} is not true or false")
        zero_duration = values.get(SCALE_ZERO_DURATION)
        return cls(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            timeout_s=parse_duration(timeout, TIMEOUT) if timeout else DEFAULT_TIMEOUT_S,
            concurrency=_int_setting(values, CONCURRENCY, 0, 0),
            entrypoint=entrypoint,
            scale_target=_int_setting(
                values, SCALE_TARGET, OPENFAAS_CE_RPS_TARGET if openfaas_ce else DEFAULT_SCALE_TARGET, 1
            ),
            scale_type=scale_type,
            scale_to_zero=zero == "true" or min_replicas == 0,
            zero_duration_s=(
                parse_duration(zero_duration, SCALE_ZERO_DURATION) if zero_duration else DEFAULT_ZERO_DURATION_S
            ),
            openfaas_ce=openfaas_ce,
        )


@dataclass
class FunctionStatus:
    """``GET /system/functions`` item: the deployment without its source, plus live figures."""

    name: str
    namespace: str
    image: str
    replicas: int
    availableReplicas: int
    invocationCount: int
    createdAt: str
    envProcess: str = ""
    envVars: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    limits: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    readOnlyRootFilesystem: bool = True  # what the replicas run with, not merely what was asked
    message: str = ""  # why replicas are missing (crash loop, last error), empty when healthy

    def to_json(self) -> dict[str, Any]:
        """OpenFaaS's shape: ``envVars``, ``constraints``, ``limits`` and ``requests`` are left out when empty (the
        ``omitempty`` of faas-provider's ``FunctionStatus``), so a client comparing what it deployed with what it
        reads back sees no empty blocks it never sent; ``labels`` carry ``faas_function`` (the function's name), as
        OpenFaaS's providers add it."""
        data = asdict(self)
        for key in _OMITTED_WHEN_EMPTY:
            if not data[key]:
                del data[key]
        data["labels"] = {**data["labels"], FUNCTION_LABEL: self.name}
        return data


_OMITTED_WHEN_EMPTY = ("envVars", "constraints", "limits", "requests")
