"""The errors stoker raises across components.

``StokerError`` is the root; every subclass carries an HTTP status so the gateway can turn it into a JSON error
answer without a table of its own:

- ``InvalidRequest`` (400): a malformed body, name, stack file or bundle.
- ``NotFound`` (404): no such function, namespace or secret.
- ``Conflict`` (409): the thing exists already.
- ``PayloadTooLarge`` (413): a body or bundle over the configured limit.
- ``DeployFailed`` (422): the function could not start (syntax or import error in the handler, and so on).
- ``BackendUnavailable`` (503): the orchestrator cannot be reached.
- ``Busy`` (503): the gateway is at a limit of its own (for example request bodies held in memory); retry shortly.
- ``StateNotSaved`` (500): a state file under ``STOKER_HOME`` could not be written (nothing was changed);
  ``StorageFull`` (507), its subclass: because the file system is full.
"""

from __future__ import annotations


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


class BackendUnavailable(StokerError):
    status = 503


class Busy(StokerError):
    status = 503


class StateNotSaved(StokerError):
    status = 500


class StorageFull(StateNotSaved):
    status = 507
