"""The API description: ``gateway/openapi.yaml`` (OpenAPI 3.1, also ``docs/openapi.yaml``), served as JSON.

``GET /system/openapi.json`` answers it behind the same authentication as the rest of ``/system/``: the document
describes the management API, which only administrators call, and an open route would be one more thing the
internet can reach (see docs/security.md). It is read once, on the first request.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

PATH = "/system/openapi.json"


@cache
def document() -> dict[str, Any]:
    """The parsed document shipped in this package."""
    text = files("gateway").joinpath("openapi.yaml").read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@cache
def document_json() -> bytes:
    return json.dumps(document(), separators=(",", ":")).encode()
