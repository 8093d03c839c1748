"""The ``stoker`` command line: start the platform, scaffold, deploy and operate functions.

``main(argv)`` returns the exit status instead of exiting, so tests can call it in-process. Every failure
is one line on stderr and a non-zero status: 1 when an operation failed (the gateway refused or could not
be reached), 2 for a usage or configuration mistake (bad flag, bad name, bad stack file).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import difflib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from stoker import __version__, bundle
from stoker.cli import output
from stoker.cli.output import UsageError
from stoker.cli.scaffold import ScaffoldError, new_function
from stoker.client import Client, GatewayError, error_text
from stoker.errors import ConfigError, InvalidRequest, StokerError
from stoker.names import DEFAULT_NAMESPACE, InvalidName, split_qualified, validate_name
from stoker.spec import parse_duration
from stoker.stack import Stack, StackError, StackFunction, load_stack

PROG = "stoker"


class _Parser(argparse.ArgumentParser):
    # argparse prints the whole usage and exits; the CLI promises one line and a returned status instead.
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}{_did_you_mean(message)} (see '{self.prog} --help')")


def _did_you_mean(message: str) -> str:
    """``; did you mean 'list'?`` for argparse's "invalid choice: 'lst' (choose from ...)" (Python 3.11 has none)."""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not m:
        return ""
    choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
    close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``stoker`` command; return its exit status."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # named with the subcommand's own help, which lists what it takes
            where = f"{PROG} {args.command}" if hasattr(args, "command") else PROG
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see '{where} --help')")
        if not hasattr(args, "run"):
            parser.print_help(sys.stderr)
            return 2
        return int(args.run(args))
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except (UsageError, ConfigError, StackError, InvalidName, ScaffoldError) as exc:
        return _fail(str(exc), 2)
    except GatewayError as exc:
        return _fail(exc.message, 1)
    except BrokenPipeError:
        _silence_stdout()  # the reader went away (stoker logs | head): nothing worth a message
        return 1
    except (StokerError, OSError) as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: {' '.join(message.splitlines())}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    # Without this, Python's final flush of stdout raises again and prints a traceback at exit.
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    common = _Parser(add_help=False)
    # SUPPRESS keeps a value given before the subcommand (stoker --gateway URL list) from being reset.
    common.add_argument("--gateway", metavar="URL", default=argparse.SUPPRESS, help="gateway URL")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine output")
    ns = _Parser(add_help=False)
    ns.add_argument("-n", "--namespace", help=f"namespace (default: the gateway's, {DEFAULT_NAMESPACE})")

    json_only = _Parser(add_help=False)
    json_only.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine output")

    parser = _Parser(prog=PROG, description="Serverless Python functions (OpenFaaS-compatible).")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--gateway", metavar="URL", default=None, help="gateway URL (else STOKER_GATEWAY, else where 'stoker up' runs)"
    )
    parser.add_argument("--json", action="store_true", default=False, help="machine-readable output")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, run: Any, help: str, *parents: _Parser, options: _Parser | None = common) -> _Parser:
        # options: the shared --gateway/--json, offered only where the command uses them
        shared = [options] if options is not None else []
        p = sub.add_parser(name, help=help, description=help, parents=[*shared, *parents])
        p.set_defaults(run=run, command=name)
        return p

    p = command("up", _up, "run the platform on this machine (gateway, autoscaler, local backend)", options=None)
    p.add_argument("--port", type=int, help="gateway port (default 8080)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--backend", help="local, docker, swarm or kubernetes (default local)")
    p.add_argument("--stack", metavar="FILE", help="deploy this stack file once the gateway is up")
    p.add_argument("--redis", metavar="URL", help="Redis Streams queue (or STOKER_REDIS_URL); default: embedded")

    p = command(
        "controller", _controller, "run the autoscaler for several gateways (one active instance)", options=None
    )
    p.add_argument("--backend", help="docker, swarm or kubernetes (or STOKER_BACKEND)")
    p.add_argument("--redis", metavar="URL", help="Redis the gateways publish their load to (or STOKER_REDIS_URL)")
    p.add_argument("--port", type=int, default=8081, help="port of /healthz and /metrics (default 8081; 0: any)")
    p.add_argument("--host", default="0.0.0.0", help="address of /healthz and /metrics (default 0.0.0.0)")

    p = command(
        "edge", _edge, "balance calls over gateways, holding them through restarts (Compose, Swarm)", options=None
    )
    p.add_argument("--upstream", help="the gateways, host:port, the host resolved to every address (gateway:8080)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080)")
    p.add_argument("--host", help="address to listen on (default 0.0.0.0)")

    p = command("new", _new, "create a function folder and add it to stack.yml")
    p.add_argument("name")
    p.add_argument("--dir", default=".", help="folder holding stack.yml (default: current)")

    p = command("deploy", _deploy, "deploy functions from a stack file or from flags", ns)
    p.add_argument("app", nargs="?", metavar="APP.py", help="a Python file defining a stoker.App (the SDK)")
    p.add_argument("-f", "--file", metavar="STACK", help="stack file (default: ./stack.yml)")
    p.add_argument("--filter", metavar="GLOB", help="only functions whose name matches")
    p.add_argument("--name", help="deploy one function without a stack file")
    p.add_argument("--handler", metavar="DIR", help="its folder (with handler.py)")
    p.add_argument("--image", help="its image, instead of or besides a handler folder")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="environment variable")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="label (scaling: com.openfaas.scale.*)")
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="annotation (com.stoker.*)")
    p.add_argument("--secret", action="append", default=[], metavar="NAME", help="secret the function reads")

    command("list", _list, "list deployed functions", ns)
    command("describe", _describe, "show one function", ns).add_argument("name")

    p = command("invoke", _invoke, "call a function; the body is read from stdin", ns)
    p.add_argument("name", help="NAME or NAME.NAMESPACE")
    p.add_argument("--method", default="POST")
    p.add_argument("--header", "-H", action="append", default=[], metavar="K=V")
    p.add_argument("--query", "-q", action="append", default=[], metavar="K=V")
    p.add_argument("--path", default="", help="path after /function/NAME")
    p.add_argument("--async", dest="asynchronous", action="store_true", help="queue the call (202)")

    p = command("scale", _scale, "set a function's replicas", ns)
    p.add_argument("name")
    p.add_argument("--replicas", type=_count, required=True, metavar="K")

    p = command("logs", _logs, "print a function's logs", ns)
    p.add_argument("name")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    p.add_argument("--tail", type=_count, metavar="N", help="only the last N lines")
    p.add_argument("--since", metavar="DURATION", help="only lines newer than this (30s, 5m, 1h)")

    command("remove", _remove, "remove functions", ns).add_argument("names", nargs="+", metavar="NAME")
    p = command("secret", _secret, "manage secrets: create, update, list, remove", ns)
    p.add_argument("action", choices=["create", "update", "list", "ls", "remove", "rm"])
    p.add_argument("name", nargs="?")
    p.add_argument("--from-literal", metavar="VALUE", help="the value (else --from-file, else stdin)")
    p.add_argument("--from-file", metavar="FILE", help="read the value from a file")
    p.add_argument("--force", action="store_true", help="remove: even when functions use it")

    from stoker.cli import queue as cli_queue

    cli_queue.add_arguments(
        command(
            "queue",
            _queue,
            "queued work: ls (streams, lag, pending, dead), dead FUNCTION, replay FUNCTION, publish STREAM",
            ns,
        ),
        command("trigger", _trigger, "queue triggers: create FUNCTION STREAM, ls, rm FUNCTION STREAM", ns),
        command("result", _result, "print the result of an async call (stoker invoke --async prints its id)"),
    )
    from stoker.cli import build as build_cli

    build_cli.add_arguments(
        command(
            "build", _build, "build function images from a stack file on the local Docker Engine", options=json_only
        ),
        command(
            "base-image",
            _base_image,
            "build the runtime base image (offline with debootstrap if need be)",
            options=None,
        ),
    )
    from stoker.cli import install as install_cli

    install_cli.add_arguments(
        command("install", _install, "render (or --apply) the platform for compose, swarm or kubernetes"),
        command("uninstall", _uninstall, "remove what `stoker install` created (functions kept unless asked)"),
    )
    from stoker.cli import namespaces as namespaces_cli

    namespaces_cli.add_arguments(
        command("namespaces", _namespaces, "namespaces: list (default), get, create, update, remove NAME")
    )
    from stoker.cli import cleanup as cleanup_cli

    cleanup_cli.add_arguments(
        command(
            "down",
            _down,
            "stop this STOKER_HOME's platform and remove its replicas and runtime objects (keeps state)",
            options=None,
        ),
        command(
            "purge", _purge, "remove everything of this STOKER_HOME's platform, its state and images too", options=None
        ),
    )
    command("info", _info, "show the gateway's provider and version")
    return parser


