"""``/system/secrets`` on Swarm: each function secret is a Docker secret (encrypted in the managers' Raft log).

Docker secrets cannot be changed, so a secret has versions: ``<platform>-s-<digest of namespace/name>-<n>``, labelled
with the platform, namespace, name and version. An update creates the next version and moves every service that
uses the secret onto it (a rolling update of those functions, as Kubernetes rotates mounted Secrets), then removes
the old version. A function reads the newest version as ``/var/openfaas/secrets/<name>`` (see
:func:`runtime.backends.swarm.config.service_spec`). Values never touch the gateway's disk or environment.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
from typing import Any

from runtime.backends.secrets import check_secret
from runtime.backends.swarm.config import PLATFORM
from stoker.errors import Conflict, NotFound

SECRET = "com.stoker.secret"
SECRET_NAMESPACE = "com.stoker.secret-namespace"
SECRET_VERSION = "com.stoker.secret-version"


class SwarmSecretStore:
    """A :class:`runtime.backends.secrets.SecretStore` over the Docker secrets of one platform."""

    def __init__(self, api: Any, platform: str) -> None:
        self.api = api  # docker.APIClient
        self.platform = platform

    def _versions(self, name: str | None, namespace: str) -> list[dict[str, Any]]:
        """The Docker secrets of ``name`` (every name when None) in ``namespace``, oldest version first."""
        wanted = [f"{PLATFORM}={self.platform}", f"{SECRET_NAMESPACE}={namespace}"]
        if name is not None:
            wanted.append(f"{SECRET}={name}")
        found = self.api.secrets(filters={"label": wanted})
        return sorted(found, key=lambda s: int(s["Spec"]["Labels"].get(SECRET_VERSION, "0")))

    def newest(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The reference (``SecretID``, ``SecretName``) a service uses for the current value, or None."""
        versions = self._versions(name, namespace)
        if not versions:
            return None
        return {"SecretID": versions[-1]["ID"], "SecretName": versions[-1]["Spec"]["Name"]}

    def names(self, namespace: str) -> list[str]:
        return sorted({s["Spec"]["Labels"][SECRET] for s in self._versions(None, namespace)})

    def set(self, name: str, namespace: str, value: bytes, create: bool) -> None:
        check_secret(name, value)
        versions = self._versions(name, namespace)
        if create and versions:
            raise Conflict(f"secret {name!r} already exists in {namespace!r}; use PUT to update it")
        if not create and not versions:
            raise NotFound(f"secret {name!r} not found in namespace {namespace!r}")
        number = int(versions[-1]["Spec"]["Labels"][SECRET_VERSION]) + 1 if versions else 1
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
        labels = {PLATFORM: self.platform, SECRET: name, SECRET_NAMESPACE: namespace, SECRET_VERSION: str(number)}
        created = self.api.create_secret(f"{self.platform}-s-{digest}-{number}", value, labels=labels)
        new_ref = {"SecretID": created["ID"], "SecretName": f"{self.platform}-s-{digest}-{number}"}
        old_ids = {s["ID"] for s in versions}
        if old_ids:
            self._rotate(old_ids, new_ref)
            for old in versions:
                self._remove_quietly(old["ID"])

    def _rotate(self, old_ids: builtins.set[str], new_ref: dict[str, Any]) -> None:
        """Move every service that mounts one of ``old_ids`` onto ``new_ref`` (a rolling update each)."""
        for service in self.api.services(filters={"label": f"{PLATFORM}={self.platform}"}):
            spec = service["Spec"]
            refs = spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
            if not any(r.get("SecretID") in old_ids for r in refs):
                continue
            spec["TaskTemplate"]["ContainerSpec"]["Secrets"] = [
                {**r, **new_ref} if r.get("SecretID") in old_ids else r for r in refs
            ]
            self.api.update_service(
                service["ID"],
                service["Version"]["Index"],
                task_template=spec["TaskTemplate"],
                name=spec["Name"],
                labels=spec.get("Labels"),
                mode=spec.get("Mode"),
                update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"),
                endpoint_spec=spec.get("EndpointSpec"),
            )

    def _remove_quietly(self, secret_id: str) -> None:
        """Remove an old version; one still mounted by a task being replaced stays until the next rotation."""
        # In use until the rolling update replaced the task: cleaned up by a later set or delete.
        with contextlib.suppress(Exception):
            self.api.remove_secret(secret_id)

    def delete(self, name: str, namespace: str) -> None:
        check_secret(name)
        versions = self._versions(name, namespace)
        if not versions:
            raise NotFound(f"secret {name!r} not found in namespace {namespace!r}")
        import docker.errors

        for old in reversed(versions):
            try:
                self.api.remove_secret(old["ID"])
            except docker.errors.APIError as exc:
                if "in use" in str(exc):
                    raise Conflict(
                        f"secret {name!r} is used by a function in {namespace!r}; remove or redeploy it first"
                    ) from None
                raise

    def missing(self, names: list[str], namespace: str) -> list[str]:
        if not names:
            return []
        existing = set(self.names(namespace))
        return [n for n in names if n not in existing]
