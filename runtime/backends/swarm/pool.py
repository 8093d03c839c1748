"""The warm pool on Swarm: generic replicas as one-task services that any gateway claims to bridge a cold start.

Swarm owns the containers, so the pool lives in the swarm, not in a process: each generic replica is a service of
one task (:func:`runtime.backends.swarm.config.pool_service_spec`) labelled ``com.stoker.pool=generic``, with a
Docker secret of its own holding its key, :func:`runtime.backends.pool.replica_key` of the platform key and its name.
Every gateway sees them in its poll of the platform's services.

- **Claim** (:meth:`SwarmPool.claim`, in the gateway that scales a function up): relabel one generic service as
  ``claimed`` for the function and its version, through a service update carrying the version index the gateway
  read. Swarm refuses an update made against a stale index ("update out of sequence"), so when two gateways reach
  for the same replica exactly one wins and the other tries the next. Labels of the service, not of its task
  template, change: the task keeps running. The claimer then POSTs the function's signed code and variables to the
  task (:func:`runtime.backends.pool.specialise`) and routes to it at once; other gateways route to it once it answers
  ``/_/ready``.
- **Bridge**: the function's own service is scaled as always; the claimed replica serves only until the service's
  own tasks are ready (:func:`retire_reason`), then it is retired: scaled to zero (its delayed stop lets every
  gateway see it leave before it drains) and kept an hour, so the function's logs still hold the calls it served.
- **Tend** (:meth:`SwarmPool.tend`, once a tick by the one process that autoscales): remove generic replicas that
  died, start new ones up to the pool size (backing off from 2 s to 2 min while they keep dying, say on a node
  that lacks the runtime image), retire bridges, remove key secrets whose service is gone.

Only functions whose code is a config (:mod:`runtime.backends.swarm.code`) and that need nothing a generic replica
lacks take pool replicas (:func:`poolable`): no secrets, no placement constraints, no process override, the pool's
limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.backends import pool
from runtime.backends.containers import FUNCTION, NAMESPACE, POOL, VERSION, function_memory, memory_bytes
from runtime.backends.swarm.code import created_at
from runtime.backends.swarm.config import (
    PLATFORM,
    POOL_CLAIMED,
    POOL_GENERIC,
    POOL_RETIRED,
    SwarmSettings,
    pool_service_spec,
)
from runtime.backends.swarm.tasks import Candidate
from stoker.spec import FunctionDeployment

logger = logging.getLogger(__name__)

SPECIALISE_TIMEOUT_S = 30.0
START_GRACE_S = 120.0  # a generic replica with no running task this long after its creation is replaced
GONE_GRACE_S = 10.0  # a claimed replica whose task is not running this long is removed
RETIRED_KEEP_S = 3600.0  # a retired bridge's service (0 tasks) is kept this long for its logs
RETRY_FIRST_S, RETRY_MAX_S = 2.0, 120.0  # backoff of refills after generic replicas died


def poolable(dep: FunctionDeployment, settings: SwarmSettings) -> bool:
    """Whether a generic replica can become this function: nothing it needs is fixed when a task starts."""
    memory = dep.limits.get("memory") or settings.docker.memory
    return (
        not dep.secrets
        and not dep.envProcess
        and dep.read_only_root  # a generic replica's root is read-only
        and not dep.constraints
        and not dep.limits.get("cpu")
        and not dep.requests
        and function_memory(memory, "limits.memory") == memory_bytes(settings.docker.memory, "STOKER_DOCKER_MEMORY")
    )


def retire_reason(
    *, exists: bool, replicas: int, current: bool, own_ready: int, running: bool, age_s: float
) -> str:  # fmt: skip
    """Why a claimed pool replica (a bridge) should go now, or "" to keep it (pure).

    ``exists``: its function is still deployed; ``replicas``: the function's desired count; ``current``: it serves
    the function's current version; ``own_ready``: ready tasks of the function's own service at its version;
    ``running``: its task runs; ``age_s``: since it was claimed."""
    if not exists:
        return "its function was removed"
    if replicas == 0:
        return "its function scaled to zero"
    if not running and age_s > GONE_GRACE_S:
        return "its task is not running"
    if not current:  # gateways stopped routing to it when they saw the new version
        return "the function was updated"
    if own_ready >= replicas:
        return f"the function's own {own_ready} replica(s) are ready"
    return ""


def role(service: dict[str, Any]) -> str:
    """``generic``, ``claimed``, ``retired``, or "" for a service that is not a pool replica."""
    return str((service.get("Spec", {}).get("Labels") or {}).get(POOL, ""))


def serves(service: dict[str, Any], name: str, namespace: str) -> bool:
    """Whether a pool replica's service was claimed for this function (it may be retired since)."""
    labels = service.get("Spec", {}).get("Labels") or {}
    return role(service) in (POOL_CLAIMED, POOL_RETIRED) and (labels.get(FUNCTION), labels.get(NAMESPACE)) == (
        name,
        namespace,
    )


