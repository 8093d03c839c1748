"""Cold start: time from request to response for a function at zero replicas.

Rows, all measured in one run: the local backend with the warm pool, the local backend without it, the docker
backend with and without its pool of generic containers (when Docker answers), the swarm backend with and without
its pool of generic one-task services (when the engine is a swarm manager; the gateway runs on the host and reaches
tasks through their published ports), and the baselines ``python3 -c pass`` (a bare interpreter start) and, when
Docker answers, ``docker run <base image> python3 -c pass``. Each trial
scales the function to zero through the management API, waits until its replica is gone and the pool is full again,
then times one ``POST /function/hello`` from send to the last byte.

    python -m bench.coldstart [--trials 20] [--docker-image stoker/runtime:latest] [--backends local,docker,swarm]

Prints a markdown table (median, p99, ratio of the median to ``python3 -c pass``).
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from stoker import bundle
from tests.platform_fixture import FUNCTIONS, Platform, start_platform


def wait(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.02)


def pool_ready(p: Platform) -> int:
    m = re.search(r"^stoker_warm_pool_ready (\d+)", httpx.get(f"{p.url}/metrics").text, re.M)
    return int(m.group(1)) if m else 0


def platform_trials(pool_size: int, trials: int, *args: str, env: dict[str, str] | None = None) -> list[float]:
    home = Path(tempfile.mkdtemp(prefix="stoker-bench-"))
    p = start_platform(home, *args, env={"STOKER_POOL_SIZE": str(pool_size), **(env or {})})
    try:
        with p.client() as c:
            body = {
                "service": "hello",
                "source": base64.b64encode(bundle.pack(FUNCTIONS / "hello")).decode(),
                "labels": {"com.openfaas.scale.min": "0"},
            }
            assert c.post("/system/functions", json=body, timeout=60).status_code == 202
            times = []
            with httpx.Client(timeout=60) as caller:

                def at_zero() -> bool:
                    status = c.get("/system/function/hello").json()
                    if status["replicas"] != 0:  # the autoscaler still saw the last trial's call and raised it
                        c.post("/system/scale-function/hello", json={"replicas": 0})
                    return bool(status["replicas"] == 0 and status["availableReplicas"] == 0)

                for _ in range(trials):
                    c.post("/system/scale-function/hello", json={"replicas": 0})
                    wait(at_zero, 180)
                    wait(lambda: pool_ready(p) >= pool_size, 180)
                    time.sleep(0.2)  # let the refill's process settle, so it does not share the CPU with the trial
                    if c.get("/system/function/hello").json()["replicas"] != 0:
                        # The autoscaler still remembered the previous trial's call and raised it: not a cold start.
                        c.post("/system/scale-function/hello", json={"replicas": 0})
                        wait(lambda: c.get("/system/function/hello").json()["availableReplicas"] == 0)
                    started = time.perf_counter()
                    r = caller.post(f"{p.url}/function/hello", content=b"bench")
                    times.append(time.perf_counter() - started)
                    assert r.status_code == 200, r.text
            return times
    finally:
        p.stop(timeout=120)  # the docker backend removes its containers before it exits
        shutil.rmtree(home, ignore_errors=True)


def swarm_trials(pool_size: int, trials: int) -> list[float]:
    """The swarm backend in a platform of its own (removed again afterwards)."""
    from tests.runtime.backends.swarm.test_support import remove_platform, swarm_engine

    platform = f"bench{uuid.uuid4().hex[:6]}"
    env = {
        "STOKER_SWARM_PLATFORM": platform,
        "STOKER_SWARM_NETWORK": f"{platform}-functions",
        "STOKER_SWARM_ROUTE": "published",
        "STOKER_SWARM_STOP_DELAY_S": "1",
    }
    try:
        return platform_trials(pool_size, trials, "--backend", "swarm", env=env)
    finally:
        engine = swarm_engine()
        remove_platform(engine, platform, f"{platform}-functions")
        engine.close()


def swarm_manager(docker: str) -> bool:
    info = subprocess.run([docker, "info", "--format", "{{.Swarm.ControlAvailable}}"], capture_output=True, text=True)
    return info.stdout.strip() == "true"


def command_trials(argv: list[str], trials: int) -> list[float]:
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--docker-image", default="stoker/runtime:latest")
    parser.add_argument("--backends", default="local,docker,swarm", help="comma-separated subset to measure")
    args = parser.parse_args()
    backends = set(args.backends.split(","))
    rows: list[tuple[str, list[float]]] = [
        ("python3 -c pass", command_trials([sys.executable, "-c", "pass"], args.trials)),
    ]
    if "local" in backends:
        rows.append(("local, warm pool", platform_trials(2, args.trials)))
        rows.append(("local, no pool", platform_trials(0, args.trials)))
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        if "docker" in backends:
            rows.append(("docker, warm pool", platform_trials(2, args.trials, "--backend", "docker")))
            rows.append(("docker, no pool", platform_trials(0, args.trials, "--backend", "docker")))
        argv = [docker, "run", "--rm", "--network", "none", args.docker_image, "python3", "-c", "pass"]
        rows.append((f"docker run {args.docker_image} python3 -c pass", command_trials(argv, args.trials)))
        if "swarm" in backends and swarm_manager(docker):
            rows.append(("swarm, warm pool", swarm_trials(2, args.trials)))
            rows.append(("swarm, no pool", swarm_trials(0, args.trials)))
    baseline = statistics.median(rows[0][1])
    print(f"{args.trials} trials each\n")
    print("| cold start | median ms | p99 ms | median vs python3 -c pass |")
    print("|---|---:|---:|---:|")
    for name, times in rows:
        median = statistics.median(times)
        print(f"| {name} | {median * 1000:.1f} | {p99(times) * 1000:.1f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
