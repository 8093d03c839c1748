"""Function images: the base image, then a dependency layer, then a code layer.

The tag is a content address of (base image id, requirements, code), so building unchanged source is a lookup and
nothing more. Dependencies are installed on the host (:mod:`builder.pip`) and cached by the requirements' hash, so
a code-only change rebuilds only the last layer; the engine's layer cache reuses the dependency layer.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import pip
from builder.base import image_exists
from builder.context import pack_context
from builder.reference import content_tag, faas_cli_reference, repository_for, validate_reference
from builder.stream import Output, quiet, run_build
from stoker import bundle

FUNCTION_DIR = "/home/app/function"
DEPS_DIR = "/home/app/python"
_LAYOUT_VERSION = "2"  # bump when the Dockerfile below changes, so old tags are not reused for a new layout


@dataclass(frozen=True)
class FunctionImage:
    ref: str
    built: bool  # False when the image with this content tag existed already
    seconds: float


def dockerfile(base: str, with_deps: bool, labels: dict[str, str] | None = None) -> str:
    """The function image's Dockerfile. The runtime's own packages come first on the path, so a requirement cannot
    replace what the replica server itself runs on."""
    lines = [f"FROM {base}"]
    if with_deps:
        lines.append(f"COPY python/ {DEPS_DIR}/")
    lines += [
        f"COPY function/ {FUNCTION_DIR}/",
        f"ENV PYTHONPATH=/opt/stoker/lib:{DEPS_DIR} STOKER_FUNCTION_DIR={FUNCTION_DIR}",
    ]
    if labels:  # one instruction, one step (the build API's labels parameter adds a step per label)
        lines.append("LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())))
    return "\n".join(lines) + "\n"


def build_function(
    client: Any,
    name: str,
    bundle_bytes: bytes,
    base: str,
    *,
    registry: str = "",
    prefix: str = "stoker-fn",
    cache_dir: Path | None = None,
    nocache: bool = False,
    out: Output = quiet,
    max_bundle_bytes: int = bundle.DEFAULT_MAX_BYTES,
) -> FunctionImage:
    """Build (or find) the image of one function from its code bundle (see :mod:`stoker.bundle`)."""
    started = time.monotonic()
    base_id = str(client.images.get(base).id)
    with tempfile.TemporaryDirectory(prefix="stoker-build-") as tmp:
        code = bundle.unpack(bundle_bytes, Path(tmp) / "function", max_bundle_bytes)
        req_file = code / "requirements.txt"
        requirements = req_file.read_text() if req_file.is_file() else ""
        with_deps = pip.has_requirements(requirements)
        tag = content_tag([_LAYOUT_VERSION, base_id, bundle.digest(bundle_bytes), requirements])
        ref = validate_reference(f"{repository_for(name, registry, prefix)}:{tag}")
        if not nocache and image_exists(client, ref):
            out(f"{name}: {ref} is up to date")
            return FunctionImage(ref, False, time.monotonic() - started)
        folders = {"function": code}
        if with_deps:
            out(f"{name}: installing requirements.txt on the host (pip --target, cached by content)")
            folders["python"] = pip.install(requirements, cache_dir or pip.default_cache_dir()) / "site"
        labels = {"com.stoker.function": name, "com.stoker.source-digest": bundle.digest(bundle_bytes)}
        context = pack_context(dockerfile(base, with_deps, labels), folders)
        run_build(client, context, ref, out, nocache=nocache)
    out(f"{name}: built {ref}")
    return FunctionImage(ref, True, time.monotonic() - started)


def tag_as(client: Any, ref: str, image: str, out: Output = quiet) -> str:
    """Tag the built ``ref`` also as a stack file's ``image:``, the name ``faas-cli deploy`` sends for it; return
    that name (see :func:`builder.reference.faas_cli_reference`)."""
    repository, tag = faas_cli_reference(image)
    client.images.get(ref).tag(repository, tag)
    out(f"tagged {ref} as {repository}:{tag} (the image faas-cli deploy names)")
    return f"{repository}:{tag}"


def push(client: Any, ref: str, out: Output = quiet) -> None:
    """Push ``ref`` to its registry; a refusal raises :class:`BuildFailed` with the registry's message."""
    import docker.errors

    repository, tag = ref.rsplit(":", 1)
    log: list[str] = []
    try:
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise pip.BuildFailed(f"push {ref}", [*log, str(chunk["error"])])
            status = str(chunk.get("status") or "")
            if status and "id" not in chunk:
                log.append(status)
                out(status)
    except docker.errors.DockerException as exc:
        raise pip.BuildFailed(f"push {ref}", [*log, str(exc)]) from None
