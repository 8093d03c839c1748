"""``stoker secret create|update|list|remove``: the ``/system/secrets`` API from the command line (as faas-cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stoker.cli import output
from stoker.cli.output import UsageError
from stoker.client import Client, GatewayError
from stoker.names import validate_name


def _value(args: argparse.Namespace) -> bytes:
    if args.from_literal is not None:
        return str(args.from_literal).encode()
    if args.from_file:
        return Path(args.from_file).read_bytes()
    if sys.stdin.isatty():
        raise UsageError("give the value with --from-literal, --from-file or on stdin")
    return sys.stdin.buffer.read()


def run_secret(client: Client, args: argparse.Namespace) -> int:
    if args.action in ("list", "ls"):
        names = client.secrets(args.namespace)
        if args.json:
            output.print_json(names)
        else:
            print(output.table(("NAME",), [(n,) for n in names]))
        return 0
    if not args.name:
        raise UsageError(f"'stoker secret {args.action}' needs a secret NAME")
    validate_name(args.name, "secret")
    if args.action in ("remove", "rm"):
        client.remove_secret(args.name, args.namespace, force=args.force)
        print(f"Removed secret {args.name}.")
        return 0
    value = _value(args)
    if not value:
        raise UsageError(f"secret {args.name!r}: the value is empty")
    try:
        client.set_secret(args.name, value, args.namespace, update=args.action == "update")
    except GatewayError as exc:
        if exc.status == 409 and args.action == "create":  # the API says "use PUT"; a CLI user types this
            raise GatewayError(
                f"secret {args.name!r} already exists; change its value with: stoker secret update {args.name}", 409
            ) from None
        raise
    print(f"{'Updated' if args.action == 'update' else 'Created'} secret {args.name}.")
    return 0
