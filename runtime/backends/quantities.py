"""Resource quantities as deployments write them, shared by every backend that enforces ``limits``."""

from __future__ import annotations

import re

from stoker.errors import InvalidRequest

_MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k|m|g|t|b|B)?$")
_UNITS = {None: 1, "b": 1, "B": 1, "K": 1000, "k": 1000, "M": 1000**2, "m": 1000**2, "G": 1000**3, "g": 1000**3}
_UNITS |= {"T": 1000**4, "t": 1000**4, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def memory_size(value: str, what: str) -> int:
    """Bytes from Kubernetes/OpenFaaS quantities (``128Mi``, ``1G``) or Docker's (``512m``, ``1g``)."""
    m = _MEMORY_RE.match(str(value).strip())
    if not m:
        raise InvalidRequest(f"{what}: {value!r} is not a memory size (examples: 128Mi, 512M, 1Gi)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])
