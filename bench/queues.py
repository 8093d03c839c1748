"""Queue throughput: N messages end to end (XADD/enqueue to acknowledged) for a no-op function, stoker's Redis Streams
worker beside Celery (prefork with as many processes as cores, and with one) and RQ on the same redis-server, and
stoker's embedded queue, in one run.

    python -m bench.queues [--messages 10000] [--rounds 3] [--celery-messages N] [--rq-messages 500] [--skip-rq]
                           [--replicas 1]

At equal cores: stoker's function runs on ``--replicas`` pinned replicas (1: the platform's process and one replica,
two busy processes on two cores, as Celery's ``-c 2``); the "autoscaled" row leaves the function's default scaling,
so the queue's lag scales it out (each replica started is a Python start taken from the same cores).

Each system has its own message count: ``--messages`` for stoker (and Celery unless ``--celery-messages``), and
``--rq-messages`` (default 500) for RQ, which forks a process per job (about 10 jobs/s here: 10,000 would take 17
minutes). Rates (messages/s) are compared, so one run shows all of them; the table says how many messages each ran.
The embedded queue is filled before its worker reads, and timed from its first delivery to its last ack.

Beside the rate, the CPU time each system spent per message (its processes and the redis-server, from /proc), which a
shared machine disturbs far less than the rate.

Celery and RQ are installed into a throwaway virtualenv (they are not project dependencies). Prints a markdown table:
messages/s per round (median, worst), CPU per message (median) and the ratio of the first row's median to each row's.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from events.sqlite_queue import SQLiteQueue
from tests.platform_fixture import start_platform, write_handler

ROOT = Path(__file__).resolve().parents[1]

VENV = Path(tempfile.gettempdir()) / "stoker-bench-venv"
TASKS = """
from celery import Celery
import os
app = Celery("bench", broker=os.environ["BENCH_REDIS"])
# acks_late as stoker acks (after the call), no result backend (stoker's rows store none either), and a high prefetch:
# what Celery's docs recommend for many short tasks ("Prefetch Limits" in its optimizing guide).
app.conf.update(task_acks_late=True, task_ignore_result=True, worker_prefetch_multiplier=64)

@app.task
def noop(i):
    return None

def rq_noop(i):
    return None