# -- commands ------------------------------------------------------------------------------------


def _queue(args: argparse.Namespace) -> int:
    from stoker.cli.queue import run_queue

    return run_queue(_client(args), args)


def _trigger(args: argparse.Namespace) -> int:
    from stoker.cli.queue import run_trigger

    return run_trigger(_client(args), args)


def _result(args: argparse.Namespace) -> int:
    from stoker.cli.queue import run_result

    return run_result(_client(args), args)


def _install(args: argparse.Namespace) -> int:
    from stoker.cli.install import run_install

    return run_install(args)


def _uninstall(args: argparse.Namespace) -> int:
    from stoker.cli.install import run_uninstall

    return run_uninstall(args)


def _down(args: argparse.Namespace) -> int:
    from stoker.cli.cleanup import run_down

    return run_down(args)


def _purge(args: argparse.Namespace) -> int:
    from stoker.cli.cleanup import run_purge

    return run_purge(args)


def _build(args: argparse.Namespace) -> int:
    from stoker.cli.build import run_build

    return run_build(args)


def _base_image(args: argparse.Namespace) -> int:
    from stoker.cli.build import run_base_image

    return run_base_image(args)


def _secret(args: argparse.Namespace) -> int:
    from stoker.cli.secret import run_secret

    return run_secret(_client(args), args)


