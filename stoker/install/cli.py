"""``stoker install compose|swarm|kubernetes`` and ``stoker uninstall compose|swarm|kubernetes``.

``install`` prints the rendered install (to pipe into ``docker-compose -f -``, ``docker stack deploy -c -`` or
``kubectl apply -f -``), writes it (``-o FILE``) or applies it (``--apply``: secrets made, then the engine's own
command, then the gateway awaited where this machine can reach it). ``uninstall`` removes what the install created;
functions (and on Kubernetes the namespaces) stay unless asked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from stoker.config import default_home
from stoker.install import compose, engines, kubernetes, swarm
from stoker.install.render import dump
from stoker.install.values import TARGETS, Values

_VALUE_FLAGS: dict[str, tuple[type, str]] = {
    "name": (str, "the install's name: Compose project, Swarm stack and platform, Kubernetes namespace (stoker)"),
    "platform_image": (str, "gateway and controller image, pinned"),
    "runtime_image": (str, "the runtime image source deploys and the warm pool run, pinned"),
    "redis_image": (str, "the Redis image, pinned"),
    "redis_url": (str, "use this Redis (password in the URL) instead of running one"),
    "redis_maxmemory": (str, "Redis memory bound (256mb)"),
    "gateway_replicas": (int, "gateways (Kubernetes; Swarm with --entrypoint mesh)"),
    "controller_replicas": (int, "controllers: one leads, the others stand by"),
    "pool_size": (int, "warm generic replicas"),
    "function_memory": (str, "default memory limit of a function (512Mi)"),
    "port": (int, "published gateway port (Compose, Swarm)"),
    "bind": (str, "Compose: address the port is published on (127.0.0.1)"),
    "entrypoint": (str, "Swarm: host (a fixed port on each manager) or mesh (routing mesh, needs IPVS)"),
    "docker_gid": (str, "group of /var/run/docker.sock (default: $DOCKER_GID at deploy time)"),
    "functions_namespace": (str, "Kubernetes: namespace of the functions"),
    "ingress_host": (str, "Kubernetes: an Ingress with TLS for this host"),
}


def add_arguments(install: argparse.ArgumentParser, uninstall: argparse.ArgumentParser) -> None:
    for p in (install, uninstall):
        p.add_argument("target", choices=TARGETS)
    for name, (kind, help) in _VALUE_FLAGS.items():
        install.add_argument(f"--{name.replace('_', '-')}", dest=f"v_{name}", type=kind, help=help)
    uninstall.add_argument("--name", dest="v_name", default="stoker", help="the install's name (stoker)")
    install.add_argument("--apply", action="store_true", help="apply it to the engine this machine talks to")
    install.add_argument("-o", "--output", metavar="FILE", help="write it here instead of printing it")
    install.add_argument("--wait", type=float, default=180, metavar="S", help="with --apply: wait for /healthz")
    uninstall.add_argument("--functions", action="store_true", help="also remove the functions and their data")
    uninstall.add_argument("--namespaces", action="store_true", help="Kubernetes: also delete both namespaces")


def values_from(args: argparse.Namespace) -> Values:
    given = {k[2:]: v for k, v in vars(args).items() if k.startswith("v_") and v is not None}
    return Values(target=args.target, **given)


def flags(values: Values) -> str:
    """The command line that renders ``values`` again (only what differs from the defaults)."""
    default = Values(target=values.target, name=values.name)
    out = []
    for name in _VALUE_FLAGS:
        value = getattr(values, name)
        if (name == "name" and value != "stoker") or (name != "name" and value != getattr(default, name)):
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


def install_folder(values: Values) -> Path:
    return default_home() / "installs" / f"{values.target}-{values.name}"


def run_install(args: argparse.Namespace) -> int:
    values = values_from(args)
    text = render_text(values)
    if not args.apply:
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    admin = os.environ.get("STOKER_ADMIN_PASSWORD", "")
    start = time.monotonic()
    if values.target != "compose" and not admin:  # kept where this machine's CLI finds it (STOKER_HOME/credentials)
        admin = _admin_password(install_folder(values))
    if values.target == "compose":
        engines.compose_apply(values, install_folder(values), text, admin)
        url = f"http://{'127.0.0.1' if values.bind in ('0.0.0.0', '') else values.bind}:{values.port}"
    elif values.target == "swarm":
        engines.swarm_apply(values, text, admin)
        url = f"http://127.0.0.1:{values.port}"
    else:
        engines.kube_apply(values, kubernetes.render(values), admin)
        print(f"Applied stoker to namespace {values.name} in {time.monotonic() - start:.1f}s.")
        return 0
    engines.wait_healthy(f"{url}/healthz", args.wait)
    print(f"stoker ({values.target}, {values.name}) answers on {url} after {time.monotonic() - start:.1f}s.")
    if values.target == "compose":
        print(f"Its passwords are in {install_folder(values) / '.env'}.")
    else:
        print(
            f"The admin password is in {install_folder(values) / 'credentials'} (unless STOKER_ADMIN_PASSWORD set it)."
        )
    return 0


def _admin_password(folder: Path) -> str:
    """The install's admin password: the one kept in ``folder`` from an earlier apply, else a new one kept there
    (an existing secret on the engine wins over it; uninstall --functions removes both)."""
    from stoker.credentials import load_or_create_password, read_password

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return read_password(folder) or load_or_create_password(folder)


def run_uninstall(args: argparse.Namespace) -> int:
    values = Values(target=args.target, name=args.v_name)
    if values.target == "compose":
        engines.compose_uninstall(values, install_folder(values), args.functions)
    elif values.target == "swarm":
        engines.swarm_uninstall(values, args.functions)
    else:
        engines.kube_uninstall(values, kubernetes.render(values), args.functions, args.namespaces)
    if args.functions and values.target != "compose":
        import shutil

        shutil.rmtree(install_folder(values), ignore_errors=True)
    kept = "" if args.functions else " (functions kept: --functions removes them too)"
    print(f"Removed stoker ({values.target}, {values.name}){kept}.")
    return 0
