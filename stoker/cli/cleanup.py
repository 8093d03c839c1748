"""``stoker down`` and ``stoker purge``: stop this ``STOKER_HOME``'s platform and remove what it left behind.

``down`` stops the platform if it runs (SIGTERM to the pid ``stoker up`` recorded, then waits for it), then removes
its runtime objects on its backend (runtime/backends/cleanup.py) and keeps its state: the next ``stoker up`` starts
the same functions again. ``purge`` does that, then removes the images the platform built and ``STOKER_HOME`` itself
(state, credentials, platform key, requirement folders, queue). It asks first; ``--yes`` answers for scripts, and
without a terminal to ask on and no ``--yes`` it refuses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from stoker import gatewayrecord
from stoker.config import BACKENDS, Config
from stoker.errors import ConfigError, StokerError
from stoker.processes import alive

_STOP_MARGIN_S = 30.0  # beyond the drain timeout, for the platform to remove its replicas and exit


def add_arguments(down: argparse.ArgumentParser, purge: argparse.ArgumentParser) -> None:
    for p in (down, purge):
        p.add_argument(
            "--backend",
            help="local, docker, swarm or kubernetes (default: the one the last `stoker up` of STOKER_HOME used)",
        )
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask (for scripts)")


def run_down(args: argparse.Namespace) -> int:
    config, backend = _config(args)
    _tear_down(config, backend)
    print(f"stoker: down; state kept in {config.home} (`stoker up` starts the same functions again)")
    return 0


def run_purge(args: argparse.Namespace) -> int:
    config, backend = _config(args)
    _check_home(config.home)
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                "stoker purge removes everything of this platform: give --yes (there is no terminal to ask)"
            )
        answer = input(
            f"Remove the {backend} platform of {config.home}: its functions, secrets, queue, images it built and the "
            "folder itself? Type 'yes': "
        )
        if answer.strip().lower() != "yes":
            print("stoker: nothing removed")
            return 1
    _tear_down(config, backend)
    from runtime.backends.cleanup import built_images

    for line in built_images(backend, config):
        print(f"stoker: {line}")
    if config.home.is_dir():
        shutil.rmtree(config.home)
        print(f"stoker: removed {config.home}")
    print(
        "stoker: purged (the shared base image and the build cache stay: `docker rmi`, `stoker base-image --rebuild`)"
    )
    return 0


def _check_home(home: Path) -> None:
    """Refuse to remove a folder that is not a platform's state: STOKER_HOME=~ must never empty the user's home."""
    if not home.exists():
        return
    resolved = home.resolve()
    if resolved in (Path("/"), Path.home().resolve()) or not any((home / f).exists() for f in _HOME_MARKS):
        raise ConfigError(
            f"STOKER_HOME: {home} does not look like a platform's state (no {' or '.join(_HOME_MARKS)}); "
            "not removing it"
        )


_HOME_MARKS = ("platform.key", "credentials")


def _config(args: argparse.Namespace) -> tuple[Config, str]:
    config = Config.from_env()
    backend = args.backend or gatewayrecord.last_backend(config.home) or config.backend
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    return config, backend


def _tear_down(config: Config, backend: str) -> None:
    _stop(config)
    try:
        from runtime.backends.cleanup import tear_down  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise StokerError(f"cannot clean up: {exc}") from None
    lines = tear_down("local", config) if config.home.is_dir() else []
    if backend != "local":
        lines += tear_down(backend, config)
    for line in lines:
        print(f"stoker: {line}")


def _stop(config: Config) -> None:
    """Stop the platform of this home if it runs, and wait until it has (it removes its replicas as it stops)."""
    pid = gatewayrecord.running_pid(config.home)
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    wait_s = config.drain_timeout_s + _STOP_MARGIN_S
    deadline = time.monotonic() + wait_s
    while alive(pid):
        if time.monotonic() > deadline:
            raise StokerError(f"the platform (pid {pid}) did not stop within {wait_s:.0f}s; stop it and retry")
        time.sleep(0.1)
    print(f"stoker: stopped the platform (pid {pid})")
