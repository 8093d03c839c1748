from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.replica.config import ReplicaConfig
from stoker.errors import ConfigError
from tests.runtime.replica.conftest import StartReplica


def test_defaults(tmp_path: Path) -> None:
    config = ReplicaConfig.from_env({"STOKER_FUNCTION_DIR": str(tmp_path / "resize")})
    assert config.function_dir == tmp_path / "resize"
    assert (config.module_name, config.function_attr) == ("handler", "handle")
    assert config.function_name == "resize"
    assert (config.exec_timeout_s, config.drain_timeout_s, config.max_inflight) == (60.0, 60.0, 0)
    assert (config.listen_fd, config.host, config.port) == (None, "0.0.0.0", 8080)
    assert config.secrets_dir == Path("/var/openfaas/secrets")
    assert config.threads == 64


def test_values() -> None:
    config = ReplicaConfig.from_env(
        {
            "STOKER_FUNCTION_DIR": "/srv/fn",
            "STOKER_ENTRYPOINT": "pkg.mod:run",
            "STOKER_FUNCTION_NAME": "thumbs",
            "STOKER_NAMESPACE": "team-a",
            "exec_timeout": "500ms",
            "max_inflight": "4",
            "STOKER_LISTEN_FD": "7",
            "port": "9000",
            "STOKER_SECRETS_DIR": "/run/secrets",
        }
    )
    assert (config.module_name, config.function_attr, config.function_name) == ("pkg.mod", "run", "thumbs")
    assert (config.exec_timeout_s, config.drain_timeout_s) == (0.5, 0.5)  # drain defaults to the exec timeout
    assert (config.max_inflight, config.threads, config.listen_fd, config.port) == (4, 4, 7, 9000)
    assert ReplicaConfig.from_env({"exec_timeout": "2m", "STOKER_DRAIN_TIMEOUT": "5"}).drain_timeout_s == 5.0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"exec_timeout": "soon"}, "exec_timeout: 'soon' is not a duration"),
        ({"exec_timeout": "0"}, "exec_timeout: must be greater than zero"),
        ({"STOKER_DRAIN_TIMEOUT": "-1s"}, "STOKER_DRAIN_TIMEOUT: '-1s' is not a duration"),
        ({"max_inflight": "many"}, "max_inflight: 'many' is not a whole number"),
        ({"max_inflight": "-1"}, "max_inflight: must be at least 0, got -1"),
        ({"port": "70000"}, "port: must be between 1 and 65535, got 70000"),
        ({"STOKER_LISTEN_FD": "three"}, "STOKER_LISTEN_FD: 'three' is not a whole number"),
        ({"STOKER_ENTRYPOINT": "handler"}, "STOKER_ENTRYPOINT: 'handler' is not of the form module:function"),
        ({"STOKER_ENTRYPOINT": "my-mod:run"}, "STOKER_ENTRYPOINT: 'my-mod:run' is not of the form"),
        (
            {"STOKER_FUNCTION_NAME": "Bad_Name"},
            "STOKER_FUNCTION_NAME/STOKER_NAMESPACE: function name 'Bad_Name'",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ReplicaConfig.from_env(env)
    assert str(info.value).startswith(message)


def test_bad_value_exits_2_with_one_line(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(e, c):\n    return 1\n", env={"max_inflight": "lots"})
    assert replica.wait_exit() == 2
    assert replica.stderr == ["stoker: bad configuration: max_inflight: 'lots' is not a whole number\n"]


def test_listen_fd_that_is_not_a_socket_exits_2(start_replica: StartReplica) -> None:
    replica = start_replica("def handle(e, c):\n    return 1\n", env={"STOKER_LISTEN_FD": "999"})
    assert replica.wait_exit() == 2
    assert replica.stderr[-1].startswith("stoker: bad configuration: STOKER_LISTEN_FD: 999 is not a socket")


def test_diagnostics_as_json_lines(start_replica: StartReplica) -> None:
    """STOKER_LOG_FORMAT=json: the same diagnostic as one JSON object, with its level."""
    env = {"max_inflight": "lots", "STOKER_LOG_FORMAT": "json"}
    replica = start_replica("def handle(e, c):\n    return 1\n", env=env)
    assert replica.wait_exit() == 2
    [line] = replica.stderr
    entry = json.loads(line)
    assert (entry["level"], entry["logger"]) == ("error", "runtime.replica.server")
    assert entry["message"] == "bad configuration: max_inflight: 'lots' is not a whole number"
