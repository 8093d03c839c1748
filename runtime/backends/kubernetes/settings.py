"""``STOKER_K8S_*`` settings of the Kubernetes backend beyond the namespace and deploy timeout (which are in
:class:`stoker.config.Config`): the runtime image source deploys and the warm pool run on, and the pool's resources.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
        values: dict[str, Any] = {}
        image = environ.get("STOKER_K8S_RUNTIME_IMAGE", "").strip()
        if image:
            if not _IMAGE.match(image):
                raise ConfigError(f"STOKER_K8S_RUNTIME_IMAGE: {image!r} is not an image reference")
            values["runtime_image"] = image
        for name in ("pool_memory", "pool_cpu"):
            var = f"STOKER_K8S_{name.upper()}"
            raw = environ.get(var, "").strip()
            if raw:
                if not _QUANTITY.match(raw):
                    raise ConfigError(f"{var}: {raw!r} is not a Kubernetes quantity (examples: 256Mi, 500m)")
                values[name] = raw
        return cls(**values)

    def pool_resources(self) -> dict[str, dict[str, str]]:
        """The pool pods' container resources, in the form :func:`k8s_objects.resources` gives a function's."""
        limits = {k: v for k, v in (("memory", self.pool_memory), ("cpu", self.pool_cpu)) if v}
        return {"limits": limits} if limits else {}
