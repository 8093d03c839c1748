"""The replica contract: what a backend and a replica agree on, written once and imported by both sides.

A replica (``python -m runtime``, :mod:`runtime.replica.server`) serves HTTP on :data:`PORT` (or an inherited
socket), answers :data:`HEALTH_PATH` (alive) and :data:`READY_PATH` (ready; 429 at its in-flight limit), reads its
settings from the variables below (of-watchdog names where OpenFaaS has one), its secrets from :data:`SECRETS_DIR`,
and exits with one of the ``EXIT_*`` codes. A handler that cannot be imported ends stderr with a line that starts
with :data:`LOAD_ERROR_PREFIX`, which backends show as the function's status. A generic replica of the warm pool
(:data:`POOL_VAR` = ``1``) is specialised by one signed ``POST`` :data:`SPECIALIZE_PATH` (:func:`envelope`).

Backends (:mod:`runtime.backends`) read this module to start, probe and supervise replicas; the replica reads it to
serve. The code-signing half of the contract is :mod:`runtime.codesign`.
"""

from __future__ import annotations

import msgpack

from stoker.spec import FunctionDeployment

PORT = 8080
HEALTH_PATH = "/_/health"
READY_PATH = "/_/ready"
SPECIALIZE_PATH = "/_/specialize"
SECRETS_DIR = "/var/openfaas/secrets"  # where OpenFaaS (and the replica's default) reads secrets from
RUNTIME_UID = 10001  # any non-zero uid works: the image's files only need to be world-readable
RUNTIME_USER = f"{RUNTIME_UID}:{RUNTIME_UID}"
COMMAND = ("python3", "-m", "runtime")  # the base image's CMD; the local backend runs ``sys.executable -m runtime``

# Exit codes of a replica process.
EXIT_OK = 0
EXIT_SERVE_FAILED = 1  # could not serve (address in use)
EXIT_BAD_CONFIG = 2  # a bad variable, or a bad listening fd
EXIT_CANNOT_LOAD = 3  # the handler could not be imported: restarting will not help until it is redeployed
EXIT_HUNG = 4  # a timed-out handler could not be stopped: replace the replica at once
LOAD_ERROR_PREFIX = "stoker: cannot load handler:"  # the last stderr line before EXIT_CANNOT_LOAD

# Variables a replica reads (see :class:`runtime.replica.config.ReplicaConfig`).
FUNCTION_DIR_VAR = "STOKER_FUNCTION_DIR"
SECRETS_DIR_VAR = "STOKER_SECRETS_DIR"
PORT_VAR = "port"  # of-watchdog's name

# The warm pool's wire names (:mod:`runtime.replica.specialize` serves them, :mod:`runtime.backends.pool` sends).
POOL_VAR = "STOKER_POOL"
KEY_FD_VAR = "STOKER_POOL_KEY_FD"
KEY_FILE_VAR = "STOKER_POOL_KEY_FILE"  # on orchestrators: a secret file holding runtime.backends.pool.replica_key
DIR_VAR = "STOKER_POOL_DIR"
SIGNATURE_HEADER = b"x-stoker-signature"


def envelope(env: dict[str, str], code: bytes) -> bytes:
    """The body of a specialisation request: the function's variables and its code bundle."""
    data: bytes = msgpack.packb({"env": env, "bundle": code}, use_bin_type=True)
    return data


def load_error_line(reason: object) -> str:
    """The stderr line a replica writes before it exits with :data:`EXIT_CANNOT_LOAD`."""
    return f"{LOAD_ERROR_PREFIX} {reason}"


def load_error_reason(line: str) -> str:
    """The reason in a :func:`load_error_line` (what a backend shows as the function's status)."""
    return line.removeprefix(LOAD_ERROR_PREFIX).strip() or "the handler could not be loaded"


def function_environment(dep: FunctionDeployment) -> dict[str, str]:
    """The environment every backend gives a function's replicas: the deployment's own variables, then the ones
    :class:`runtime.replica.config.ReplicaConfig` reads (of-watchdog names where they exist)."""
    settings = dep.settings
    env = dict(dep.envVars)
    env.update(
        {
            "STOKER_FUNCTION_NAME": dep.service,
            "STOKER_NAMESPACE": dep.namespace,
            "STOKER_ENTRYPOINT": settings.entrypoint,
            "exec_timeout": f"{settings.timeout_s}s",
            "max_inflight": str(settings.concurrency),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if dep.envProcess:
        env["fprocess"] = dep.envProcess
    return env
