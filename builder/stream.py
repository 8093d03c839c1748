"""Running one image build through the Docker Engine API and turning its output into progress or an error."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from builder.pip import BuildFailed

Output = Callable[[str], None]
_STEP_RE = re.compile(r"^Step \d+/\d+ : ")
_NOISE_RE = re.compile(r"^\s*(---> Running in|Removing intermediate container)")  # kept in the log, not shown


def quiet(_: str) -> None:
    """An output that drops build progress (the backend's builds; the CLI streams it to the terminal)."""


#: Where a backend's build of a source deploy sends its progress: dropped, unless the deploy request asked to see it
#: (the gateway sets this for the deploy it streams, :mod:`gateway.api`). A context variable, so concurrent deploys
#: each stream their own build, and threads started with ``asyncio.to_thread`` inherit it.
build_output: ContextVar[Output] = ContextVar("build_output", default=quiet)


def run_build(
    client: Any, context: bytes, tag: str, out: Output, nocache: bool = False, labels: dict[str, str] | None = None
) -> str:
    """Build ``context`` as ``tag``; stream progress lines to ``out``; return the image id.

    A failing step raises :class:`BuildFailed` with that step and the tail of the build log. Intermediate
    containers are always removed, so a failed build leaves nothing behind but cached layers."""
    import docker.errors

    step, log = "prepare the build", []
    image_id = ""
    try:
        chunks = client.api.build(
            fileobj=io.BytesIO(context),
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            nocache=nocache,
            decode=True,
            labels=labels or {},
        )
        for chunk in chunks:
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("errorDetail") or {}
                log.append(str(detail.get("message") or chunk.get("error") or "").strip())
                raise BuildFailed(step, log)
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = str(chunk["aux"]["ID"])
            text = str(chunk.get("stream") or chunk.get("status") or "")
            for line in text.splitlines():
                if not line.strip():
                    continue
                if _STEP_RE.match(line):
                    step = _STEP_RE.sub("", line).strip()
                log.append(line)
                if not _NOISE_RE.match(line):
                    out(line)
    except docker.errors.APIError as exc:
        raise BuildFailed(step, [*log, str(exc.explanation or exc)]) from None
    if not image_id:
        image_id = str(client.images.get(tag).id)
    return image_id
