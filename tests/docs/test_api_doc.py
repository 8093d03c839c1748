"""docs/api.md lists every route the gateway describes in its OpenAPI document (the one the gateway is fuzzed from)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_every_route_is_in_the_api_page() -> None:
    spec = yaml.safe_load((ROOT / "gateway" / "openapi.yaml").read_text())
    page = (ROOT / "docs" / "api.md").read_text()
    missing = [path for path in spec["paths"] if path.removesuffix("/{path}") not in page]
    assert not missing, f"docs/api.md does not list: {', '.join(missing)}"
