"""Turn rendered objects into YAML text with a header saying where it came from and how to regenerate it; the
whole install for one set of values (:func:`render_text`)."""

from __future__ import annotations

from typing import Any

import yaml

from stoker.install import compose, kubernetes, swarm
from stoker.install.values import FLAGS, Values


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


def flags(values: Values) -> str:
    """The command line that renders ``values`` again (only what differs from the defaults)."""
    default = Values(target=values.target, name=values.name)
    out = []
    for name in FLAGS:
        value = getattr(values, name)
        if value is True:
            out.append(f" --{name.replace('_', '-')}")
        elif (name == "name" and value != "stoker") or (name != "name" and value != getattr(default, name)):
            out.append(f" --{name.replace('_', '-')} {value}")
    return "".join(out)


def render_text(values: Values) -> str:
    """The install as YAML, with a header saying how it was made and what to run."""
    f = flags(values)
    if values.target == "compose":
        header = compose.HEADER.format(flags=f, name=values.name, bind=values.bind)
        return dump([compose.render(values)], header)
    if values.target == "swarm":
        lines = "\n".join(
            f"  openssl rand -hex 32 | docker secret create {n} -" for n in swarm.secret_names(values).values()
        )
        return dump([swarm.render(values)], swarm.HEADER.format(flags=f, name=values.name, secrets=lines))
    names = ", ".join(kubernetes.secret_names(values).values())
    header = kubernetes.HEADER.format(flags=f, name=values.name, secrets=names)
    return dump(kubernetes.render(values), header)
