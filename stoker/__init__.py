"""stoker: serverless Python functions on containers.

Handlers import what they return from here: ``from stoker import Response``. Python programs deploy and call
functions with the SDK: ``from stoker import App`` (see docs/sdk.md).
"""

from typing import TYPE_CHECKING, Any

from stoker.handler import Context, Event, Response

if TYPE_CHECKING:
    from stoker.sdk import App

from stoker.version import __version__

__all__ = ["App", "Context", "Event", "Response", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: handlers and the CLI import stoker and need neither msgpack nor cloudpickle.
    if name == "App":
        from stoker.sdk import App

        return App
    raise AttributeError(f"module 'stoker' has no attribute {name!r}")