def updated_at(service: dict[str, Any]) -> float:
    """When a service's spec last changed (a pool replica's claim, its retirement), epoch seconds."""
    return created_at({"CreatedAt": service.get("UpdatedAt") or service.get("CreatedAt")})


@dataclass(frozen=True)
class Claimed:
    """A pool replica a gateway claimed and specialised."""

    service: str  # its service's name
    candidate: Candidate


class SwarmPool:
    """Claims and tends the generic replicas of one platform (see the module docstring)."""

    def __init__(self, api: Any, settings: SwarmSettings, platform_key: bytes, image: Callable[[], str]) -> None:
        self.api = api
        self.settings = settings
        self.key = platform_key
        self.image = image  # the runtime image's reference (may build it the first time: called in a thread)
        self.taken: set[str] = set()  # services this process claimed or saw claimed since its last poll
        self.failures = 0  # rounds in a row in which generic replicas died
        self.resume_at = 0.0  # no new generic replica before this (epoch seconds): backoff after deaths

    async def claim(
        self, generic: list[tuple[dict[str, Any], Candidate]], dep: FunctionDeployment, version: str,
        env: dict[str, str], code: bytes,
    ) -> Claimed | None:  # fmt: skip
        """Claim one of ``generic`` (services with their running task) for ``dep`` at ``version``, specialise it,
        and return it; None when none could be claimed and specialised."""
        import docker.errors

        choices = [(s, c) for s, c in generic if s["ID"] not in self.taken]
        random.shuffle(choices)  # gateways claiming at once mostly reach for different replicas
        for service, cand in choices:
            self.taken.add(service["ID"])
            spec = service["Spec"]
            labels = {
                **(spec.get("Labels") or {}),
                POOL: POOL_CLAIMED,
                FUNCTION: dep.service,
                NAMESPACE: dep.namespace,
                VERSION: version,
            }
            try:
                await asyncio.to_thread(
                    self.api.update_service, service["ID"], service["Version"]["Index"],
                    labels=labels, fetch_current_spec=True,
                )  # fmt: skip
            except docker.errors.APIError as exc:  # taken by another gateway (out of sequence), or gone
                if "out of sequence" in str(exc) or isinstance(exc, docker.errors.NotFound):
                    continue
                raise
            key = pool.replica_key(self.key, spec["Name"])
            problem = await pool.specialise(cand.host, cand.port, key, env, code, SPECIALISE_TIMEOUT_S)
            if not problem:
                return Claimed(spec["Name"], cand)
            name = spec["Name"]
            logger.warning(
                "warm pool: pool replica %s could not become %s: %s; removing it", name, dep.service, problem
            )
            await asyncio.to_thread(self._remove, service["ID"])
        return None

    async def tend(
        self, services: list[dict[str, Any]], running: dict[str, list[Candidate]], failed: set[str],
        verdict: Callable[[dict[str, Any], bool], str], has_function: Callable[[dict[str, Any]], bool],
        size: int, now: float,
    ) -> None:  # fmt: skip
        """One round of upkeep. ``services``: the platform's services as just read; ``running``: their running
        tasks by service ID; ``failed``: services with a failed task; ``verdict(service, running)``: why a claimed
        replica should go ("" to keep it, from :func:`retire_reason`); ``has_function(service)``: whether the
        function a pool replica served is still deployed; ``now``: epoch seconds."""
        generic, died = [], 0
        for service in services:
            kind, sid = role(service), service["ID"]
            if kind == POOL_GENERIC:
                alive = bool(running.get(sid)) or now - created_at(service) < START_GRACE_S
                if sid in failed or not alive:
                    died += 1
                    await asyncio.to_thread(self._remove, sid)
                else:
                    generic.append(service)
            elif kind == POOL_CLAIMED:
                reason = verdict(service, bool(running.get(sid)))
                if reason:
                    await asyncio.to_thread(self._retire, service)
            elif kind == POOL_RETIRED and (now - updated_at(service) > RETIRED_KEEP_S or not has_function(service)):
                await asyncio.to_thread(self._remove, sid)
        if died:  # a node without the runtime image, or a replica that cannot start: back off, do not churn
            self.failures += 1
            self.resume_at = now + min(RETRY_FIRST_S * 2 ** (self.failures - 1), RETRY_MAX_S)
            logger.warning("warm pool: %d pool replica(s) died; starting new ones in %gs", died, self.resume_at - now)
        elif generic and all(running.get(s["ID"]) for s in generic):
            self.failures = 0
        for _ in range(size - len(generic) if now >= self.resume_at else 0):
            await asyncio.to_thread(self._start_one)
        for extra in sorted(generic, key=created_at)[size:]:  # two tenders at a leader change, or a smaller size
            await asyncio.to_thread(self._remove, extra["ID"])
        await asyncio.to_thread(self._forget_keys, {s["Spec"]["Name"] for s in services}, now)

    def _start_one(self) -> None:
        """A new generic replica: its key secret, then its service (both named ``<platform>-pool-<hex>``)."""
        name = f"{self.settings.platform}-pool-{secrets.token_hex(5)}"
        labels = {PLATFORM: self.settings.platform, POOL: "key"}
        secret = self.api.create_secret(name, pool.replica_key(self.key, name), labels=labels)
        ref = {"SecretID": secret["ID"], "SecretName": name}
        try:
            self.api.create_service(**pool_service_spec(self.settings, name, self.image(), ref))
        except BaseException:
            with contextlib.suppress(Exception):
                self.api.remove_secret(secret["ID"])
            raise

    def _retire(self, service: dict[str, Any]) -> None:
        """Stop a bridge: its task goes (delayed stop, then drain, like any scale-down) but the service stays, so
        ``stoker logs`` still shows the calls it served, for ``RETIRED_KEEP_S`` or until its function goes."""
        import docker.errors

        labels = {**(service["Spec"].get("Labels") or {}), POOL: POOL_RETIRED}
        with contextlib.suppress(docker.errors.APIError):  # changed or gone meanwhile: the next round looks again
            self.api.update_service(
                service["ID"], service["Version"]["Index"], labels=labels,
                mode={"Replicated": {"Replicas": 0}}, fetch_current_spec=True,
            )  # fmt: skip

    def _forget_keys(self, services: set[str], now: float) -> None:
        """Remove key secrets whose replica's service is gone (older than a minute: not one being created)."""
        found = self.api.secrets(filters={"label": [f"{PLATFORM}={self.settings.platform}", f"{POOL}=key"]})
        for secret in found:
            name = secret.get("Spec", {}).get("Name", "")
            if name not in services and now - created_at(secret) > 60:
                with contextlib.suppress(Exception):
                    self.api.remove_secret(secret["ID"])

    def _remove(self, service_id: str) -> None:
        with contextlib.suppress(Exception):
            self.api.remove_service(service_id)
