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
from stoker.install import engines, kubernetes
from stoker.install.render import render_text
from stoker.install.values import FLAGS, TARGETS, Values


def add_arguments(install: argparse.ArgumentParser, uninstall: argparse.ArgumentParser) -> None:
    for p in (install, uninstall):
        p.add_argument("target", choices=TARGETS)
    for name, (kind, help) in FLAGS.items():
        flag = f"--{name.replace('_', '-')}"
        if kind is bool:  # a switch: present or not
            install.add_argument(flag, dest=f"v_{name}", action="store_true", default=None, help=help)
        else:
            install.add_argument(flag, dest=f"v_{name}", type=kind, help=help)
    uninstall.add_argument("--name", dest="v_name", default="stoker", help="the install's name (stoker)")
    install.add_argument("--apply", action="store_true", help="apply it to the engine this machine talks to")
    install.add_argument("-o", "--output", metavar="FILE", help="write it here instead of printing it")
    install.add_argument(
        "--wait",
        type=float,
        default=180,
        metavar="S",
        help="with --apply: wait this long for /healthz (Kubernetes: for each rollout; 0: do not wait)",
    )
    uninstall.add_argument("--functions", action="store_true", help="also remove the functions and their data")
    uninstall.add_argument("--namespaces", action="store_true", help="Kubernetes: also delete both namespaces")


def values_from(args: argparse.Namespace) -> Values:
    given = {k[2:]: v for k, v in vars(args).items() if k.startswith("v_") and v is not None}
    return Values(target=args.target, **given)


def install_folder(values: Values) -> Path:
    return default_home() / "installs" / f"{values.target}-{values.name}"


def run_install(args: argparse.Namespace) -> int:
    values = values_from(args)
    if args.apply and values.target != "kubernetes" and not values.edge_image:
        values = values.with_(edge_image=engines.running_edge_image(values) or None)  # kept through an upgrade
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
        engines.kube_apply(values, kubernetes.render(values), admin, wait_s=args.wait)
        rolled = " (its Deployments rolled out)" if args.wait else ""
        print(f"Applied stoker to namespace {values.name}{rolled} in {time.monotonic() - start:.1f}s.")
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
