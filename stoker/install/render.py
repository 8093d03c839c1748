"""Turn rendered objects into YAML text with a header saying where it came from and how to regenerate it."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(objects: list[dict[str, Any]], header: str) -> str:
    """One YAML stream: the header as comments, then each object as a document."""
    lines = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines())
    docs = [yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=10_000, default_flow_style=False) for o in objects]
    return lines + "---\n".join(docs)
