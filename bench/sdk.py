"""SDK overhead: ``.remote()`` latency and ``.map()`` throughput for a trivial function, in one run, beside
a direct HTTP call of the same deployed function and a local ``ProcessPoolExecutor`` map.

    python -m bench.sdk [--calls 2000] [--items 5000] [--concurrency 32]

Starts ``stoker up`` (local backend) in a temporary home, deploys ``inc(x) = x + 1`` with the SDK, then measures:

- ``.remote()``: sequential calls, msgpack both ways, keep-alive connection; p50/p99 latency;
- direct HTTP: the same function called with a JSON body over one keep-alive ``http.client`` connection (what any
  HTTP client pays); p50/p99 latency;
- ``.map()``: items/s with ``concurrency`` calls in flight (2 replicas);
- ``ProcessPoolExecutor.map``: items/s for the same function on local processes (one per core, chunksize 1,
  i.e. one dispatch per item like ``.map()``), the baseline for "is the platform worth it for tiny work".

Prints a Markdown table and ratios to the baselines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from stoker.sdk import App
from tests.platform_fixture import PASSWORD, start_platform


def inc(x: int) -> int:
    return x + 1


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def bench_remote(fn: object, calls: int) -> tuple[float, float, float]:
    remote = fn.remote  # type: ignore[attr-defined]
    for i in range(50):
        remote(i)  # warm the connection and the replica
    samples = []
    started = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        assert remote(i) == i + 1
        samples.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    return (*percentiles(samples), calls / elapsed)


def bench_http(url: str, calls: int) -> tuple[float, float, float]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}

    def call(i: int) -> int:
        conn.request("POST", parts.path, body=json.dumps(i), headers=headers)
        resp = conn.getresponse()
        return int(json.loads(resp.read()))

    for i in range(50):
        call(i)
    samples = []
    started = time.perf_counter()
    for i in range(calls):
        t = time.perf_counter()
        assert call(i) == i + 1
        samples.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    conn.close()
    return (*percentiles(samples), calls / elapsed)


def bench_map(fn: object, items: int, concurrency: int) -> float:
    list(fn.map(range(200), concurrency=concurrency))  # type: ignore[attr-defined]
    started = time.perf_counter()
    out = list(fn.map(range(items), concurrency=concurrency))  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    assert out == [i + 1 for i in range(items)]
    return items / elapsed


def bench_pool(items: int) -> float:
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(inc, range(200)))
        started = time.perf_counter()
        out = list(pool.map(inc, range(items), chunksize=1))
        elapsed = time.perf_counter() - started
    assert out == [i + 1 for i in range(items)]
    return items / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="stoker-bench-sdk-") as home:
        platform = start_platform(Path(home))
        try:
            os.environ.update({"STOKER_GATEWAY": platform.url, "STOKER_ADMIN_PASSWORD": PASSWORD})
            app = App("bench")
            fn = app.function(min_replicas=2)(inc)
            app.deploy()
            remote = bench_remote(fn, args.calls)
            direct = bench_http(f"{platform.url}/function/{fn.name}", args.calls)
            mapped = bench_map(fn, args.items, args.concurrency)
        finally:
            platform.stop()
    pool = bench_pool(args.items)

    print(f"python -m bench.sdk --calls {args.calls} --items {args.items} --concurrency {args.concurrency}\n")
    print("| measure                              |  p50 ms |  p99 ms | calls or items/s | vs baseline |")
    print("|--------------------------------------|---------|---------|------------------|-------------|")
    print(
        f"| direct HTTP (JSON, keep-alive)       | {direct[0]:7.3f} | {direct[1]:7.3f} | {direct[2]:16.0f} | "
        "       100% |"
    )
    print(
        f"| .remote() (msgpack, keep-alive)      | {remote[0]:7.3f} | {remote[1]:7.3f} | {remote[2]:16.0f} | "
        f"{100 * remote[2] / direct[2]:10.0f}% |"
    )
    print(f"| ProcessPoolExecutor.map (chunksize 1)|       - |       - | {pool:16.0f} |        100% |")
    print(
        f"| .map(concurrency={args.concurrency:<3}), 2 replicas    |       - |       - | {mapped:16.0f} | "
        f"{100 * mapped / pool:10.0f}% |"
    )
    print(f"\n.remote() p50 overhead over a direct HTTP call: {remote[0] - direct[0]:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
