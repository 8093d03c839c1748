"""``stoker deploy app.py``: import a Python file and deploy the functions of every :class:`App` it defines.

The file is imported as a module named after it (``app.py`` -> ``app``), with its folder first on ``sys.path`` so
its own helper modules import; code under ``if __name__ == "__main__":`` does not run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from stoker.cli import output
from stoker.client import GatewayError
from stoker.names import DEFAULT_NAMESPACE
from stoker.sdk.app import App
from stoker.sdk.errors import SDKError


class AppFileError(Exception):
    """The file cannot be imported or defines no App."""


class AppDeployFailed(Exception):
    """The file deploys at import (``app.deploy()`` at module level, outside ``__main__``) and that deploy failed."""


def load_apps(path: str | Path) -> list[App]:
    """Import ``path`` and return the :class:`App` objects among its globals, in definition order."""
    file = Path(path).resolve()
    if not file.is_file():
        raise AppFileError(f"{path}: no such file")
    name = file.stem if file.stem.isidentifier() else "stoker_app"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise AppFileError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    sys.modules[name] = module  # registered, so that its functions are pickled by value (see packaging.py)
    try:
        spec.loader.exec_module(module)
    except (SDKError, GatewayError) as exc:  # the file itself called the platform, which refused or was not there
        raise AppDeployFailed(f"{path}: {exc}") from None
    except Exception as exc:
        raise AppFileError(f"cannot import {path}: {type(exc).__name__}: {exc}") from None
    apps: list[App] = []
    for value in vars(module).values():
        if isinstance(value, App) and value not in apps:
            apps.append(value)
    if not apps:
        raise AppFileError(f"{path} defines no stoker.App (app = App('name') at module level)")
    return apps


def deploy_app_file(path: str, gateway: str | None, namespace: str | None, as_json: bool) -> int:
    """Deploy every function of every App in ``path``; print one line per function; return the exit status."""
    try:
        apps = load_apps(path)
    except AppFileError as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 2
    except AppDeployFailed as exc:
        print(f"stoker: {exc}", file=sys.stderr)
        return 1
    results = []
    for app in apps:
        app.configure(gateway=gateway, namespace=namespace)
        try:
            names = app.deploy()
        except (SDKError, ValueError) as exc:
            print(f"stoker: app {app.name}: {exc}", file=sys.stderr)
            return 1
        ns = app.namespace or DEFAULT_NAMESPACE
        for name in names:
            url = app.client.function_url(name, app.namespace)
            results.append({"app": app.name, "name": name, "namespace": ns, "url": url})
            if not as_json:
                print(f"Deployed {name} ({ns}) from app {app.name}. URL: {url}", flush=True)
    if as_json:
        output.print_json(results)
    return 0
