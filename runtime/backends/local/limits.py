"""What a local replica process starts with: a memory limit, death with the platform.

``limits.memory`` becomes the replica's ``RLIMIT_DATA``: its heap, anonymous memory and thread stacks together
(Linux counts every private writable mapping). Past it, an allocation fails: Python raises ``MemoryError`` in the
handler (the call answers 500 and the replica keeps serving); code that cannot handle a failed allocation may crash,
and its replica is restarted. Why not ``RLIMIT_AS``: glibc reserves 64 MiB of address space per thread for its
malloc arenas, so a threaded replica runs out of address space with most of its limit unused. Why not a cgroup: few
platforms may create one (cgroup v2 delegation); this works for any user on any Linux. Each process has its own limit
(a subprocess of the handler gets one of the same size), and thread stacks count in full, so under a limit the
replica gives its handler threads 1 MiB stacks instead of 8 MiB (:func:`runtime.replica.threads.fit_stacks_to_limit`).

The runtime itself needs about 60 MiB of it, so a limit under :data:`MIN_MEMORY` is raised to it (as OpenFaaS accepts
any limit; the status message says so: :mod:`runtime.backends.memory_floor`).
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import signal
from collections.abc import Callable

from runtime.backends.memory_floor import LOCAL_MIN_MEMORY
from runtime.backends.quantities import memory_size
from stoker.errors import InvalidRequest
from stoker.spec import FunctionDeployment

MIB = 1024 * 1024
MIN_MEMORY = LOCAL_MIN_MEMORY
MAX_MEMORY = 2**62  # far above any machine; the kernel's limit is a 64-bit number
_PR_SET_PDEATHSIG = 1


def memory_limit(dep: FunctionDeployment) -> int | None:
    """The byte limit of ``dep``'s replicas (at least :data:`MIN_MEMORY`), None when it sets none; InvalidRequest
    when it is not a memory size or larger than any machine."""
    raw = dep.limits.get("memory")
    if not raw:
        return None
    value = memory_size(raw, "limits.memory")
    if value > MAX_MEMORY:
        raise InvalidRequest(f"limits.memory: {raw!r} is larger than any machine")
    return max(value, MIN_MEMORY)


def limit_memory(pid: int, limit: int) -> None:
    """Put an already running process (a generic replica of the warm pool) under ``limit``."""
    resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))


def child_setup(memory: int | None) -> Callable[[], None]:
    """What runs in the child between fork and exec: die with the platform; the memory limit, if any."""

    def setup() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))

    return setup
