"""What ``stoker edge`` (the balancer of Compose and Swarm installs) costs per call: a gateway called directly vs.
through the edge, in alternating rounds of one run.

    python -m bench.balancer [--duration 5] [--rounds 3] [--connections 1,32]

One ``stoker up`` (local backend, loopback) serves the "hello" function; one ``stoker edge`` forwards to it. ``wrk``
(a separate process) calls each target in turn, ``--rounds`` times per connection count, so both see the same busy
machine; the table gives the median round's requests/s, p50 and p99, and the edge's ratio to the direct gateway.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.invoke import ROOT, deploy_source, free_port, process, wait_http, wrk


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,32")
    args = parser.parse_args(argv)
    conns = [int(c) for c in args.connections.split(",")]
    rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        gw_port, edge_port = free_port(), free_port()
        gw_env = {"STOKER_HOME": str(Path(tmp) / "home"), "STOKER_ADMIN_PASSWORD": "bench", "PYTHONPATH": str(ROOT),
                  "STOKER_POOL_SIZE": "0"}  # fmt: skip
        edge = [sys.executable, "-m", "stoker", "edge", "--upstream", f"127.0.0.1:{gw_port}", "--host", "127.0.0.1",
                "--port", str(edge_port)]  # fmt: skip
        with (
            process([sys.executable, "-m", "stoker", "up", "--port", str(gw_port)], env=gw_env, cwd=ROOT),
            process(edge, env={"PYTHONPATH": str(ROOT)}, cwd=ROOT),
        ):
            gw = f"http://127.0.0.1:{gw_port}"
            wait_http(f"{gw}/healthz")
            deploy_source(gw, "hello", ROOT / "functions" / "hello")
            targets = {
                "gateway direct": f"{gw}/function/hello",
                "through edge": f"http://127.0.0.1:{edge_port}/function/hello",
            }
            wait_http(targets["through edge"], timeout=60)
            for url in targets.values():
                wrk(url, 4, 1)  # warm up connections and pools
            for c in conns:
                for _ in range(args.rounds):
                    for name, url in targets.items():
                        rows.setdefault((name, c), []).append(wrk(url, c, args.duration))

    print(f"\nedge benchmark: wrk -t1, {args.rounds} alternating rounds of {args.duration}s, 'hello' on loopback, "
          f"{os.cpu_count()} cores (median round)\n")  # fmt: skip
    print("| target         | conns |    req/s |  p50 ms |  p99 ms | req/s vs direct | p50 vs direct |")
    print("|----------------|-------|----------|---------|---------|-----------------|---------------|")
    for c in conns:
        direct = _median(rows[("gateway direct", c)])
        for name in ("gateway direct", "through edge"):
            rps, p50, p99 = _median(rows[(name, c)])
            print(f"| {name:<14} | {c:>5} | {rps:>8.0f} | {p50:>7.3f} | {p99:>7.3f} | {rps / direct[0]:>15.2f} | "
                  f"{p50 / direct[1]:>13.2f} |")  # fmt: skip


def _median(results: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (
        statistics.median(r[0] for r in results),
        statistics.median(r[1] for r in results),
        statistics.median(r[2] for r in results),
    )


if __name__ == "__main__":
    main()
