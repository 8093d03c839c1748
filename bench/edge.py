"""The invoke edge under hostile clients: memory, connections and loop stalls, before and after, in one run.

    python -m bench.edge [--baseline DIR] [--only bodies,response,headers,slowloris,fds,deploy]

Each scenario starts a fresh ``stoker up`` (local backend, loopback) from this checkout and, with ``--baseline``,
from another one (for instance ``git worktree add /tmp/base main``), runs one attack and prints what a client and
the gateway process saw:

- ``bodies``: 40 clients at once each POST a 19 MiB body (under the 20 MiB limit); peak gateway RSS, answers.
- ``response``: one call whose function answers 500 MB, read by the client as it comes; peak gateway RSS.
- ``headers``: one request with a 100 MB header, then one with 1.3 million small headers; answer, peak RSS.
- ``slowloris``: 800 connections that send a request head one small header a second, while wrk calls a function on
  2 other connections; how many attackers the gateway closed and when, and wrk's p99 (alone, then under attack).
- ``fds``: the gateway under an fd limit of 1,024 and 1,100 idle connections; what ``/healthz`` and a call answer.
- ``deploy``: a 620 KB bundle of 100,000 empty files is deployed (the file cap raised so it is checked and
  unpacked) while another function is called in a loop; the deploy's answer and time, the calls' p99 and max.

Peak RSS is the gateway process's VmHWM (reset before each scenario). Every attack is bounded in time and runs on
loopback only. Figures taken on a busy machine are noisy: compare the two columns of one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import re
import resource
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

SIZE = "def handle(event, context):\n    return str(len(event.body))\n"
BIG = (
    "def handle(event, context):\n"
    "    return b'x' * int(event.query.get('bytes', 500_000_000))\n"
)  # fmt: skip
HELLO = "def handle(event, context):\n    return 'hello'\n"


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    url: str
    home: Path
    output: list[str] = field(default_factory=list)

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    def deploy(self, name: str, source: str | bytes, timeout: float = 120) -> httpx.Response:
        data = source if isinstance(source, bytes) else bundle_of({"handler.py": source})
        body = {"service": name, "source": base64.b64encode(data).decode()}
        return httpx.post(f"{self.url}/system/functions", json=body, auth=("admin", "bench"), timeout=timeout)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def rss_mb(self, field_name: str = "VmHWM") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return 0.0


def bundle_of(files: dict[str, str], empty_files: int = 0) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i in range(empty_files):
            tar.addfile(tarfile.TarInfo(f"data/{i:06d}"), io.BytesIO(b""))
    return buf.getvalue()


@contextmanager
def gateway(root: Path, env: dict[str, str] | None = None, nofile: int | None = None) -> Iterator[Gateway]:
    with tempfile.TemporaryDirectory(prefix="stoker-bench-edge-") as tmp:
        environ = {**os.environ, "STOKER_HOME": tmp, "STOKER_ADMIN_PASSWORD": "bench", "PYTHONPATH": str(root),
                   "STOKER_POOL_SIZE": "0", **(env or {})}  # fmt: skip
        environ.pop("STOKER_GATEWAY", None)

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        proc = subprocess.Popen(
            [sys.executable, "-m", "stoker", "up", "--port", "0"],
            cwd=root, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=limit,
        )  # fmt: skip
        gw = Gateway(proc, "", Path(tmp))
        found = threading.Event()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                gw.output.append(line)
                m = re.search(r"gateway on (http://\S+)", line)
                if m:
                    gw.url = m.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        try:
            if not found.wait(30):
                raise RuntimeError("stoker up did not start:\n" + "".join(gw.output))
            yield gw
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def counts(statuses: list[Any]) -> str:
    out: dict[str, int] = {}
    for s in statuses:
        out[str(s)] = out.get(str(s), 0) + 1
    return " ".join(f"{k}x{v}" for k, v in sorted(out.items()))


# --- scenarios ---------------------------------------------------------------------------------------------------
def bodies(root: Path) -> dict[str, str]:
    with gateway(root) as gw:
        assert gw.deploy("size", SIZE).status_code == 202
        body = b"b" * (19 * MiB)
        gw.reset_peak()

        async def run() -> list[Any]:
            async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=40)) as client:

                async def one() -> Any:
                    try:
                        return (await client.post(f"{gw.url}/function/size", content=body)).status_code
                    except httpx.HTTPError as exc:
                        return type(exc).__name__

                return await asyncio.gather(*(one() for _ in range(40)))

        started = time.monotonic()
        statuses = asyncio.run(run())
        return {"peak gateway RSS MB": f"{gw.rss_mb():.0f}", "answers": counts(statuses),
                "seconds": f"{time.monotonic() - started:.1f}"}  # fmt: skip


def response(root: Path) -> dict[str, str]:
    with gateway(root) as gw:
        assert gw.deploy("big", BIG).status_code == 202
        gw.reset_peak()
        started = time.monotonic()
        received = 0
        first = 0.0
        with httpx.stream("GET", f"{gw.url}/function/big", timeout=300) as r:
            for chunk in r.iter_raw(1 * MiB):
                if not first:
                    first = time.monotonic() - started
                received += len(chunk)
        return {"peak gateway RSS MB": f"{gw.rss_mb():.0f}", "answer": f"{r.status_code}, {received / 1e6:.0f} MB",
                "first byte s": f"{first:.2f}", "seconds": f"{time.monotonic() - started:.1f}"}  # fmt: skip


def raw_call(host_port: tuple[str, int], head: bytes, timeout: float = 60) -> str:
    """Send a request head and return the answer's status line, or what happened instead."""
    try:
        with socket.create_connection(host_port, timeout=timeout) as s:
            with contextlib.suppress(OSError):  # the gateway may answer and close before it has read everything
                s.sendall(head)
            try:
                return s.recv(200).split(b"\r\n", 1)[0].decode() or "closed without an answer"
            except OSError as exc:
                return type(exc).__name__
    except OSError as exc:
        return type(exc).__name__


