"""The Python SDK: deploy plain Python functions and call them from Python (see docs/sdk.md).

Exceptions (all but remote ones derive from :class:`SDKError`): :class:`DeployError` (a deploy was refused),
:class:`CallFailed` (a call did not complete; ``.status``, ``.retryable``), :class:`RemoteError` (a remote exception
whose type could not be rebuilt here). A remote exception whose type can be rebuilt is raised as itself.
"""

from stoker.sdk.app import App, Function, FunctionOptions
from stoker.sdk.calls import FunctionCall
from stoker.sdk.errors import CallFailed, DeployError, RemoteError, RemoteTraceback, SDKError

__all__ = [
    "App",
    "CallFailed",
    "DeployError",
    "Function",
    "FunctionCall",
    "FunctionOptions",
    "RemoteError",
    "RemoteTraceback",
    "SDKError",
]
