"""Generic replicas of the warm pool: specialised only by a request signed with their own key, once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.backends.pool import replica_key, signed_request
from runtime.replica.specialize import SPECIALIZE_PATH
from stoker import bundle
from tests.runtime.replica.replica_process import ROOT, collect_output, wait_exit, write_function

KEY = b"k" * 32


class Generic:
    """A generic replica process (``STOKER_POOL=1``) with its key passed through a pipe, as the pool starts it;
    or, with ``key_file``, read from a file as on Swarm and Kubernetes (an orchestrator secret)."""

    def __init__(self, workdir: Path, key_file: Path | None = None) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        read_fd, write_fd = os.pipe()
        os.write(write_fd, KEY)
        os.close(write_fd)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STOKER_")}
        env.update(
            PYTHONPATH=str(ROOT),
            STOKER_POOL="1",
            STOKER_POOL_DIR=str(workdir),
            STOKER_LISTEN_FD=str(sock.fileno()),
        )
        env.update({"STOKER_POOL_KEY_FILE": str(key_file)} if key_file else {"STOKER_POOL_KEY_FD": str(read_fd)})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=[sock.fileno(), read_fd],
        )
        sock.close()
        os.close(read_fd)
        self.stdout, self.stderr, self.readers = collect_output(self.proc)

    def specialise(self, folder: Path, env: dict[str, str], key: bytes = KEY) -> httpx.Response:
        body, signature = signed_request(key, env, bundle.pack(folder))
        return httpx.post(self.url + SPECIALIZE_PATH, content=body, headers={"x-stoker-signature": signature})


@pytest.fixture
def generic(tmp_path: Path) -> Iterator[Generic]:
    g = Generic(tmp_path / "work")
    yield g
    if g.proc.poll() is None:
        g.proc.kill()
    g.proc.wait(5)


HANDLER = """
import os
def handle(event, context):
    return {"greeting": os.environ.get("GREETING"), "name": context.function_name,
            "key_var": [k for k in os.environ if "POOL_KEY" in k], "body": event.text,
            "key_in_environ": b"k" * 32 in open("/proc/self/environ", "rb").read(),
            "no_new_privs": [l.split()[1] for l in open("/proc/self/status") if l.startswith("NoNewPrivs")]}
"""


def test_generic_replica_serves_nothing_until_specialised_then_serves_the_function(
    generic: Generic, tmp_path: Path
) -> None:
    assert httpx.get(generic.url + "/_/health", timeout=10).status_code == 200
    assert httpx.get(generic.url + "/_/ready").status_code == 503
    assert httpx.post(generic.url + "/anything", content=b"x").status_code == 503

    folder = write_function(tmp_path / "fn", HANDLER)
    r = generic.specialise(folder, {"GREETING": "hi", "STOKER_FUNCTION_NAME": "greeter", "exec_timeout": "5s"})
    assert r.status_code == 200, r.text
    assert httpx.get(generic.url + "/_/ready").status_code == 200
    out = httpx.post(generic.url + "/", content=b"body").json()
    assert out == {
        "greeting": "hi", "name": "greeter", "key_var": [], "body": "body", "key_in_environ": False,
        "no_new_privs": ["1"],  # set by the replica itself before any function code loads
    }  # fmt: skip

    # Once only: the key is gone, so the function cannot be replaced by another bundle.
    again = generic.specialise(folder, {"GREETING": "evil"})
    assert again.status_code == 409
    assert httpx.post(generic.url + "/", content=b"b").json()["greeting"] == "hi"


def test_a_request_not_signed_with_the_replicas_key_is_refused_before_anything_is_extracted(
    generic: Generic, tmp_path: Path
) -> None:
    folder = write_function(tmp_path / "fn", "raise SystemExit('imported!')\n")
    httpx.get(generic.url + "/_/health", timeout=10)
    r = generic.specialise(folder, {}, key=b"x" * 32)
    assert r.status_code == 403
    assert not (tmp_path / "work" / "code").exists()  # nothing extracted
    assert generic.proc.poll() is None
    assert httpx.get(generic.url + "/_/ready").status_code == 503  # still generic


def test_a_signature_header_that_is_not_ascii_is_refused_and_the_key_still_works(
    generic: Generic, tmp_path: Path
) -> None:
    folder = write_function(tmp_path / "fn", HANDLER)
    body, _ = signed_request(KEY, {}, bundle.pack(folder))
    httpx.get(generic.url + "/_/health", timeout=10)
    r = httpx.post(generic.url + SPECIALIZE_PATH, content=body, headers={"x-stoker-signature": b"\xe9" * 64})
    assert (r.status_code, r.text) == (403, "the specialisation request is not signed with this replica's key")
    assert generic.specialise(folder, {}).status_code == 200  # the refusal used nothing up


def test_a_handler_that_cannot_load_fails_the_specialisation_and_the_replica_exits(
    generic: Generic, tmp_path: Path
) -> None:
    folder = write_function(tmp_path / "fn", "def handle(event, context)\n    return 1\n")
    httpx.get(generic.url + "/_/health", timeout=10)
    r = generic.specialise(folder, {})
    assert r.status_code == 422
    assert "SyntaxError" in r.text and "handler.py, line 1" in r.text
    assert generic.proc.wait(10) == 3


def test_on_an_orchestrator_the_generic_replica_takes_its_derived_key_from_a_secret_file(tmp_path: Path) -> None:
    platform = b"p" * 32
    key_file = tmp_path / "key"
    key_file.write_bytes(replica_key(platform, "stoker-pool-1a2b"))
    g = Generic(tmp_path / "work", key_file=key_file)
    try:
        assert httpx.get(g.url + "/_/health", timeout=10).status_code == 200
        folder = write_function(tmp_path / "fn", HANDLER)
        assert g.specialise(folder, {}, key=platform).status_code == 403  # never the platform key itself
        assert g.specialise(folder, {}, key=replica_key(platform, "stoker-pool-other")).status_code == 403
        r = g.specialise(folder, {"GREETING": "file"}, key=replica_key(platform, "stoker-pool-1a2b"))
        assert r.status_code == 200, r.text
        assert httpx.post(g.url + "/", content=b"x").json()["greeting"] == "file"
    finally:
        g.proc.kill()
        g.proc.wait(5)


def test_a_generic_replica_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    g = Generic(tmp_path / "work", key_file=tmp_path / "missing")
    assert wait_exit(g.proc, g.readers, 10) == 2
    assert any("STOKER_POOL_KEY_FILE: cannot read the key" in line for line in g.stderr), g.stderr