def headers(root: Path) -> dict[str, str]:
    out = {}
    with gateway(root) as gw:
        assert gw.deploy("hello", HELLO).status_code == 202
        gw.reset_peak()
        started = time.monotonic()
        big = b"GET /function/hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1000 * 1000) + b"\r\n\r\n"
        out["100 MB header"] = raw_call(gw.host_port, big)
        out["  seconds"] = f"{time.monotonic() - started:.1f}"
        del big
        out["  peak gateway RSS MB"] = f"{gw.rss_mb():.0f}"
        gw.reset_peak()
        started = time.monotonic()
        many = b"GET /function/hello HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 1_300_000 + b"\r\n"
        out["1.3 M headers"] = raw_call(gw.host_port, many)
        out["  seconds "] = f"{time.monotonic() - started:.1f}"
        out["  peak gateway RSS MB "] = f"{gw.rss_mb():.0f}"
        out["healthz after"] = str(httpx.get(f"{gw.url}/healthz", timeout=10).status_code)
    return out


def wrk(url: str, connections: int, duration: int) -> tuple[float, float, str]:
    """(requests/s, p99 ms, non-2xx count or '') from wrk --latency."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    bad = re.search(r"(Non-2xx or 3xx responses|Socket errors):\s+(.*)$", out, re.M)
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], bad.group(2) if bad else ""


async def slow_client(host_port: tuple[str, int], closed_after: list[float], stop: asyncio.Event) -> None:
    """A slowloris: a request head that never ends, one small header every second; records when it was closed."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(*host_port)
    except OSError:
        closed_after.append(-1.0)
        return
    try:
        writer.write(b"GET /function/hello HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(reader.read(1024), 1.0)
                if not data or reader.at_eof():
                    closed_after.append(time.monotonic() - started)
                    return
            except TimeoutError:
                writer.write(b"X-a: b\r\n")
            except OSError:
                closed_after.append(time.monotonic() - started)
                return
    finally:
        writer.close()


def slowloris(root: Path, attackers: int = 800, seconds: int = 20) -> dict[str, str]:
    with gateway(root) as gw:
        assert gw.deploy("hello", HELLO).status_code == 202
        wrk(f"{gw.url}/function/hello", 2, 1)  # warm up
        base_rps, base_p99, _ = wrk(f"{gw.url}/function/hello", 2, 10)
        closed: list[float] = []
        result: dict[str, Any] = {}

        async def attack() -> None:
            stop = asyncio.Event()
            tasks = [asyncio.create_task(slow_client(gw.host_port, closed, stop)) for _ in range(attackers)]
            loop = asyncio.get_running_loop()
            result["wrk"] = await loop.run_in_executor(None, wrk, f"{gw.url}/function/hello", 2, seconds)
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(attack())
        rps, p99, bad = result["wrk"]
        refused = sum(1 for c in closed if c < 0)
        shut = sorted(c for c in closed if c >= 0)
        return {
            "attackers closed by the gateway": f"{len(shut)} of {attackers} ({refused} not connected)",
            "  closed after s (min/max)": f"{shut[0]:.1f} / {shut[-1]:.1f}" if shut else "-",
            "wrk 2 conns p99 ms, alone": f"{base_p99:.1f} ({base_rps:.0f} req/s)",
            "wrk 2 conns p99 ms, under attack": f"{p99:.1f} ({rps:.0f} req/s){' errors: ' + bad if bad else ''}",
        }


def fds(root: Path, idle: int = 1100) -> dict[str, str]:
    out: dict[str, str] = {}
    with gateway(root, nofile=1024) as gw:
        assert gw.deploy("hello", HELLO).status_code == 202
        socks: list[socket.socket] = []
        try:
            for _ in range(idle):
                try:
                    socks.append(socket.create_connection(gw.host_port, timeout=2))
                except OSError:
                    break
            time.sleep(0.5)  # let the gateway accept what it will

            def probe(path: str) -> str:
                try:
                    return str(httpx.get(f"{gw.url}{path}", timeout=5).status_code)
                except httpx.HTTPError as exc:
                    return type(exc).__name__

            out["idle connections opened"] = str(len(socks))
            out["/healthz at once"] = probe("/healthz")
            out["call at once"] = probe("/function/hello")
            time.sleep(11)
            out["/healthz after 11 s"] = probe("/healthz")
            out["call after 11 s"] = probe("/function/hello")
            out["gateway alive"] = "yes" if gw.proc.poll() is None else f"no (exit {gw.proc.returncode})"
        finally:
            for s in socks:
                s.close()
    return out


def deploy(root: Path) -> dict[str, str]:
    data = bundle_of({"handler.py": HELLO}, empty_files=100_000)
    with gateway(root, env={"STOKER_MAX_BUNDLE_FILES": "200000"}) as gw:
        assert gw.deploy("hello", HELLO).status_code == 202
        latencies: list[float] = []
        done = threading.Event()

        def caller() -> None:
            with httpx.Client(timeout=120) as client:
                while not done.is_set():
                    t = time.perf_counter()
                    client.get(f"{gw.url}/function/hello").raise_for_status()
                    latencies.append(time.perf_counter() - t)

        thread = threading.Thread(target=caller)
        thread.start()
        time.sleep(1)
        before = len(latencies)
        started = time.monotonic()
        answer = gw.deploy("many", data, timeout=300)
        took = time.monotonic() - started
        done.set()
        thread.join()
        during = sorted(latencies[before:])
        p99 = during[int(len(during) * 0.99) - 1] if during else 0.0
        out = {
            "bundle": f"{len(data) / 1000:.0f} KB, 100,000 files",
            "deploy answer": f"{answer.status_code} after {took:.1f} s",
            "calls to another function during it": str(len(during)),
            "  p99 / max ms": f"{p99 * 1000:.1f} / {during[-1] * 1000:.1f}" if during else "-",
        }
    with gateway(root) as gw:
        started = time.monotonic()
        answer = gw.deploy("many", data, timeout=300)
        out["default file cap: answer"] = f"{answer.status_code} after {time.monotonic() - started:.2f} s"
    return out


SCENARIOS: dict[str, Callable[[Path], dict[str, str]]] = {
    "bodies": bodies,
    "response": response,
    "headers": headers,
    "slowloris": slowloris,
    "fds": fds,
    "deploy": deploy,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure first, for comparison")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    args = parser.parse_args()
    roots = {"this tree": ROOT}
    if args.baseline:
        roots = {"baseline": args.baseline.resolve(), **roots}
    for name in args.only.split(","):
        rows: dict[str, dict[str, str]] = {}
        for label, root in roots.items():
            try:
                rows[label] = SCENARIOS[name](root)
            except Exception as exc:  # a baseline that falls over is a result too
                rows[label] = {"failed": f"{type(exc).__name__}: {exc}"[:200]}
        keys = list(dict.fromkeys(k for r in rows.values() for k in r))
        print(f"\n{name}  ({os.cpu_count()} cores, loopback)")
        print(f"| {'':<36} | " + " | ".join(f"{label:<34}" for label in roots) + " |")
        print(f"|{'-' * 38}|" + "|".join("-" * 36 for _ in roots) + "|")
        for k in keys:
            print(f"| {k:<36} | " + " | ".join(f"{rows[label].get(k, ''):<34}" for label in roots) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
