"""SDK overhead and ``.map()`` throughput, each beside its baseline measured in the same run.

    python -m bench.sdk [--calls 2000] [--items 20000] [--slow-items 500] [--concurrency 32] [--rounds 3]
                        [--fanout 0]

Starts ``stoker up`` (local backend) in a temporary home, deploys ``inc(x) = x + 1`` and ``nap(x)`` (sleeps 10 ms)
with the SDK on 2 replicas each, then, ``rounds`` times (the table shows medians):

- ``.remote()``: sequential calls, msgpack both ways, keep-alive connection; p50/p99 latency;
- direct HTTP: the same function called with a JSON body over one keep-alive ``http.client`` connection (what any
  HTTP client pays); p50/p99 latency;
- ``.map()`` of ``inc`` over ``items`` and of ``nap`` over ``slow-items``, with ``concurrency`` requests in flight:
  with automatic chunks (the default), and with ``chunksize=1`` (one request per item, what ``.map()`` did before
  it had chunks); items/s, and the p50/p99 latency of an item (from when ``.map()`` reads it from the input to
  when it yields its result);
- ``ProcessPoolExecutor.map`` of the same functions on local processes, one per core (the same cores the platform
  has): with its default ``chunksize=1``, the baseline of the goal, and for ``inc`` also with a tuned
  ``chunksize`` (items / (4 x cores), what ``multiprocessing.Pool.map`` picks).

With ``--fanout N``, last, ``.map()`` of ``inc`` over a generator of N items: items/s, and the peak resident memory
of this client and of the ``stoker up`` process (the gateway) before and after, to show both stay bounded.

Prints a Markdown table and the ratios to the baselines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stoker.sdk import App
from tests.platform_fixture import PASSWORD, start_platform


def inc(x: int) -> int:
    return x + 1


def nap(x: int) -> int:
    time.sleep(0.01)
    return x + 1


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def bench_remote(fn: Any, calls: int) -> tuple[float, float, float]:
    remote = fn.remote
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


def timed_map(run: Callable[[Iterable[int]], Iterable[int]], items: int) -> tuple[float, float, float]:
    """``(p50 ms, p99 ms, items/s)`` of ``run`` over ``range(items)``; an item's latency runs from when ``run``
    reads it from the input to when its result comes out."""
    read_at = [0.0] * items

    def source() -> Iterator[int]:
        for i in range(items):
            read_at[i] = time.perf_counter()
            yield i

    latencies = [0.0] * items
    started = time.perf_counter()
    for i, out in enumerate(run(source())):
        latencies[i] = time.perf_counter() - read_at[i]
        assert out == i + 1
    elapsed = time.perf_counter() - started
    return (*percentiles(latencies), items / elapsed)


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory of this process, or of ``pid`` (Linux), in MB."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_fanout(fn: Any, items: int, concurrency: int, gateway_pid: int) -> str:
    before = peak_rss_mb(), peak_rss_mb(gateway_pid)
    started = time.perf_counter()
    total = sum(fn.map((i for i in range(items)), concurrency=concurrency))
    elapsed = time.perf_counter() - started
    assert total == items * (items + 1) // 2
    after = peak_rss_mb(), peak_rss_mb(gateway_pid)
    return (
        f"fan-out: .map() over a generator of {items:,} items: {items / elapsed:,.0f} items/s ({elapsed:.1f} s); "
        f"peak RSS client {before[0]:.0f} -> {after[0]:.0f} MB, gateway {before[1]:.0f} -> {after[1]:.0f} MB"
    )


def median_row(rounds: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (
        statistics.median(r[0] for r in rounds),
        statistics.median(r[1] for r in rounds),
        statistics.median(r[2] for r in rounds),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--slow-items", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout", type=int, default=0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    tuned = max(1, args.items // (4 * cores))
    rows: dict[str, list[tuple[float, float, float]]] = {}

    def add(name: str, value: tuple[float, float, float]) -> None:
        rows.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="stoker-bench-sdk-") as home:
        platform = start_platform(Path(home))
        try:
            os.environ.update({"STOKER_GATEWAY": platform.url, "STOKER_ADMIN_PASSWORD": PASSWORD})
            app = App("bench")
            fast = app.function(min_replicas=2)(inc)
            slow = app.function(min_replicas=2)(nap)
            app.deploy()
            c = args.concurrency
            list(fast.map(range(500), chunksize=1, concurrency=c))  # warm connections and replica threads
            list(slow.map(range(100), chunksize=1, concurrency=c))
            with ProcessPoolExecutor(cores) as pool:
                list(pool.map(inc, range(200)))
                for _ in range(args.rounds):
                    add("direct", bench_http(f"{platform.url}/function/{fast.name}", args.calls))
                    add("remote", bench_remote(fast, args.calls))
                    add("pool1", timed_map(lambda it: pool.map(inc, it), args.items))
                    add("pooltuned", timed_map(lambda it: pool.map(inc, it, chunksize=tuned), args.items))
                    add("map1", timed_map(lambda it: fast.map(it, concurrency=c, chunksize=1), args.items))
                    add("map", timed_map(lambda it: fast.map(it, concurrency=c), args.items))
                    add("slowpool1", timed_map(lambda it: pool.map(nap, it), args.slow_items))
                    add("slowmap1", timed_map(lambda it: slow.map(it, concurrency=c, chunksize=1), args.slow_items))
                    add("slowmap", timed_map(lambda it: slow.map(it, concurrency=c), args.slow_items))
            fanout = bench_fanout(fast, args.fanout, c, platform.proc.pid) if args.fanout else ""
        finally:
            platform.stop()

    m = {name: median_row(values) for name, values in rows.items()}
    print(
        f"python -m bench.sdk --calls {args.calls} --items {args.items} --slow-items {args.slow_items} "
        f"--concurrency {args.concurrency} --rounds {args.rounds} --fanout {args.fanout}   ({cores} cores; "
        f"medians of {args.rounds} rounds)\n"
    )
    print("| measure                                             |  p50 ms |  p99 ms |  calls or items/s |   vs base |")
    print("|-----------------------------------------------------|--------:|--------:|------------------:|----------:|")

    def line(label: str, key: str, base: str) -> None:
        p50, p99, rate = m[key]
        print(f"| {label:<51} | {p50:7.3f} | {p99:7.3f} | {rate:17.0f} | {100 * rate / m[base][2]:8.0f}% |")

    line("direct HTTP (JSON, keep-alive)", "direct", "direct")
    line(".remote() (msgpack, keep-alive)", "remote", "direct")
    line(f"inc: ProcessPoolExecutor.map ({cores} procs, chunksize 1)", "pool1", "pool1")
    line(f"inc: ProcessPoolExecutor.map (chunksize {tuned})", "pooltuned", "pool1")
    line(f"inc: .map(concurrency={c}, chunksize=1)", "map1", "pool1")
    line(f"inc: .map(concurrency={c}) (automatic chunks)", "map", "pool1")
    line(f"nap 10 ms: ProcessPoolExecutor.map ({cores} procs)", "slowpool1", "slowpool1")
    line(f"nap 10 ms: .map(concurrency={c}, chunksize=1)", "slowmap1", "slowpool1")
    line(f"nap 10 ms: .map(concurrency={c}) (automatic)", "slowmap", "slowpool1")
    print(f"\n.remote() p50 overhead over a direct HTTP call: {m['remote'][0] - m['direct'][0]:.3f} ms")
    print(f"inc .map() automatic vs chunksize=1: {m['map'][2] / m['map1'][2]:.1f}x; "
          f"vs ProcessPoolExecutor.map: {m['map'][2] / m['pool1'][2]:.1f}x (chunksize 1), "
          f"{m['map'][2] / m['pooltuned'][2]:.2f}x (chunksize {tuned})")  # fmt: skip
    print(f"nap .map() automatic vs chunksize=1: {m['slowmap'][2] / m['slowmap1'][2]:.2f}x")
    if fanout:
        print(fanout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
