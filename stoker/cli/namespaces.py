"""``stoker namespaces [list|get|create|update|remove] [NAME]``: the ``/system/namespace`` API from the command line
(as faas-cli's ``namespace`` commands)."""

from __future__ import annotations

import argparse

from stoker.cli import output
from stoker.cli.output import UsageError
from stoker.client import Client

ACTIONS = ("list", "ls", "get", "create", "update", "remove", "rm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=ACTIONS, help="list (default), get, create, ...")
    p.add_argument("name", nargs="?", help="the namespace (not for list)")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="label (create, update)")
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="annotation (create, update)")


def run_namespaces(client: Client, args: argparse.Namespace, pairs: dict[str, dict[str, str]]) -> int:
    """``pairs``: the ``--label`` and ``--annotation`` values, parsed by the caller."""
    if args.action in ("list", "ls"):
        names = client.namespaces()
        if args.json:
            return output.print_json(names)
        print("\n".join(names))
        return 0
    if not args.name:
        raise UsageError(f"'stoker namespaces {args.action}' needs a namespace NAME")
    if args.action == "get":
        found = client.namespace(args.name)
        if args.json:
            return output.print_json(found)
        rows = [("name", found.get("name", args.name))]
        rows += [(f"label {k}", v) for k, v in sorted((found.get("labels") or {}).items())]
        rows += [(f"annotation {k}", v) for k, v in sorted((found.get("annotations") or {}).items())]
        print(output.fields(rows))
        return 0
    if args.action in ("remove", "rm"):
        client.remove_namespace(args.name)
        print(f"Removed namespace {args.name}.")
        return 0
    update = args.action == "update"
    client.save_namespace(args.name, pairs["label"], pairs["annotation"], update=update)
    print(f"{'Updated' if update else 'Created'} namespace {args.name}.")
    return 0
