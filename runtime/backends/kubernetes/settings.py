"""``STOKER_K8S_*`` settings of the Kubernetes backend beyond the namespace and deploy timeout (which are in
:class:`stoker.config.Config`): the runtime image source deploys and the warm pool run on, and the pool's resources.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from stoker.envsettings import from_environ
from stoker.errors import ConfigError

DEFAULT_RUNTIME_IMAGE = "stoker/runtime:latest"  # what `stoker base-image` tags; push it and pin a tag in production
_QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


@dataclass(frozen=True)
class KubeSettings:
    """The runtime image (``STOKER_K8S_RUNTIME_IMAGE``) runs source deploys (their code comes from a ConfigMap) and
    the warm pool's generic pods; ``STOKER_K8S_POOL_MEMORY`` / ``STOKER_K8S_POOL_CPU`` are the pool pods' limits
    (none by default), and only a function with exactly those limits (and no requests) can take a pool pod."""

    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    pool_memory: str = ""
    pool_cpu: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> KubeSettings:
        settings = cls(**from_environ(cls, environ, "STOKER_K8S_"))
        if not _IMAGE.match(settings.runtime_image):
            raise ConfigError(f"STOKER_K8S_RUNTIME_IMAGE: {settings.runtime_image!r} is not an image reference")
        for name in ("pool_memory", "pool_cpu"):
            raw = getattr(settings, name)
            if raw and not _QUANTITY.match(raw):
                raise ConfigError(
                    f"STOKER_K8S_{name.upper()}: {raw!r} is not a Kubernetes quantity (examples: 256Mi, 500m)"
                )
        return settings

    def pool_resources(self) -> dict[str, dict[str, str]]:
        """The pool pods' container resources, in the form :func:`k8s_objects.resources` gives a function's."""
        limits = {k: v for k, v in (("memory", self.pool_memory), ("cpu", self.pool_cpu)) if v}
        return {"limits": limits} if limits else {}
