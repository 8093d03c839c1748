"""The connection to the local Docker Engine, shared by the builder and the docker backend.

Only a local unix socket is accepted: the Docker API gives root on the machine, so stoker never opens it on TCP nor
talks to a remote one (``DOCKER_HOST=tcp://...`` is refused with a clear error).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stoker.errors import BackendUnavailable, InvalidRequest

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class EngineUnavailable(BackendUnavailable):
    """The Docker Engine cannot be reached; the message says where stoker looked and what to do."""


def socket_url(environ: Mapping[str, str] = os.environ) -> str:
    """The engine's address: ``DOCKER_HOST`` when it names a unix socket, else the default socket."""
    url = environ.get("DOCKER_HOST", "").strip() or DEFAULT_SOCKET
    if not url.startswith("unix://"):
        raise InvalidRequest(
            f"DOCKER_HOST={url!r}: stoker talks to the Docker Engine through a local unix socket only "
            "(unset DOCKER_HOST or set it to unix:///path/to/docker.sock)"
        )
    return url


def connect(environ: Mapping[str, str] = os.environ, timeout: float = 120.0) -> Any:
    """A ``docker.DockerClient`` on the local socket, checked with a ping; raises :class:`EngineUnavailable`."""
    import docker
    import docker.errors

    url = socket_url(environ)
    try:
        client = docker.DockerClient(base_url=url, timeout=int(timeout))
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise EngineUnavailable(
            f"cannot reach the Docker Engine at {url} ({engine_message(exc)}); is dockerd running? "
            "Start it (for example: sudo dockerd &) or set DOCKER_HOST=unix:///path/to/docker.sock"
        ) from None
    return client


def engine_message(exc: BaseException, limit: int = 400) -> str:
    """What the Docker Engine (or the connection to it) said, in one line that is never cut mid-word: the engine's
    own explanation of an API error (not docker-py's "500 Server Error for http+docker://..." wrapper), its first
    line otherwise, and past ``limit`` characters cut at a space with "..." (a whole word is never lost in part)."""
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation.strip() else str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > 0 else limit].rstrip(" ,;:") + " ..."
