"""The errors stoker raises across components: one family under :class:`StokerError`.

Every class carries an HTTP status, so the gateway turns any of them into a JSON error answer
(:func:`error_body`: ``{"error": message}``) without a table of its own, and the CLI into an exit
status. The hierarchy::

    StokerError (500)
    ├── InvalidRequest (400): a malformed body, name, stack file, schedule or bundle
    │   ├── InvalidName: not a DNS-1123 label (stoker.names); also a ValueError, as it always was
    │   ├── StackError: a stack.yml that cannot be used, with its file and line (stoker.stack)
    │   ├── ScheduleError: a cron expression that cannot be used (events.schedule)
    │   └── CodeSignatureError: a code bundle that is missing or does not verify (runtime.codesign)
    ├── NotFound (404): no such function, namespace or secret
    ├── Conflict (409): the thing exists already
    ├── PayloadTooLarge (413): a body or bundle over the configured limit
    ├── DeployFailed (422): the function could not start (syntax or import error in the handler, and so on)
    ├── Unsupported (501): the backend cannot do this (for example create namespaces on Kubernetes)
    ├── BackendUnavailable (503): the orchestrator cannot be reached
    ├── Busy (503): the gateway is at a limit of its own (for example request bodies held in memory); retry shortly
    ├── QueueUnavailable (503): the queue cannot be reached (events.queue)
    ├── StateNotSaved (500): a state file under ``STOKER_HOME`` could not be written (nothing was changed)
    │   └── StorageFull (507): because the file system is full
    ├── ConfigError (500): a setting (``STOKER_*`` or a replica's variable) that cannot be used; names the variable
    │   └── PlatformError: the platform cannot start (gateway.server)
    └── GatewayError: the gateway refused a request (``status``: its HTTP status) or could not be reached (0)
                      (stoker.client, the CLI and SDK side)

The SDK's own exceptions (:mod:`stoker.sdk.errors`) are its public API and stay apart; internal signals that never
leave a module (an upstream that closed, a handler timeout) are private to it.
"""

from __future__ import annotations

import json


class StokerError(Exception):
    status = 500


class InvalidRequest(StokerError):
    status = 400


class NotFound(StokerError):
    status = 404


class Conflict(StokerError):
    status = 409


class PayloadTooLarge(StokerError):
    status = 413


class DeployFailed(StokerError):
    status = 422


class Unsupported(StokerError):
    status = 501


class BackendUnavailable(StokerError):
    status = 503


class Busy(StokerError):
    status = 503


class StateNotSaved(StokerError):
    status = 500


class StorageFull(StateNotSaved):
    status = 507


class ConfigError(StokerError, ValueError):
    """A setting that cannot be used; the message names the variable and says what is wrong."""

    status = 500


def error_body(message: str) -> bytes:
    """The body of every error answer stoker gives over HTTP (gateway routes, proxy, edge refusals): JSON
    ``{"error": message}``."""
    return json.dumps({"error": message}).encode()
