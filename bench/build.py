"""Builder and docker backend benchmark: build times, image sizes, cold start, requests/s container vs process.

    python -m bench.build [--runs 5] [--duration 5]

Needs a running Docker Engine and wrk. Prints markdown tables (median and p99 over ``--runs``) with ratios to a
baseline measured in the same run: cold start of a replica beside ``docker run BASE python3 -c pass``; requests/s
through the gateway to a container replica beside the same function as a local-process replica.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

# The repository, not bench/, first on the path: bench modules are imported as bench.*.
from bench.invoke import wrk
from builder import engine
from builder.base import ensure_base_image
from builder.function import build_function
from stoker import bundle
from tests.platform_fixture import FUNCTIONS, start_platform


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, values: list[float], unit: str = "s", baseline: float | None = None) -> str:
    med = statistics.median(values)
    ratio = f"{med / baseline:.2f}x" if baseline else ""
    return f"| {name} | {med:.3f} {unit} | {pct(values, 99):.3f} {unit} | {ratio} |"


def build_times(client: object, base: str, runs: int) -> tuple[list[str], str]:
    first, code_only, noop = [], [], []
    ref = ""
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "fn"
            folder.mkdir()
            token = uuid.uuid4().hex
            (folder / "handler.py").write_text(f"# {token}\ndef handle(event, context):\n    return 'v1'\n")
            (folder / "requirements.txt").write_text("six==1.16.0\n")
            cache = Path(tmp) / "cache"  # empty: the first build runs pip
            t = time.monotonic()
            build_function(client, "bench-build", bundle.pack(folder), base, cache_dir=cache)
            first.append(time.monotonic() - t)
            (folder / "handler.py").write_text(f"# {token}\ndef handle(event, context):\n    return 'v2'\n")
            t = time.monotonic()
            ref = build_function(client, "bench-build", bundle.pack(folder), base, cache_dir=cache).ref
            code_only.append(time.monotonic() - t)
            t = time.monotonic()
            build_function(client, "bench-build", bundle.pack(folder), base, cache_dir=cache)
            noop.append(time.monotonic() - t)
    rows = [
        row("first build (pip install of six + image)", first),
        row("rebuild after a code-only change (target < 5 s)", code_only),
        row("no-op rebuild (target < 1 s)", noop),
    ]
    return rows, ref


def cold_starts(client: object, base: str, image: str, runs: int) -> list[str]:
    plain, replica = [], []
    for _ in range(runs):
        t = time.monotonic()
        client.containers.run(base, ["python3", "-c", "pass"], remove=True)  # type: ignore[attr-defined]
        plain.append(time.monotonic() - t)
        t = time.monotonic()
        c = client.containers.run(image, detach=True, read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"])  # type: ignore[attr-defined]
        try:
            c.reload()
            ip = c.attrs["NetworkSettings"]["IPAddress"]
            while True:
                try:
                    if httpx.post(f"http://{ip}:8080/", content=b"x", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.005)
            replica.append(time.monotonic() - t)
        finally:
            c.remove(force=True)
    base_med = statistics.median(plain)
    return [
        row("docker run BASE python3 -c pass (baseline)", plain, baseline=base_med),
        row("docker run replica to first successful invocation", replica, baseline=base_med),
    ]


def throughput(duration: int) -> list[str]:
    results = {}
    for backend in ("local", "docker"):
        with tempfile.TemporaryDirectory() as home:
            p = start_platform(Path(home), "--backend", backend)
            try:
                body = {"service": "hello", "source": base64.b64encode(bundle.pack(FUNCTIONS / "hello")).decode()}
                with p.client() as c:
                    c.post("/system/functions", json=body, timeout=300).raise_for_status()
                url = f"{p.url}/function/hello"
                wrk(url, 4, 1)
                results[backend] = wrk(url, 16, duration)
            finally:
                p.stop(timeout=120)
    local = results["local"][0]
    out = []
    for backend, (rps, p50, p99) in results.items():
        out.append(f"| gateway → {backend} replica | {rps:.0f} req/s | {p50:.2f} / {p99:.2f} ms | {rps / local:.2f}x |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    client = engine.connect()
    base = ensure_base_image(client, out=lambda _: None).ref
    print(f"\nbuild benchmark: {args.runs} runs, {os.cpu_count()} cores, base {base}\n")
    print("| step | median | p99 | ratio |\n|---|---|---|---|")
    rows, image = build_times(client, base, args.runs)
    print("\n".join(rows))
    hello = build_function(client, "hello", bundle.pack(FUNCTIONS / "hello"), base).ref
    print("\n| image | size |\n|---|---|")
    for ref in (base, hello, image):
        print(f"| {ref} | {client.images.get(ref).attrs['Size'] / 1e6:.1f} MB |")
    print("\n| cold start | median | p99 | ratio |\n|---|---|---|---|")
    print("\n".join(cold_starts(client, base, hello, args.runs)))
    print(f"\n| path (wrk -t1 -c16, {args.duration}s) | throughput | p50 / p99 | ratio to local |\n|---|---|---|---|")
    print("\n".join(throughput(args.duration)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
