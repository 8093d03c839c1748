"""Image references and content tags (pure functions, no Docker calls).

A function image's tag is derived from everything that goes into it (the base image, the dependency set, the code),
so the same source always gives the same tag and a rebuild of unchanged source can be skipped outright.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from stoker.errors import InvalidRequest

# The grammar of github.com/distribution/reference, which the Docker Engine applies.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_REFERENCE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
TAG_LENGTH = 16


def validate_reference(ref: str, what: str = "image") -> str:
    """Return ``ref`` when the Docker Engine would accept it; raise :class:`InvalidRequest` saying why not."""
    if not ref or ref != ref.strip():
        raise InvalidRequest(f"{what} {ref!r}: empty or surrounded by spaces")
    if len(ref) > 255 + 128:
        raise InvalidRequest(f"{what} {ref[:40]!r}...: longer than an image reference may be")
    m = _REFERENCE_RE.match(ref)
    domain = m.group("domain") if m else None
    # As the engine does: a first part without "." or ":" (and not localhost) is a path component, so lowercase.
    if (
        domain
        and not ("." in domain or ":" in domain or domain == "localhost")
        and not re.fullmatch(_COMPONENT, domain)
    ):
        m = None
    if m is None or len(m.group("path")) > 255:
        raise InvalidRequest(
            f"{what} {ref!r} is not a valid image reference "
            "(expected [registry/]name[:tag][@sha256:digest], name in lowercase letters, digits and . _ - /)"
        )
    return ref


def has_tag(ref: str) -> bool:
    """True when ``ref`` names a tag or digest (``name:tag``, ``host:5000/name:tag``), not just a repository."""
    last = ref.rsplit("/", 1)[-1]
    return ":" in last or "@" in ref


def faas_cli_reference(image: str) -> tuple[str, str]:
    """The ``(repository, tag)`` that ``faas-cli deploy`` names for a stack file's ``image:`` (its
    ``schema.BuildImageName`` with the default tag format: ``:latest`` appended when the name holds no ``:``), so
    ``stoker build`` can tag its image so. InvalidRequest when it is not an image reference, or names a digest."""
    ref = validate_reference(image if ":" in image else f"{image}:latest", "image")
    if "@" in ref:
        raise InvalidRequest(f"image {image!r}: a digest cannot be given to a built image; use a tag")
    if not has_tag(ref):  # "host:5000/name": the engine's default tag
        return ref, "latest"
    repository, _, tag = ref.rpartition(":")
    return repository, tag


def repository_for(function: str, registry: str = "", prefix: str = "stoker-fn") -> str:
    """The repository a function's image is tagged into: ``[registry/]prefix/function``."""
    repo = f"{prefix}/{function}" if prefix else function
    return f"{registry.rstrip('/')}/{repo}" if registry else repo


def content_tag(parts: Iterable[bytes | str]) -> str:
    """A tag naming these inputs: the first :data:`TAG_LENGTH` hex digits of their SHA-256 (length-prefixed)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:TAG_LENGTH]