def _up(args: argparse.Namespace) -> int:
    from stoker.config import Config  # the platform's imports stay off the path of every other command

    config = Config.from_env(port=args.port, host=args.host, backend=args.backend, redis_url=args.redis)
    stack = Path(args.stack) if args.stack else None
    if stack is not None:
        load_stack(stack)  # fail now, naming file:line, rather than after the platform started
    _check_redis(config.redis_url, args.redis)
    try:
        from gateway.server import run_platform  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StokerError(f"the platform cannot start: {exc}") from None
    return int(run_platform(config, stack=stack))


def _controller(args: argparse.Namespace) -> int:
    from stoker.config import Config

    config = Config.from_env(port=args.port, host=args.host, backend=args.backend, redis_url=args.redis)
    _check_redis(config.redis_url, args.redis)
    try:
        from autoscaler.controller import run_controller  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StokerError(f"the controller cannot start: {exc}") from None
    return int(run_controller(config))


def _edge(args: argparse.Namespace) -> int:
    try:
        from gateway.edge import EdgeConfig, run_edge  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StokerError(f"the edge cannot start: {exc}") from None
    config = EdgeConfig.from_env(dict(os.environ), upstream=args.upstream, port=args.port, host=args.host)
    return int(run_edge(config))


def _check_redis(url: str, flag: str | None) -> None:
    """A wrong Redis URL stops the platform now, naming where it came from, rather than retrying once started."""
    if not url:
        return
    try:
        from events.redis_probe import check_redis  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StokerError(f"the platform cannot start: {exc}") from None
    check_redis(url, "--redis" if flag else "STOKER_REDIS_URL")


def _new(args: argparse.Namespace) -> int:
    made = new_function(args.name, args.dir, _gateway_url(args))
    print(f"Created {made.folder}/ (handler.py, requirements.txt, README.md).")
    verb = "Wrote" if made.stack_created else "Added it to"
    print(f"{verb} {made.stack_file}. Deploy with: stoker deploy -f {made.stack_file} --filter {args.name}")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    if args.app:  # the SDK: deploy the functions of the App(s) an app.py defines
        from stoker.cli.appfile import deploy_app_file

        return deploy_app_file(args.app, _gateway_url(args), args.namespace, args.json)
    functions, stack = _functions_to_deploy(args)
    client = _client(args, stack.gateway if stack else "")
    # Flags add to (and win over) what the stack file says, as faas-cli's --env/--label/--annotation do.
    env, labels = _pairs(args.env, "--env"), _pairs(args.label, "--label")
    annotations, secrets = (
        _pairs(args.annotation, "--annotation"),
        [validate_name(s, "secret") for s in args.secret],
    )
    results: list[dict[str, Any]] = []
    failed = 0
    for fn in functions:
        fn.env.update(env)
        fn.labels.update(labels)
        fn.annotations.update(annotations)
        fn.secrets += [s for s in secrets if s not in fn.secrets]
        fn.namespace = fn.namespace or args.namespace or ""
        try:
            source = base64.b64encode(bundle.pack(fn.handler_dir)).decode() if fn.handler_dir else ""
            progress = None if args.json else _build_progress(fn.name)
            action = client.deploy(fn.to_deployment(source), on_log=progress)
        except GatewayError as exc:
            if exc.status == 0:
                raise  # unreachable: the other functions would fail the same way
            failed += 1  # keep going: one refused function should not stop the others, as with faas-cli
            _fail(f"{fn.name}: {exc.message}", 1)
            continue
        except StokerError as exc:
            failed += 1
            _fail(f"{fn.name}: {exc}", 1)
            continue
        namespace = fn.namespace or DEFAULT_NAMESPACE
        url = client.function_url(fn.name, fn.namespace or None)
        results.append({"name": fn.name, "namespace": namespace, "action": action, "url": url})
        if not args.json:
            print(f"Deployed {fn.name} ({namespace}). URL: {url}", flush=True)
    if args.json:
        output.print_json(results)
    return 1 if failed else 0