"""


CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rate: float  # messages/s
    cpu_us: float  # CPU microseconds per message (the system's processes and redis-server)


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids`` and all their descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICK
    wanted = set(pids)
    grown = True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in wanted} - wanted
        grown = bool(more)
        wanted |= more
    return sum(times.get(pid, 0.0) for pid in wanted)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.005)


NOOP = "def handle(event, context):\n    return ''\n"
STREAM = "bench-stoker"
GROUP = "stoker:noop.openfaas-fn"


# At equal cores the function's replicas are pinned (--replicas, 1: with the platform's own process, as many busy
# processes as cores, like Celery's -c); the autoscaled row lets the queue's lag scale it out (up to 20 replicas), and
# on 2 cores every replica started takes CPU (a Python start) from the work.
def _pinned(replicas: int) -> dict[str, str]:
    return {"com.openfaas.scale.min": str(replicas), "com.openfaas.scale.max": str(replicas)}


def bench_stoker(url: str, n: int, work: Path, redis_pid: int, labels: dict[str, str]) -> Run:
    r = redis.Redis.from_url(url)
    p = start_platform(work / "home", "--redis", url, env={"STOKER_QUEUE_CONCURRENCY": "64", "STOKER_POOL_SIZE": "0"})
    try:
        annotations = {"com.stoker.queue.stream": STREAM}
        folder = write_handler(work / "noop", NOOP)
        assert p.deploy("noop", folder, annotations=annotations, labels=labels).status_code == 202
        _wait(lambda: any(g["name"] == GROUP.encode() for g in _groups(r, STREAM)), 30)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(STREAM, {"i": str(i)})
        cpu = _cpu_s([p.proc.pid, redis_pid])
        start = time.perf_counter()
        pipe.execute()

        def done() -> bool:
            g = next(g for g in _groups(r, STREAM) if g["name"] == GROUP.encode())
            return int(g["pending"]) == 0 and int(g.get("entries-read") or 0) >= n

        _wait(done, 600)
        elapsed = time.perf_counter() - start
        used = _cpu_s([p.proc.pid, redis_pid]) - cpu
        r.delete(STREAM)
        return Run(n / elapsed, used / n * 1e6)
    finally:
        p.stop()


def bench_embedded(n: int, work: Path, labels: dict[str, str]) -> Run:
    """The embedded queue: filled (in one transaction, from this process) while its worker waits, timed from the first
    delivery to the last ack, read from the queue's own tables."""
    p = start_platform(work / "home", env={"STOKER_QUEUE_CONCURRENCY": "64", "STOKER_POOL_SIZE": "0"})
    try:
        annotations = {"com.stoker.queue.stream": STREAM}
        folder = write_handler(work / "noop", NOOP)
        assert p.deploy("noop", folder, annotations=annotations, labels=labels).status_code == 202
        db = sqlite3.connect(work / "home" / "queue.db", timeout=30)
        state = "SELECT last_seq, (SELECT COUNT(*) FROM pending WHERE stream = ?1) FROM groups WHERE stream = ?1"
        _wait(lambda: db.execute(state, (STREAM,)).fetchone() is not None, 30)
        queue = SQLiteQueue(work / "home" / "queue.db")
        with queue.db:
            queue.db.execute("BEGIN IMMEDIATE")
            first = int(queue._add(STREAM, {"i": "0"}).split("-")[0])
            for i in range(1, n):
                queue._add(STREAM, {"i": str(i)})
        queue.db.close()
        _wait(lambda: db.execute(state, (STREAM,)).fetchone()[0] >= first, 30)
        cpu = _cpu_s([p.proc.pid])
        start = time.perf_counter()

        def done() -> bool:
            last, pending = db.execute(state, (STREAM,)).fetchone()
            return bool(last >= first + n - 1 and pending == 0)

        _wait(done, 600)
        elapsed = time.perf_counter() - start
        used = _cpu_s([p.proc.pid]) - cpu
        db.close()
        return Run(n / elapsed, used / n * 1e6)
    finally:
        p.stop()


def _groups(r: redis.Redis, stream: str) -> list[dict[str, object]]:
    try:
        return r.xinfo_groups(stream)  # type: ignore[no-any-return]
    except redis.ResponseError:
        return []


def _venv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "celery[redis]", "rq"], check=True)
    return python


