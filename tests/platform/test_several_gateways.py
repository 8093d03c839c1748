"""Several stateless gateways and one active controller, all real processes, on the local swarm and one Redis.

Why Swarm: it is the backend where the state lives outside the gateway (services and their labels) and which runs
here for real; its ``published`` route reaches the tasks from the host, so the gateways and controllers run as plain
processes next to the test. (The local backend's replicas belong to one ``stoker up``; Kubernetes cannot run here.)

Two ``stoker up --backend swarm`` gateways (autoscaler off) and two ``stoker controller`` processes share Redis: the
test spreads load over both gateways and checks that the leader's view of in-flight and started calls is the sum of
both gateways' counts and that it scales the function; kills the leader and sees the standby act within the TTL;
kills a gateway right after it accepted async calls and sees every one processed by the other; restarts the gateway
and sees it know the function from the swarm alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from runtime.backends.swarm.config import PLATFORM, POOL_GENERIC
from runtime.backends.swarm.pool import role
from tests.platform_fixture import ROOT, Platform, start_platform, write_handler
from tests.runtime.backends.swarm.test_support import remove_platform, swarm_engine, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

HANDLER = """\
import time

def handle(event, context):
    time.sleep(float(event.query.get("s", "0")))
    return "ok"
"""
TTL_S = 3.0
TICK_S = 0.5


class Controller:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stoker", "controller", "--port", "0", "--host", "127.0.0.1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.output: list[str] = []
        self.url = ""
        threading.Thread(target=self._pump, daemon=True).start()
        wait_for(lambda: self.url or self.proc.poll() is not None, 60, "the controller to listen")
        assert self.url, "".join(self.output)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"controller on (http://\S+)", line)
            if m:
                self.url = m.group(1)

    def metric(self, name: str, fn: str = "") -> float | None:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        label = f'{{function_name="{fn}"}}' if fn else ""
        m = re.search(rf"^{re.escape(name + label)} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    @property
    def leading(self) -> bool:
        return self.proc.poll() is None and self.metric("stoker_controller_leader") == 1


def _started(gateway: Platform, fn: str) -> int:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    m = re.search(rf'^gateway_function_invocation_started{{function_name="{re.escape(fn)}"}} (\d+)$', text, re.M)
    return int(m.group(1)) if m else 0


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this test's own, on a Unix socket: the leader lock and the load keys are global names, so
    on the shared server another run's controllers would contend for the same lock (and its cleanup would delete
    theirs)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (scripts/setup.d/30-redis.sh)")
    folder = Path(tempfile.mkdtemp(prefix="stoker-redis-"))  # short: a socket path must fit in 107 bytes
    sock = folder / "redis.sock"
    proc = subprocess.Popen(
        [server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{sock}?db=0"
    try:
        r = redis.Redis.from_url(url)

        def answers() -> bool:
            with contextlib.suppress(redis.ConnectionError):
                return bool(r.ping())
            return proc.poll() is not None

        wait_for(answers, 30, "the private redis-server")
        r.close()
        assert proc.poll() is None, "redis-server exited"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def shared_env(private_redis: str) -> Iterator[dict[str, str]]:
    engine = swarm_engine()
    platform = f"t{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "STOKER_SWARM_PLATFORM": platform,
        "STOKER_SWARM_NETWORK": f"{platform}-functions",
        "STOKER_SWARM_ROUTE": "published",
        "STOKER_SWARM_STOP_DELAY_S": "1",
        "STOKER_BACKEND": "swarm",
        "STOKER_REDIS_URL": private_redis,
        "STOKER_AUTOSCALE": "false",
        "STOKER_AUTOSCALE_TICK_S": str(TICK_S),
        "STOKER_LEADER_TTL_S": str(TTL_S),
        "STOKER_PANIC_WINDOW_S": "2",
        "STOKER_STABLE_WINDOW_S": "20",
        "STOKER_QUEUE_CLAIM_IDLE_S": "5",
    }
    try:
        yield env
    finally:
        remove_platform(engine, platform, f"{platform}-functions")
        engine.close()


def test_two_gateways_one_controller(shared_env: dict[str, str], tmp_path: Path) -> None:
    env = shared_env
    fn_name = f"multi-{env['STOKER_SWARM_PLATFORM']}"
    fn = f"{fn_name}.openfaas-fn"
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    procs: list[subprocess.Popen[str]] = []
    a = start_platform(home_a, "--backend", "swarm", env=env)
    procs.append(a.proc)
    try:
        home_b.mkdir()
        shutil.copy(home_a / "platform.key", home_b / "platform.key")  # one platform, one signing key
        b = start_platform(home_b, "--backend", "swarm", env=env)
        procs.append(b.proc)
        c1 = Controller({**env, "STOKER_HOME": str(tmp_path / "controller1")})
        procs.append(c1.proc)
        c2 = Controller({**env, "STOKER_HOME": str(tmp_path / "controller2")})
        procs.append(c2.proc)
        wait_for(lambda: c1.leading != c2.leading, 30, "exactly one leading controller")
        leader, standby = (c1, c2) if c1.leading else (c2, c1)

        # Deployed through one gateway, known to the other (the swarm holds the metadata).
        labels = {"com.openfaas.scale.min": "1", "com.openfaas.scale.max": "3", "com.openfaas.scale.target": "2"}
        reply = a.deploy(fn_name, write_handler(tmp_path / "fn", HANDLER), labels=labels)
        assert reply.status_code in (200, 202), reply.text
        with b.client() as c:
            wait_for(lambda: c.get(f"/system/function/{fn_name}").status_code == 200, 60, "gateway b to know it")
            assert c.get(f"/system/function/{fn_name}").json()["labels"]["com.openfaas.scale.max"] == "3"
            wait_for(lambda: httpx.post(f"{b.url}/function/{fn_name}", timeout=30).status_code == 200, 60, "b routes")

        # Load over both gateways: the leader sees the sum, and scales the function up.
        before = _started(a, fn) + _started(b, fn)
        with ThreadPoolExecutor(8) as pool:
            calls = [
                pool.submit(httpx.post, f"{g.url}/function/{fn_name}?s=8", timeout=60) for g in (a, b) for _ in range(4)
            ]
            wait_for(lambda: leader.metric("stoker_controller_inflight", fn) == 8, 20, "the leader to see 8 in flight")
            assert [c.result().status_code for c in calls] == [200] * 8
        assert _started(a, fn) >= 4 and _started(b, fn) >= 4  # both gateways carried the load
        wait_for(
            lambda: leader.metric("stoker_controller_started", fn) == _started(a, fn) + _started(b, fn),
            10,
            "the leader's started count to equal the gateways' sum",
        )
        assert _started(a, fn) + _started(b, fn) == before + 8

        def scaled() -> bool:
            return any(f"autoscaler: {fn}: 1 -> " in line for line in leader.output)

        with contextlib.suppress(AssertionError):
            wait_for(lambda: scaled() or leader.proc.poll() is not None, 30, "a scale-up")
        assert scaled(), "".join(leader.output) + httpx.get(f"{leader.url}/metrics").text
        assert not any(f"autoscaler: {fn}:" in line for line in standby.output)  # only one controller acts

        # The leader dies without a word: the standby leads once its lock expires, and decides.
        killed_at = time.monotonic()
        leader.proc.kill()
        leader.proc.wait(10)
        wait_for(lambda: standby.leading, TTL_S + 30, "the standby to lead")
        wait_for(lambda: standby.metric("stoker_autoscaler_desired_replicas", fn) is not None, 30, "a decision")
        took = time.monotonic() - killed_at
        # Not before the dead leader's lock expired (it renewed it at most a tick before it died: one controller at
        # a time); then within the waits above, which leave a loaded 2-core machine room. The exact schedule (the
        # TTL and the ticks) is tested on a fake clock in tests/autoscaler/test_shared.py.
        assert took > TTL_S - 2 * TICK_S, took
        # The new leader tends the warm pool (generic one-task services): one taken away is replaced.
        engine = swarm_engine()
        label = {"label": f"{PLATFORM}={env['STOKER_SWARM_PLATFORM']}"}

        def generic() -> list[str]:
            return [s["Spec"]["Name"] for s in engine.api.services(filters=label) if role(s) == POOL_GENERIC]

        wait_for(lambda: len(generic()) == 2, 120, "a full pool")
        gone = generic()[0]
        engine.api.remove_service(gone)
        wait_for(lambda: len(generic()) == 2 and gone not in generic(), 120, "the new leader to refill the pool")
        wait_for(lambda: standby.metric("stoker_warm_pool_ready") == 2, 60, "the leader to see the pool full")

        # Async calls accepted by gateway b, which is killed at once: all processed (the queue is Redis).
        ids = []
        for i in range(10):
            r = httpx.post(f"{b.url}/async-function/{fn_name}?s=1", content=str(i), timeout=30)
            assert r.status_code == 202, r.text
            ids.append(r.headers["X-Call-Id"])
        b.proc.kill()
        b.proc.wait(10)
        with a.client() as c:

            def done() -> bool:
                return all(c.get(f"/system/async-result/{i}").status_code == 200 for i in ids)

            wait_for(done, 90, "every call gateway b accepted to be processed")
            assert {c.get(f"/system/async-result/{i}").text for i in ids} == {"ok"}

        # A restarted gateway knows everything from the swarm.
        b2 = start_platform(home_b, "--backend", "swarm", env=env)
        procs.append(b2.proc)
        with b2.client() as c:
            wait_for(lambda: c.get(f"/system/function/{fn_name}").status_code == 200, 30, "b2 to know the function")
            status = c.get(f"/system/function/{fn_name}").json()
            assert status["labels"]["com.openfaas.scale.target"] == "2" and status["replicas"] >= 1
            wait_for(lambda: httpx.post(f"{b2.url}/function/{fn_name}", timeout=30).status_code == 200, 60, "routes")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