def _build_progress(name: str) -> Callable[[str], None]:
    """Where the gateway's build of a source deploy streams its progress: standard error, one line each."""

    def show(line: str) -> None:
        print(line if line.startswith(f"{name}: ") else f"{name}: {line}", file=sys.stderr, flush=True)

    return show


def _functions_to_deploy(args: argparse.Namespace) -> tuple[list[StackFunction], Stack | None]:
    if args.name or args.handler or args.image:
        if args.file:
            raise UsageError("give either -f STACK or --name with --handler/--image, not both")
        if not args.name or not (args.handler or args.image):
            raise UsageError("deploying without a stack file needs --name and --handler (or --image)")
        validate_name(args.name)
        fn = StackFunction(name=args.name, image=args.image or "")
        if args.handler:
            folder = Path(args.handler)
            if not (folder / "handler.py").is_file():
                what = "has no handler.py" if folder.is_dir() else "is not a folder"
                raise UsageError(f"--handler {args.handler}: {what}")
            fn.handler_dir = folder
        return [fn], None
    path = args.file or "stack.yml"
    if not args.file and not Path(path).is_file():
        raise UsageError("no stack.yml here: give -f STACK, or --name and --handler")
    stack = load_stack(path)
    return stack.select(args.filter), stack


def _list(args: argparse.Namespace) -> int:
    functions = sorted(_client(args).list_functions(args.namespace), key=lambda f: str(f.get("name")))
    if args.json:
        return output.print_json(functions)
    counts = ("invocationCount", "replicas", "availableReplicas")
    rows = [(f.get("name"), *(f.get(k) or 0 for k in counts), _origin(f)) for f in functions]
    print(output.table(("NAME", "INVOCATIONS", "REPLICAS", "AVAILABLE", "IMAGE/SOURCE"), rows))
    return 0


def _describe(args: argparse.Namespace) -> int:
    client = _client(args)
    name, namespace = _qualified(args.name, args.namespace)
    fn = client.get_function(name, namespace)
    if args.json:
        return output.print_json(fn)
    ready = (fn.get("availableReplicas") or 0) > 0
    ns = fn.get("namespace") or namespace or DEFAULT_NAMESPACE
    pairs = [
        ("Name", fn.get("name", name)),
        ("Namespace", ns),
        ("Status", "Ready" if ready else "Not ready"),
        ("Replicas", output.text(fn.get("replicas", 0))),
        ("Available", output.text(fn.get("availableReplicas", 0))),
        ("Invocations", output.text(fn.get("invocationCount", 0))),
        ("Image/source", _origin(fn)),
        ("Created", fn.get("createdAt")),
        ("URL", client.function_url(name, None if ns == DEFAULT_NAMESPACE else ns)),
        ("Process", fn.get("envProcess")),
        ("Environment", fn.get("envVars")),
        ("Labels", fn.get("labels")),
        ("Annotations", fn.get("annotations")),
        ("Secrets", fn.get("secrets")),
        ("Constraints", fn.get("constraints")),
        ("Limits", fn.get("limits")),
        ("Requests", fn.get("requests")),
        ("Read-only root", fn.get("readOnlyRootFilesystem") or None),
        ("Message", fn.get("message")),
    ]
    print(output.fields(pairs))
    return 0


