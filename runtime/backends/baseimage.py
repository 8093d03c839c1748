"""The runtime base image as a container backend uses it: found (or built, the first time) once per process.

Whoever needs it first builds it: the start of the platform (:meth:`RuntimeImage.prepare`), the warm pool, or a
deploy. :func:`builder.base.ensure_base_image` lets one build run at a time on the machine; the others wait and show
its progress. A deploy streams what it sees to the CLI (``builder.stream.build_output``, set by the gateway for the
deploy it streams); the start writes it to the platform's log, so ``stoker up`` shows it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from builder.base import ensure_base_image
from builder.stream import Output, build_output

logger = logging.getLogger(__name__)


class RuntimeImage:
    """The reference of the base image named ``name`` (a repository, or a pinned ``name:tag``) on ``client``."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name
        self._ref = ""

    def ref(self, out: Output | None = None) -> str:
        """The image's reference, built first when missing; call it off the event loop. Progress goes to ``out``,
        by default to the deploy being streamed in this context, if any."""
        if not self._ref:
            self._ref = ensure_base_image(self.client, self.name, out=out or build_output.get()).ref
        return self._ref

    def prepare(self) -> None:
        """Make sure the image exists, in a thread of its own, its progress in the log; the platform serves
        meanwhile (deploys that need the image wait for this build and stream its progress). A daemon thread: a
        platform stopped mid-build does not wait minutes for it (the next build cleans up what it leaves)."""
        threading.Thread(target=self._prepare, name="base image", daemon=True).start()

    def _prepare(self) -> None:
        try:
            self.ref(out=_log)
        except Exception as exc:  # the engine or the build failed: deploys that need the image try again and say why
            logger.warning("the base image %s could not be made now: %s", self.name, str(exc)[:500])


def _log(line: str) -> None:
    logger.info("base image: %s", line)