def bench_celery(python: Path, url: str, n: int, work: Path, processes: int, redis_pid: int) -> Run:
    env = {**os.environ, "BENCH_REDIS": url, "PYTHONPATH": str(work)}
    r = redis.Redis.from_url(url)
    r.flushdb()
    worker = subprocess.Popen(
        [str(python), "-m", "celery", "-A", "benchtasks", "worker", "-c", str(processes), "-P", "prefork",
         "-l", "warning"],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        enqueue = (
            "import sys, time\nfrom benchtasks import noop\nn = int(sys.argv[1])\n"
            "t = time.perf_counter()\nfor i in range(n):\n    noop.delay(i)\nprint(t)\n"
        )
        time.sleep(3)  # the worker connects and waits; a started worker has nothing queued
        cpu = _cpu_s([worker.pid, redis_pid])
        out = subprocess.run([str(python), "-c", enqueue, str(n)], env=env, cwd=work, capture_output=True, text=True)
        start = float(out.stdout.split()[-1])  # perf_counter is CLOCK_MONOTONIC: comparable across processes
        _wait(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 900)
        elapsed = time.perf_counter() - start
        return Run(n / elapsed, (_cpu_s([worker.pid, redis_pid]) - cpu) / n * 1e6)
    finally:
        worker.terminate()
        worker.wait(30)


def bench_rq(python: Path, url: str, n: int, work: Path, redis_pid: int) -> Run:
    env = {**os.environ, "BENCH_REDIS": url, "PYTHONPATH": str(work)}
    r = redis.Redis.from_url(url)
    r.flushdb()
    enqueue = (
        "import sys, time, redis\nfrom rq import Queue\n"
        "q = Queue('bench', connection=redis.Redis.from_url(sys.argv[2]))\nt = time.perf_counter()\n"
        "for i in range(int(sys.argv[1])):\n    q.enqueue('benchtasks.rq_noop', i, result_ttl=0)\nprint(t)\n"
    )
    out = subprocess.run([str(python), "-c", enqueue, str(n), url], env=env, cwd=work, capture_output=True, text=True)
    start = float(out.stdout.split()[-1])
    worker = subprocess.Popen(
        [str(python), "-m", "rq.cli", "worker", "--burst", "--url", url, "bench"],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker.wait(1800)
    elapsed = time.perf_counter() - start
    return Run(n / elapsed, 0.0)  # its CPU is mostly forking, not comparable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000, help="stoker's messages (and Celery's by default)")
    parser.add_argument("--celery-messages", type=int, default=0, help="Celery's messages (default: --messages)")
    parser.add_argument("--rq-messages", type=int, default=500, help="RQ's messages (it forks per job: ~10/s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rq", action="store_true", help="leave RQ out")
    parser.add_argument("--replicas", type=int, default=1, help="stoker's replicas of the function (pinned)")
    args = parser.parse_args()
    celery_n = args.celery_messages or args.messages
    work = Path(tempfile.mkdtemp(prefix="stoker-bench-queue-"))
    (work / "benchtasks.py").write_text(TASKS)
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    rpid = server.pid
    rows: dict[str, tuple[int, list[Run]]] = {
        f"stoker, Redis Streams, {args.replicas} replica(s)": (args.messages, []),
        "stoker, Redis Streams, autoscaled": (args.messages, []),
        f"celery prefork -c {CORES} (= cores)": (celery_n, []),
        "celery prefork -c 1": (celery_n, []),
        f"stoker, embedded queue, {args.replicas} replica(s)": (args.messages, []),
    }
    if not args.skip_rq:
        rows["rq (forks per job)"] = (args.rq_messages, [])
    try:
        _wait(lambda: _ping(url), 20)
        python = _venv()
        for round_ in range(args.rounds):
            home = work / f"r{round_}"
            home.mkdir()
            runs = iter(rows.values())
            pinned = _pinned(args.replicas)
            next(runs)[1].append(bench_stoker(url, args.messages, home / "redis", rpid, pinned))
            next(runs)[1].append(bench_stoker(url, args.messages, home / "scaled", rpid, {}))
            next(runs)[1].append(bench_celery(python, url, celery_n, work, CORES, rpid))
            next(runs)[1].append(bench_celery(python, url, celery_n, work, 1, rpid))
            next(runs)[1].append(bench_embedded(args.messages, home / "embedded", pinned))
            if not args.skip_rq:
                next(runs)[1].append(bench_rq(python, url, args.rq_messages, work, rpid))
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1].rate:.0f}/s" for k, (_, v) in rows.items()),
                  file=sys.stderr)  # fmt: skip
        ours = statistics.median(r.rate for r in next(iter(rows.values()))[1])
        print(f"\n{args.rounds} round(s) on {CORES} cores, one redis-server; CPU: its processes + redis-server\n")
        print("| system | messages | median msg/s | worst msg/s | CPU µs/msg | first row median / this median |")
        print("|---|---|---|---|---|---|")
        for name, (count, runs_) in rows.items():
            med = statistics.median(r.rate for r in runs_)
            cpu = statistics.median(r.cpu_us for r in runs_)
            cpu_text = f"{cpu:.0f}" if cpu else "-"
            worst = min(r.rate for r in runs_)
            print(f"| {name} | {count} | {med:.0f} | {worst:.0f} | {cpu_text} | {ours / med:.2f}x |")
        print("\nRounds (msg/s): " + "; ".join(
            f"{name}: " + "/".join(f"{r.rate:.0f}" for r in runs_) for name, (_, runs_) in rows.items()))  # fmt: skip
    finally:
        server.terminate()
        server.wait(20)


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    main()
