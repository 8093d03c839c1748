"""Leader election for ``stoker controller``: only one controller acts at a time, a standby takes over when it dies.

Two electors with one interface (:class:`Elector`), each called once per tick with the wall-clock time:

- :class:`RedisLock` (local, Docker, Swarm): ``SET key holder NX PX ttl`` to take the lock, a compare-and-expire
  script to renew it, a compare-and-delete to give it up on a clean stop.
- :class:`KubeLease` (Kubernetes): a ``coordination.k8s.io/v1`` Lease, read, created or replaced with its
  ``resourceVersion`` (a conflict means another controller won). :func:`lease_action` decides, purely.

Either way a leader that could not renew for a whole TTL stops acting on its own, before anybody else may start.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import redis.asyncio as aioredis

LOCK_KEY = "stoker:controller:leader"

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Elector(Protocol):
    holder: str

    async def tick(self, now: float) -> bool:
        """Take or renew leadership; True while this process may act (``now``: wall-clock seconds)."""
        ...

    async def release(self) -> None:
        """Give leadership up (a clean stop), so a standby need not wait for the TTL."""
        ...


class RedisLock:
    """Leadership as a Redis key holding the leader's id, expiring after ``ttl_s`` unless renewed."""

    def __init__(self, redis_url: str, holder: str, ttl_s: float, key: str = LOCK_KEY) -> None:
        self.redis: Any = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.holder = holder
        self.ttl_s = ttl_s
        self.key = key
        self._valid_until = 0.0  # leader until then, counted from when the last renewal was sent

    async def tick(self, now: float) -> bool:
        ttl_ms = int(self.ttl_s * 1000)
        try:
            if now < self._valid_until and await self.redis.eval(_RENEW, 1, self.key, self.holder, ttl_ms):
                self._valid_until = now + self.ttl_s
                return True
            if await self.redis.set(self.key, self.holder, nx=True, px=ttl_ms):
                self._valid_until = now + self.ttl_s
                return True
            self._valid_until = 0.0
            return False
        except Exception:  # Redis unreachable: lead on only while the last renewal holds
            return now < self._valid_until

    async def release(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.eval(_RELEASE, 1, self.key, self.holder)
        self._valid_until = 0.0

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()


class LeaseAction(StrEnum):
    CREATE = "create"  # no Lease yet
    RENEW = "renew"  # ours: bump renewTime
    TAKE = "take"  # someone else's and expired (or released): become its holder
    WAIT = "wait"  # someone else's and current


@dataclass(frozen=True)
class LeaseView:
    holder: str
    renewed: float  # renewTime, epoch seconds
    duration_s: float  # leaseDurationSeconds
    transitions: int = 0


def lease_action(lease: LeaseView | None, me: str, now: float) -> LeaseAction:
    """What a controller should do with the Lease as it reads it now. Pure."""
    if lease is None:
        return LeaseAction.CREATE
    if lease.holder == me:
        return LeaseAction.RENEW
    if not lease.holder or now >= lease.renewed + lease.duration_s:
        return LeaseAction.TAKE
    return LeaseAction.WAIT


def _micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if not value:
        return 0.0
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class KubeLease:
    """Leadership as a ``coordination.k8s.io/v1`` Lease (what client-go's leaderelection does, in short).

    ``api`` is a ``kubernetes.client.CoordinationV1Api``; the RBAC it needs is get, create and update on leases
    in ``namespace`` (stoker/install/kubernetes.py, Role ``<install>-controller-lease``).
    """

    def __init__(self, api: Any, to_dict: Any, name: str, namespace: str, holder: str, ttl_s: float) -> None:
        self.api = api
        self.to_dict = to_dict
        self.name = name
        self.namespace = namespace
        self.holder = holder
        self.ttl_s = ttl_s
        self._valid_until = 0.0

    async def tick(self, now: float) -> bool:
        try:
            won = await asyncio.to_thread(self._tick, now)
        except Exception:  # the API server unreachable: lead on only while the last renewal holds
            return now < self._valid_until
        self._valid_until = now + self.ttl_s if won else 0.0
        return won

    def _tick(self, now: float) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            current: dict[str, Any] | None = self.to_dict(self.api.read_namespaced_lease(self.name, self.namespace))
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
        spec = (current or {}).get("spec") or {}
        view = None
        if current is not None:
            view = LeaseView(
                spec.get("holderIdentity") or "",
                _epoch(spec.get("renewTime")),
                float(spec.get("leaseDurationSeconds") or self.ttl_s),
                int(spec.get("leaseTransitions") or 0),
            )
        action = lease_action(view, self.holder, now)
        if action is LeaseAction.WAIT:
            return False
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": max(1, round(self.ttl_s)),
                "renewTime": _micro_time(now),
                "acquireTime": spec.get("acquireTime") if action is LeaseAction.RENEW else _micro_time(now),
                "leaseTransitions": (view.transitions if view else 0) + (action is LeaseAction.TAKE),
            },
        }
        try:
            if action is LeaseAction.CREATE:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                assert current is not None
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # another controller wrote first
                return False
            raise
        return True

    async def release(self) -> None:
        """Clear the holder so a standby takes over on its next tick (as client-go's ReleaseOnCancel)."""
        if self._valid_until == 0.0:
            return
        self._valid_until = 0.0
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._release)

    def _release(self) -> None:
        current = self.to_dict(self.api.read_namespaced_lease(self.name, self.namespace))
        if (current.get("spec") or {}).get("holderIdentity") != self.holder:
            return
        current["spec"]["holderIdentity"] = ""
        self.api.replace_namespaced_lease(self.name, self.namespace, current)

    async def close(self) -> None:
        return None
