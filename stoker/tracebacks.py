"""A failed call's traceback as its author wants to read it: from their own first frame down, under their own file
names. Pure (no I/O but ``linecache``, as :mod:`traceback` itself); used inside a replica (``runtime/replica/logs.py``)
and by the SDK's shim (``stoker/sdk/errors.py``).

The runtime's frames above the user's (the replica's server, its thread pool, the SDK's shim) say nothing about the
error, and a replica's function folder is a content-addressed path under ``$STOKER_HOME`` (or ``/function`` in an
image) that the user never wrote. So, in every traceback of the chain (``__cause__``, ``__context__``, groups):

- frames before the first one in the user's code are dropped (a stack with no user frame is kept whole: the error is
  then the runtime's own, and its frames are what explains it);
- the user's files are shown under the name ``user_file`` gives (relative to the function folder, or the caller's own
  path for an SDK function); packages installed for the function under ``libraries`` show as
  ``site-packages/<path>``; every other frame (the standard library, the libraries a user frame called) is kept as is.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence

UserFile = Callable[[str], "str | None"]  # a frame's file name -> its name to show, or None: not the user's


def in_folder(folder: str) -> UserFile:
    """Files under ``folder`` are the user's, shown relative to it (``handler.py``, ``pkg/util.py``)."""
    prefix = folder.rstrip(os.sep) + os.sep

    def user_file(filename: str) -> str | None:
        return filename[len(prefix) :] if filename.startswith(prefix) else None

    return user_file


def user_traceback(exc: BaseException, user_file: UserFile, libraries: Sequence[str] = ()) -> str:
    """The text Python prints for ``exc``, its stacks starting at the user's own frames (see the module)."""
    top = traceback.TracebackException.from_exception(exc)
    lib_prefixes = [p.rstrip(os.sep) + os.sep for p in libraries if p]
    pending, seen = [top], set()
    while pending:
        te = pending.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        frames = list(te.stack)
        first = next((i for i, f in enumerate(frames) if user_file(f.filename) is not None), None)
        if first is not None:
            kept = frames[first:]
            for frame in kept:
                frame.filename = _shown(frame.filename, user_file, lib_prefixes)
            te.stack = traceback.StackSummary.from_list(kept)
        if getattr(te, "filename", None):  # a SyntaxError names its file too
            te.filename = _shown(str(te.filename), user_file, lib_prefixes)
        pending += [t for t in (te.__cause__, te.__context__) if t is not None]
        pending += getattr(te, "exceptions", None) or []
    return "".join(top.format())


def _shown(filename: str, user_file: UserFile, lib_prefixes: Sequence[str]) -> str:
    name = user_file(filename)
    if name is not None:
        return name
    for prefix in lib_prefixes:
        if filename.startswith(prefix):
            return "site-packages/" + filename[len(prefix) :]
    return filename
