"""``stoker result``, ``stoker queue ls|dead|replay|publish`` and ``stoker trigger create|ls|rm``: the queue from the
command line (see docs/queue.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from stoker.cli import output
from stoker.cli.output import UsageError
from stoker.client import Client, error_text


def add_arguments(queue: argparse.ArgumentParser, trigger: argparse.ArgumentParser, result: Any) -> None:
    """The arguments of the three commands (cli.py creates and registers the parsers)."""
    queue.add_argument("action", choices=["ls", "list", "dead", "replay", "publish"])
    queue.add_argument(
        "function", nargs="?", metavar="FUNCTION|STREAM", help="NAME or NAME.NAMESPACE (dead, replay); STREAM (publish)"
    )
    queue.add_argument("--id", action="append", default=[], metavar="DEAD_ID", help="replay only these dead letters")
    queue.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="publish: a field of the message (repeatable); without any, the message's body is read from stdin",
    )
    trigger.add_argument("action", choices=["create", "ls", "list", "rm", "remove"])
    trigger.add_argument("function", nargs="?", help="NAME or NAME.NAMESPACE")
    trigger.add_argument("stream", nargs="?", help="the Redis stream the function reads")
    result.add_argument("call_id")
    result.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait this long for the result")


def _qualify(function: str | None, namespace: str | None) -> str | None:
    """``NAME`` with ``-n NAMESPACE`` as ``NAME.NAMESPACE`` (what the queue routes take)."""
    if function and namespace and "." not in function:
        return f"{function}.{namespace}"
    return function


def run_queue(client: Client, args: argparse.Namespace) -> int:
    if args.action in ("dead", "replay"):
        args.function = _qualify(args.function, args.namespace)
    if args.action in ("ls", "list"):
        rows = client.queues()
        if args.json:
            return output.print_json(rows)
        keys = ("function", "stream", "length", "lag", "pending", "dead")
        print(output.table(tuple(k.upper() for k in keys), [tuple(r.get(k, "") for k in keys) for r in rows]))
        return 0
    if args.action == "publish":
        return _publish(client, args)
    if not args.function:
        raise UsageError(f"'stoker queue {args.action}' needs a FUNCTION")
    if args.action == "dead":
        entries = client.dead_letters(args.function)
        if args.json:
            return output.print_json(entries)
        dead_keys = ("deadId", "attempts", "stream", "id", "error")
        dead_rows = [[e.get(k, "") for k in dead_keys] for e in entries]
        print(output.table(("DEAD ID", "ATTEMPTS", "STREAM", "MESSAGE", "ERROR"), dead_rows))
        return 0
    name, _, namespace = args.function.partition(".")
    client.get_function(name, namespace or None)  # an unknown function is a 404 here, not "Replayed 0"
    moved = client.replay(args.function, args.id or None)
    print(f"Replayed {moved} dead letter{'s' if moved != 1 else ''} of {args.function}.")
    if args.id and moved < len(set(args.id)):
        print(f"stoker: {len(set(args.id)) - moved} of the ids given are not dead letters of {args.function}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _publish(client: Client, args: argparse.Namespace) -> int:
    """``stoker queue publish STREAM [--field K=V]...``: print the new message's id."""
    if not args.function:
        raise UsageError("'stoker queue publish' needs a STREAM")
    fields: dict[str, str] = {}
    for item in args.field:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--field {item!r}: give KEY=VALUE")
        fields[key] = value
    body = b"" if fields else sys.stdin.buffer.read()
    print(client.publish(args.function, body=body, fields=fields or None))
    return 0


def run_trigger(client: Client, args: argparse.Namespace) -> int:
    args.function = _qualify(args.function, args.namespace)
    if args.action in ("ls", "list"):
        pairs = client.triggers()
        if args.json:
            return output.print_json(pairs)
        print(output.table(("FUNCTION", "STREAM"), [(p.get("function"), p.get("stream")) for p in pairs]))
        return 0
    if not args.function or not args.stream:
        raise UsageError(f"'stoker trigger {args.action}' needs FUNCTION and STREAM")
    present = args.action == "create"
    client.set_trigger(args.function, args.stream, present)
    verb = "now reads" if present else "no longer reads"
    print(f"{args.function} {verb} stream {args.stream}.")
    return 0


def run_result(client: Client, args: argparse.Namespace) -> int:
    """Print a finished call's body; exit 0 when the function answered 2xx, 1 otherwise or when not done."""
    deadline = time.monotonic() + max(0.0, args.wait)
    delay = 0.05
    while True:
        reply = client.async_result(args.call_id)
        if reply.status != 202 or time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    if reply.status == 202:
        state = json.loads(reply.body or b"{}").get("status", "pending")
        print(f"stoker: call {args.call_id} is {state}", file=sys.stderr)
        return 1
    if reply.status != 200:
        print(f"stoker: {error_text(reply.body, reply.status)}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(reply.body)
    sys.stdout.flush()
    status = int(reply.headers.get("x-function-status", "0") or 0)
    if not 200 <= status < 300:
        print(f"stoker: {reply.headers.get('x-function-name', 'the function')} answered {status}", file=sys.stderr)
        return 1
    return 0
