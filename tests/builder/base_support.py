"""A small real base-image build for tests: a tiny root filesystem (no Python: the image is built, never run) goes
through the same import, base build, lock and progress as debootstrap's. Run as a module, it is one more builder in
a process of its own: ``python -m tests.builder.base_support BASE CACHE GO MADE``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from builder import pip
from builder.base import MakeRoot, ensure_base_image, pinned_requirements
from builder.stream import Output

TINY_ROOT_LINE = "making a tiny root filesystem"


def tiny_root(go: Path, made: Path) -> MakeRoot:
    """Makes a one-file root filesystem once ``go`` exists (so the test decides when the build goes on: once every
    other builder waits); appends the folder it was made in to ``made``."""

    def make(root: Path, out: Output) -> None:
        with made.open("a") as record:
            record.write(f"{root.parent}\n")
        out(TINY_ROOT_LINE)
        deadline = time.monotonic() + 180
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{go} never appeared")
            time.sleep(0.05)
        (root / "etc").mkdir()
        (root / "etc" / "os-release").write_text("ID=stoker-test\n")

    return make


def link_runtime_deps(cache: Path) -> None:
    """The runtime's dependencies in ``cache`` as a link to the ones the default cache holds (installed there when
    missing): the test is about the lock and the progress, not pip."""
    shared = pip.install(pinned_requirements(), pip.default_cache_dir(), step="install the runtime's dependencies")
    (cache / "deps").mkdir(parents=True, exist_ok=True)
    (cache / "deps" / shared.name).symlink_to(shared, target_is_directory=True)


def main(base: str, cache: str, go: str, made: str) -> int:
    from builder import engine

    client = engine.connect()

    def show(line: str) -> None:
        print(line, flush=True)

    result = ensure_base_image(
        client, base, Path(cache), source="debootstrap", out=show, make_root=tiny_root(Path(go), Path(made))
    )
    print(f"RESULT {result.ref} {result.built}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
