"""Keeping one Kubernetes collection in sync: list it, then watch from the list's resourceVersion; relist when the
watch expires (410 Gone) or breaks.

The official client is synchronous, so each watch runs in its own daemon thread and hands every change to the event
loop with ``call_soon_threadsafe``: the backend's state is only ever touched from the loop, never locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Obj = dict[str, Any]

WATCH_TIMEOUT_S = 50  # the server ends a watch after this; the thread then notices a stop request at the latest


class Watcher:
    """One collection (``list_fn`` in ``namespace`` with ``label_selector``) mirrored into callbacks on the loop:
    ``on_reset(items)`` after every (re)list, ``on_event(type, obj)`` for each ADDED/MODIFIED/DELETED."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        label_selector: str,
        to_dict: Callable[[Any], Any],
        watch_factory: Callable[[], Any],
        on_reset: Callable[[list[Obj]], object],
        on_event: Callable[[str, Obj], object],
        retry_s: float = 1.0,
    ) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.label_selector = label_selector
        self.to_dict = to_dict
        self.watch_factory = watch_factory
        self.on_reset = on_reset
        self.on_event = on_event
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def list(self) -> tuple[list[Obj], str]:
        """One list call (blocking): the items as dicts and the resourceVersion to watch from."""
        result = self.to_dict(self.list_fn(self.namespace, label_selector=self.label_selector))
        return list(result.get("items") or []), str((result.get("metadata") or {}).get("resourceVersion") or "")

    def start(self, resource_version: str) -> None:
        """Watch from ``resource_version`` (from :meth:`list`) in a daemon thread until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        name = f"stoker-watch-{self.namespace}-{getattr(self.list_fn, '__name__', 'list')}"
        self._thread = threading.Thread(target=self._run, args=(resource_version,), name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading: nothing to tell
            self._loop.call_soon_threadsafe(callback, *args)

    def _run(self, resource_version: str) -> None:
        rv: str | None = resource_version
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self.list()
                    self._post(self.on_reset, items)
                rv = self._watch_from(rv)
            except Exception as exc:  # any failure: start over from a fresh list, after a pause
                if getattr(exc, "status", None) != 410:
                    logger.warning("kubernetes watch (%s): %s; listing again", self.namespace, exc)
                    self._stop.wait(self.retry_s)
                rv = None

    def _watch_from(self, rv: str) -> str:
        """Stream events until the server ends the watch; return the last resourceVersion seen."""
        self._watch = watch = self.watch_factory()
        try:
            stream = watch.stream(
                self.list_fn,
                self.namespace,
                label_selector=self.label_selector,
                resource_version=rv,
                timeout_seconds=WATCH_TIMEOUT_S,
            )
            for event in stream:
                if self._stop.is_set():
                    break
                obj = event.get("raw_object")
                if not isinstance(obj, dict):
                    obj = self.to_dict(event.get("object"))
                rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    self._post(self.on_event, event["type"], obj)
        finally:
            self._watch = None
        return rv
