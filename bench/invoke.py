"""Invoke throughput and latency: gateway vs. direct replica vs. a bare Starlette app, in one run.

    python -m bench.invoke [--duration 10] [--connections 1,32]

Every target serves the same "hello" answer on loopback; the load generator is ``wrk`` (a separate process, so it
does not share the event loop under test). Prints a table with requests/s, p50 and p99 latency, and the ratio of
each target's requests/s to the bare app's, plus the gateway's p50 overhead over the direct replica call.

Then the hop from the gateway to a replica on its own: the gateway's upstream client (on uvloop, as in the gateway)
calling one replica over TCP loopback and another over a Unix socket (how the local backend reaches its replicas),
in alternating rounds, so both see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from stoker import bundle

ROOT = Path(__file__).resolve().parents[1]

BARE_APP = textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        await request.body()
        return PlainTextResponse("Hello from stoker!\\n")

    app = Starlette(routes=[Route("/", hello, methods=["GET", "POST"])])
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def deploy_source(gateway: str, name: str, folder: Path) -> None:
    """Deploy the function in ``folder`` as ``name`` through the gateway's API, from source (the bench password)."""
    source = base64.b64encode(bundle.pack(folder)).decode()
    r = httpx.post(f"{gateway}/system/functions", json={"service": name, "source": source},
                   auth=("admin", "bench"), timeout=60)  # fmt: skip
    r.raise_for_status()


@contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, pass_fds: tuple[int, ...] = ()
) -> Iterator[None]:
    proc = subprocess.Popen(
        args, env={**os.environ, **(env or {})}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        pass_fds=pass_fds,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wrk(url: str, connections: int, duration: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from wrk --latency."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed responses\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def unix_listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(1024)
    return sock


async def _hop(host: str, port: int, workers: int, seconds: float) -> list[float]:
    """Latencies (s) of ``workers`` loops of upstream calls to one replica for ``seconds``."""
    from gateway.upstream import Upstream

    upstream = Upstream()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while (start := time.perf_counter()) < deadline:
            await upstream.request(host, port, "GET", b"/", [], b"", 30)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(loop() for _ in range(workers)))
    upstream.close()
    return latencies


def transports(tcp_port: int, unix_path: str, conns: list[int], seconds: int) -> dict[tuple[str, int], list[float]]:
    """Upstream client -> replica over TCP loopback and over a Unix socket, in alternating rounds."""
    import uvloop

    rounds = 4
    out: dict[tuple[str, int], list[float]] = {}
    for c in conns:
        for _ in range(rounds):
            for name, host, port in (("tcp loopback", "127.0.0.1", tcp_port), ("unix socket", unix_path, 0)):
                out.setdefault((name, c), []).extend(uvloop.run(_hop(host, port, c, seconds / rounds)))
    return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--connections", default="1,32", help="comma-separated connection counts (default 1,32)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    conns = [int(c) for c in args.connections.split(",")]
    hello = ROOT / "functions" / "hello"
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "bare.py").write_text(BARE_APP)
        bare_port, replica_port, gw_port = free_port(), free_port(), free_port()
        bare = [sys.executable, "-m", "uvicorn", "bare:app", "--port", str(bare_port), "--no-access-log",
                "--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]  # fmt: skip
        replica_env = {
            "STOKER_FUNCTION_DIR": str(hello),
            "STOKER_FUNCTION_NAME": "hello",
            "port": str(replica_port),
            "STOKER_HOST": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
        }
        gw_env = {"STOKER_HOME": str(tmpdir / "home"), "STOKER_ADMIN_PASSWORD": "bench", "PYTHONPATH": str(ROOT)}
        unix_path = tmpdir / "replica.sock"
        listener = unix_listener(unix_path)
        unix_env = {**replica_env, "STOKER_LISTEN_FD": str(listener.fileno())}
        with (
            process(bare, cwd=tmpdir),
            process([sys.executable, "-m", "runtime"], env=replica_env, cwd=tmpdir),
            process([sys.executable, "-m", "runtime"], env=unix_env, cwd=tmpdir, pass_fds=(listener.fileno(),)),
            process([sys.executable, "-m", "stoker", "up", "--port", str(gw_port)], env=gw_env, cwd=ROOT),
        ):
            listener.close()
            gw = f"http://127.0.0.1:{gw_port}"
            wait_http(f"http://127.0.0.1:{bare_port}/")
            wait_http(f"http://127.0.0.1:{replica_port}/_/health")
            wait_http(f"{gw}/healthz")
            deploy_source(gw, "hello", hello)
            targets = {
                "bare starlette": f"http://127.0.0.1:{bare_port}/",
                "replica direct": f"http://127.0.0.1:{replica_port}/",
                "through gateway": f"{gw}/function/hello",
            }
            for url in targets.values():
                wrk(url, 4, 1)  # warm up connections, code paths and pools
            for c in conns:
                for name, url in targets.items():
                    results[(name, c)] = wrk(url, c, args.duration)
            hops = transports(replica_port, str(unix_path), conns, args.duration)

    print(f"\ninvoke benchmark: wrk -t1, {args.duration}s per row, 'hello' on loopback, {os.cpu_count()} cores\n")
    print(f"| {'target':<16} | conns | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | vs bare req/s |")
    print(f"|{'-' * 18}|-------|{'-' * 10}|{'-' * 9}|{'-' * 9}|---------------|")
    for c in conns:
        base = results[("bare starlette", c)][0]
        for name in ("bare starlette", "replica direct", "through gateway"):
            rps, p50, p99 = results[(name, c)]
            print(f"| {name:<16} | {c:>5} | {rps:>8.0f} | {p50:>7.3f} | {p99:>7.3f} | {rps / base:>12.0%} |")
    for c in conns:
        overhead = results[("through gateway", c)][1] - results[("replica direct", c)][1]
        print(f"\ngateway p50 overhead over a direct replica call, {c} connection(s): {overhead:.3f} ms")
    print(f"\ngateway upstream client -> replica, {args.duration}s per row in 4 alternating rounds (uvloop)\n")
    print(f"| {'transport':<14} | conns | {'req/s':>8} | {'p50 ms':>7} | {'p99 ms':>7} | vs tcp req/s |")
    print(f"|{'-' * 16}|-------|{'-' * 10}|{'-' * 9}|{'-' * 9}|--------------|")
    for c in conns:
        base = len(hops[("tcp loopback", c)])
        for name in ("tcp loopback", "unix socket"):
            lat = hops[(name, c)]
            rps = len(lat) / args.duration
            print(f"| {name:<14} | {c:>5} | {rps:>8.0f} | {_pct(lat, 0.5):>7.3f} | {_pct(lat, 0.99):>7.3f} | "
                  f"{len(lat) / base:>11.0%} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