def _invoke(args: argparse.Namespace) -> int:
    name, namespace = _qualified(args.name, args.namespace)
    headers, query = _pairs(args.header, "--header"), _pair_list(args.query, "--query")
    stdin = sys.stdin
    body = b"" if stdin is None or stdin.closed or stdin.isatty() else stdin.buffer.read()
    reply = _client(args).invoke(
        name,
        body,
        method=args.method,
        headers=headers,
        query=query,
        namespace=namespace,
        path=args.path,
        asynchronous=args.asynchronous,
    )
    if not reply.ok:
        detail = f": {error_text(reply.body, reply.status)}" if reply.body.strip() else ""
        return _fail(f"{args.name} answered {reply.status}{detail}", 1)
    if args.asynchronous:  # the call id alone on stdout, so scripts can capture it: id=$(stoker invoke --async f)
        call_id = reply.headers.get("x-call-id", "")
        print(call_id)
        print(f"Accepted {args.name}; fetch the result with: stoker result {call_id}", file=sys.stderr)
        return 0
    sys.stdout.buffer.write(reply.body)
    sys.stdout.flush()
    return 0


def _scale(args: argparse.Namespace) -> int:
    name, namespace = _qualified(args.name, args.namespace)
    _client(args).scale(name, args.replicas, namespace)
    print(f"Scaled {name} ({namespace or DEFAULT_NAMESPACE}) to {args.replicas} replicas.")
    return 0


def _logs(args: argparse.Namespace) -> int:
    name, namespace = _qualified(args.name, args.namespace)
    since: datetime | None = None
    if args.since:
        try:
            since = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since, "--since"))
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from None
    for entry in _client(args).logs(name, namespace, tail=args.tail, follow=args.follow, since=since):
        if args.json:
            print(json.dumps(entry), flush=True)
        else:
            text = str(entry.get("text", "")).rstrip("\n")
            print(f"{entry.get('timestamp', '')} {entry.get('instance', '')} {text}", flush=True)
    return 0


def _remove(args: argparse.Namespace) -> int:
    client = _client(args)
    failed = 0
    for qualified in args.names:
        name, namespace = _qualified(qualified, args.namespace)
        try:
            client.remove(name, namespace)
        except GatewayError as exc:
            failed += 1
            _fail(f"{name}: {exc.message}", 1)
            continue
        print(f"Removed {name} ({namespace or DEFAULT_NAMESPACE}).")
    return 1 if failed else 0


def _namespaces(args: argparse.Namespace) -> int:
    from stoker.cli.namespaces import run_namespaces

    pairs = {"label": _pairs(args.label, "--label"), "annotation": _pairs(args.annotation, "--annotation")}
    return run_namespaces(_client(args), args, pairs)


def _info(args: argparse.Namespace) -> int:
    client = _client(args)
    data = client.info()
    if args.json:
        return output.print_json(data)
    print(output.fields([("gateway", client.gateway), *output.flatten(data)]))
    return 0


# -- helpers -------------------------------------------------------------------------------------


def _gateway_url(args: argparse.Namespace, from_stack: str = "") -> str:
    """--gateway, then STOKER_GATEWAY / OPENFAAS_URL, then where `stoker up` recorded it in STOKER_HOME, then the
    stack's provider.gateway, then the default."""
    from stoker.config import gateway_url

    return str(args.gateway or gateway_url(fallback=from_stack))


def _client(args: argparse.Namespace, from_stack: str = "") -> Client:
    try:
        return Client(_gateway_url(args, from_stack))
    except GatewayError as exc:  # a malformed URL is a usage mistake, not a failed operation
        raise UsageError(exc.message) from None


def _qualified(name: str, namespace: str | None) -> tuple[str, str | None]:
    """``name.namespace`` or ``name`` with --namespace; the namespace stays None when neither gives one."""
    if "." in name:
        return split_qualified(name)
    return name, namespace


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``K=V`` flags as a dict; a later key wins."""
    return dict(_pair_list(items, flag))


def _pair_list(items: list[str], flag: str) -> list[tuple[str, str]]:
    """``K=V`` flags in order, repeated keys kept (query strings may repeat a key)."""
    pairs: list[tuple[str, str]] = []
    for item in items:
        separator, eq, colon = "=", item.find("="), item.find(":")
        if flag == "--header" and colon >= 0 and (eq < 0 or colon < eq):
            separator = ":"  # curl style "Name: value", whose value may itself hold "="
        key, sep, value = item.partition(separator)
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), value.strip() if flag == "--header" else value))
    return pairs


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is negative")
    return value


def _origin(fn: dict[str, Any]) -> str:
    return str(fn.get("image") or "(source)")


if __name__ == "__main__":
    sys.exit(main())
