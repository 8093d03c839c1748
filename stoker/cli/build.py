"""``stoker build`` and ``stoker base-image``: function images and the runtime base image, from the command line.

Registered by :mod:`stoker.cli.main`; this module imports only ``argparse`` at load time so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from stoker.cli import output


def add_arguments(build: argparse.ArgumentParser, base_image: argparse.ArgumentParser) -> None:
    """Add the options of ``stoker build`` and ``stoker base-image``."""
    build.add_argument("-f", "--file", metavar="STACK", default="stack.yml", help="stack file (default: ./stack.yml)")
    build.add_argument("--filter", metavar="GLOB", help="only functions whose name matches")
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    build.add_argument("--registry", metavar="HOST[:PORT][/PATH]", help="tag into and push to this registry")
    build.add_argument("--base", metavar="IMAGE", help="base image (default: STOKER_DOCKER_BASE_IMAGE)")
    base_image.add_argument(
        "--from",
        dest="source",
        default="auto",
        metavar="SOURCE",
        help="auto (official Python image, else debootstrap), debootstrap, or an image to start from",
    )
    base_image.add_argument("--name", metavar="REPOSITORY", help="base image name (default: STOKER_DOCKER_BASE_IMAGE)")
    base_image.add_argument("--rebuild", action="store_true", help="build even when the image exists")


def run_build(args: argparse.Namespace) -> int:
    from builder import engine
    from builder.base import ensure_base_image
    from builder.function import build_function, push, tag_as
    from builder.pip import BuildFailed
    from runtime.backends.containers import DockerSettings
    from stoker import bundle
    from stoker.stack import load_stack

    stack = load_stack(args.file)
    functions = stack.select(args.filter)
    settings = DockerSettings.from_env()
    registry = args.registry if args.registry is not None else settings.registry
    quiet = bool(getattr(args, "json", False))
    out = _printer(quiet)
    client = engine.connect()
    results: list[dict[str, Any]] = []
    try:
        base = ensure_base_image(client, args.base or settings.base_image, out=out)
        for fn in functions:
            if fn.handler_dir is None:
                out(f"{fn.name}: runs image {fn.image}; nothing to build")
                results.append({"name": fn.name, "image": fn.image, "built": False, "seconds": 0.0})
                continue
            data = bundle.pack(fn.handler_dir)
            bundle.check(data)
            image = build_function(
                client, fn.name, data, base.ref, registry=registry or "", nocache=args.no_cache, out=out
            )
            if registry:
                started = time.monotonic()
                push(client, image.ref, out)
                out(f"{fn.name}: pushed {image.ref} in {time.monotonic() - started:.1f}s")
            result = {"name": fn.name, "image": image.ref, "built": image.built, "seconds": image.seconds}
            if fn.image:  # the name faas-cli deploy sends for this function (its stack file's image:)
                result["tagged"] = tag_as(client, image.ref, fn.image, out)
            results.append(result)
    except BuildFailed as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 1
    if not registry and any(r["built"] for r in results):
        out("no registry given (--registry or STOKER_DOCKER_REGISTRY): images stay on this Docker Engine")
    if quiet:
        output.print_json(results)
    else:
        for r in results:
            state = f"built in {r['seconds']:.1f}s" if r["built"] else "up to date"
            also = f", tagged {r['tagged']}" if r.get("tagged") else ""
            print(f"{r['name']}: {r['image']} ({state}{also})")
    return 0


def run_base_image(args: argparse.Namespace) -> int:
    from builder import engine
    from builder.base import ensure_base_image
    from builder.pip import BuildFailed
    from runtime.backends.containers import DockerSettings

    name = args.name or DockerSettings.from_env().base_image
    client = engine.connect()
    started = time.monotonic()
    try:
        base = ensure_base_image(client, name, source=args.source, rebuild=args.rebuild, out=_printer(False))
    except BuildFailed as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 1
    state = f"built in {time.monotonic() - started:.1f}s" if base.built else "up to date"
    print(f"base image {base.ref} ({state})")
    return 0


def _printer(quiet: bool) -> Any:
    def out(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    return out
