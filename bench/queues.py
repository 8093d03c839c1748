"""Queue throughput: N messages end to end (XADD/enqueue to acknowledged) for a no-op function, stoker's Redis Streams
worker beside Celery (prefork with as many processes as cores, and with one) and RQ on the same redis-server, and
stoker's embedded queue, in one run.

    python -m bench.queues [--messages 10000] [--rounds 3] [--celery-messages N] [--rq-messages 500] [--skip-rq]
                           [--replicas 1]

At equal cores: stoker's function runs on ``--replicas`` pinned replicas (1: the platform's process and one replica,
two busy processes on two cores, as Celery's ``-c 2``); the "autoscaled" row leaves the function's default scaling,
so the queue's lag scales it out (each replica started is a Python start taken from the same cores).

The "async calls" row is stoker's ``/async-function`` path from the queue on: ``--messages`` calls put on the
function's async stream with their call records (as the gateway stores them, in one pipelined burst), each settled with
its result, default scaling; its latency is timed from that burst.

Each system is ready when its messages come: Celery's worker has been started 3 s before, stoker's function deployed
and its replicas ready (its worker starts with the deploy). A round used to enqueue as soon as the function's consumer
group existed, so stoker's rows also timed the start of its replica and of its worker (up to a second's sync then).

Each system has its own message count: ``--messages`` for stoker (and Celery unless ``--celery-messages``), and
``--rq-messages`` (default 500) for RQ, which forks a process per job (about 10 jobs/s here: 10,000 would take 17
minutes). Rates (messages/s) are compared, so one run shows all of them; the table says how many messages each ran.
The embedded queue is filled before its worker reads, and timed from its first delivery to its last ack.

Beside the rate, the CPU time each system spent per message (its processes and the redis-server, from /proc), which a
shared machine disturbs far less than the rate, and each message's latency from enqueue to completion (p50, p99): the
function (the Celery and RQ task alike) appends the message's id or enqueue time and the time it ends to a file, one
line-buffered write per message; a Redis stream id carries its XADD time, Celery's and RQ's tasks get their
``delay()``/``enqueue()`` time as an argument, and the embedded queue's messages are all enqueued in one transaction
(timed from its commit). Every message of a round is enqueued at once, so the latency is mostly time spent queued.

Celery and RQ are installed into a throwaway virtualenv (they are not project dependencies). Prints a markdown table:
messages/s per round (median, worst), latency p50/p99 and CPU per message (medians over rounds) and each row's median
rate over Celery ``-c`` cores' (equal cores) from the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from events.messages import Invocation
from events.queue import async_stream
from events.sqlite_queue import SQLiteQueue
from tests.platform_fixture import Platform, start_platform, write_handler

ROOT = Path(__file__).resolve().parents[1]

VENV = Path(tempfile.gettempdir()) / "stoker-bench-venv"
TASKS = """
from celery import Celery
import os, time
app = Celery("bench", broker=os.environ["BENCH_REDIS"])
_out = None

def _done(t):
    global _out
    if _out is None:  # opened in the process that runs the task (after prefork's fork)
        _out = open(os.environ["BENCH_OUT"], "a", buffering=1)
    _out.write(f"{t} {time.time()}\\n")

# acks_late as stoker acks (after the call), no result backend (stoker's rows store none either), and a high prefetch:
# what Celery's docs recommend for many short tasks ("Prefetch Limits" in its optimizing guide).
app.conf.update(task_acks_late=True, task_ignore_result=True, worker_prefetch_multiplier=64)

@app.task
def noop(i, t):
    _done(t)

def rq_noop(i, t):
    with open(os.environ["BENCH_OUT"], "a") as f:  # a fork per job: its own file object each time
        f.write(f"{t} {time.time()}\\n")
"""


CORES = os.cpu_count() or 1
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    rate: float  # messages/s
    cpu_us: float  # CPU microseconds per message (the system's processes and redis-server)
    p50_ms: float = 0.0  # enqueue to completion, per message
    p99_ms: float = 0.0
    replicas: int = 0  # stoker: the most replicas the function had (the autoscaler's log lines)


def _most_replicas(output: list[str], start: int) -> int:
    """The most replicas ``stoker up``'s log shows for the function (``noop.openfaas-fn: 1 -> 3 replicas``)."""
    most = start
    for line in output:
        m = re.search(r"noop\.openfaas-fn: (\d+) -> (\d+) replicas", line)
        if m:
            most = max(most, int(m.group(2)))
    return most


def _latencies(out: Path, start_of: Callable[[str], float]) -> tuple[float, float]:
    """p50 and p99 in ms of ``end - start_of(first field)`` over the lines ``<key> <end time>`` of ``out`` (a message
    run twice counts once, with its last end)."""
    ends: dict[str, float] = {}
    for line in out.read_text().splitlines():
        key, _, end = line.partition(" ")
        if end:
            ends[key] = float(end)
    lat = sorted((end - start_of(key)) * 1000 for key, end in ends.items())
    if len(lat) < 2:
        return 0.0, 0.0
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return statistics.median(lat), q[98]


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


# A no-op but for one line-buffered write per call: the message's id and when it ended, for the latency.
NOOP = """import os, time
_out = open(os.environ["OUT"], "a", buffering=1)

def handle(event, context):
    _out.write(f"{event.headers.get('x-stoker-message-id')} {time.time()}\\n")
    return ''
"""
STREAM = "bench-stoker"
GROUP = "stoker:noop.openfaas-fn"


# At equal cores the function's replicas are pinned (--replicas, 1: with the platform's own process, as many busy
# processes as cores, like Celery's -c); the autoscaled row lets the queue's lag scale it out (up to 20 replicas), and
# on 2 cores every replica started takes CPU (a Python start) from the work.
def _pinned(replicas: int) -> dict[str, str]:
    return {"com.openfaas.scale.min": str(replicas), "com.openfaas.scale.max": str(replicas)}


def bench_stoker(url: str, n: int, work: Path, redis_pid: int, labels: dict[str, str], env: dict[str, str]) -> Run:
    r = redis.Redis.from_url(url)
    p = start_platform(work / "home", "--redis", url, env={"STOKER_POOL_SIZE": "0", **env})
    out = work / "done.txt"
    try:
        annotations = {"com.stoker.queue.stream": STREAM}
        folder = write_handler(work / "noop", NOOP)
        deployed = p.deploy("noop", folder, annotations=annotations, labels=labels, envVars={"OUT": str(out)})
        assert deployed.status_code == 202
        _wait(lambda: any(g["name"] == GROUP.encode() for g in _groups(r, STREAM)), 30)
        _ready(p)
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
        p50, p99 = _latencies(out, lambda msg_id: int(msg_id.split("-")[0]) / 1000)  # XADD's millisecond time
        replicas = _most_replicas(p.output, int(labels.get("com.openfaas.scale.min", "1")))
        return Run(n / elapsed, used / n * 1e6, p50, p99, replicas)
    finally:
        p.stop()


# The same no-op for async calls: they carry their call id, not a message id.
ASYNC_NOOP = NOOP.replace("x-stoker-message-id", "x-call-id")


def bench_async(url: str, n: int, work: Path, redis_pid: int) -> Run:
    """Async calls, default scaling: ``n`` calls put on the function's async stream as ``/async-function`` does
    (the invocation and its call record, in one pipelined burst), timed to the last one settled with its result."""
    r = redis.Redis.from_url(url)
    p = start_platform(work / "home", "--redis", url, env={"STOKER_POOL_SIZE": "0"})
    out = work / "done.txt"
    try:
        folder = write_handler(work / "noop", ASYNC_NOOP)
        assert p.deploy("noop", folder, envVars={"OUT": str(out)}).status_code == 202
        stream = async_stream("noop.openfaas-fn")
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(stream, {"m": Invocation("noop.openfaas-fn", call_id=f"c{i}").encode()})
            pipe.hset(f"stoker:call:c{i}", mapping={"status": "queued"})
            pipe.expire(f"stoker:call:c{i}", 3600)
        _wait(lambda: any(g["name"] == GROUP.encode() for g in _groups(r, stream)), 30)
        _ready(p)
        cpu = _cpu_s([p.proc.pid, redis_pid])
        start, enqueued = time.perf_counter(), time.time()
        pipe.execute()

        def done() -> bool:
            g = next(g for g in _groups(r, stream) if g["name"] == GROUP.encode())
            return int(g["pending"]) == 0 and int(g.get("entries-read") or 0) >= n

        _wait(done, 600)
        elapsed = time.perf_counter() - start
        used = _cpu_s([p.proc.pid, redis_pid]) - cpu
        assert r.hget(f"stoker:call:c{n - 1}", "status") == b"done"
        r.delete(stream, *(f"stoker:call:c{i}" for i in range(n)))
        p50, p99 = _latencies(out, lambda _: enqueued)
        return Run(n / elapsed, used / n * 1e6, p50, p99, _most_replicas(p.output, 1))
    finally:
        p.stop()


def bench_embedded(n: int, work: Path, labels: dict[str, str]) -> Run:
    """The embedded queue: filled (in one transaction, from this process) while its worker waits, timed from the first
    delivery to the last ack, read from the queue's own tables."""
    p = start_platform(work / "home", env={"STOKER_QUEUE_CONCURRENCY": "64", "STOKER_POOL_SIZE": "0"})
    out = work / "done.txt"
    try:
        annotations = {"com.stoker.queue.stream": STREAM}
        folder = write_handler(work / "noop", NOOP)
        deployed = p.deploy("noop", folder, annotations=annotations, labels=labels, envVars={"OUT": str(out)})
        assert deployed.status_code == 202
        db = sqlite3.connect(work / "home" / "queue.db", timeout=30)
        state = "SELECT last_seq, (SELECT COUNT(*) FROM pending WHERE stream = ?1) FROM groups WHERE stream = ?1"
        _wait(lambda: db.execute(state, (STREAM,)).fetchone() is not None, 30)
        queue = SQLiteQueue(work / "home" / "queue.db")
        with queue.db:
            queue.db.execute("BEGIN IMMEDIATE")
            first = int(queue._add(STREAM, {"i": "0"}).split("-")[0])
            for i in range(1, n):
                queue._add(STREAM, {"i": str(i)})
        committed = time.time()
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
        p50, p99 = _latencies(out, lambda _: committed)
        return Run(n / elapsed, used / n * 1e6, p50, p99)
    finally:
        p.stop()


def _ready(p: Platform) -> None:
    """Wait until the function's replicas are ready, as Celery's worker is started before its messages come."""

    def ready() -> bool:
        with p.client() as c:
            found = c.get("/system/function/noop")
        return found.status_code == 200 and found.json()["availableReplicas"] >= found.json()["replicas"] >= 1

    _wait(ready, 60)


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
    done_file = work / f"celery-{processes}-{time.monotonic_ns()}.txt"
    env = {**os.environ, "BENCH_REDIS": url, "PYTHONPATH": str(work), "BENCH_OUT": str(done_file)}
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
            "t = time.perf_counter()\nfor i in range(n):\n    noop.delay(i, time.time())\nprint(t)\n"
        )
        time.sleep(3)  # the worker connects and waits; a started worker has nothing queued
        cpu = _cpu_s([worker.pid, redis_pid])
        out = subprocess.run([str(python), "-c", enqueue, str(n)], env=env, cwd=work, capture_output=True, text=True)
        start = float(out.stdout.split()[-1])  # perf_counter is CLOCK_MONOTONIC: comparable across processes
        _wait(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 900)
        elapsed = time.perf_counter() - start
        p50, p99 = _latencies(done_file, float)
        return Run(n / elapsed, (_cpu_s([worker.pid, redis_pid]) - cpu) / n * 1e6, p50, p99)
    finally:
        worker.terminate()
        worker.wait(30)


def bench_rq(python: Path, url: str, n: int, work: Path, redis_pid: int) -> Run:
    done_file = work / f"rq-{time.monotonic_ns()}.txt"
    env = {**os.environ, "BENCH_REDIS": url, "PYTHONPATH": str(work), "BENCH_OUT": str(done_file)}
    r = redis.Redis.from_url(url)
    r.flushdb()
    enqueue = (
        "import sys, time, redis\nfrom rq import Queue\n"
        "q = Queue('bench', connection=redis.Redis.from_url(sys.argv[2]))\nt = time.perf_counter()\n"
        "for i in range(int(sys.argv[1])):\n"
        "    q.enqueue('benchtasks.rq_noop', i, time.time(), result_ttl=0)\nprint(t)\n"
    )
    out = subprocess.run([str(python), "-c", enqueue, str(n), url], env=env, cwd=work, capture_output=True, text=True)
    start = float(out.stdout.split()[-1])
    worker = subprocess.Popen(
        [str(python), "-m", "rq.cli", "worker", "--burst", "--url", url, "bench"],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker.wait(1800)
    elapsed = time.perf_counter() - start
    p50, p99 = _latencies(done_file, float)
    return Run(n / elapsed, 0.0, p50, p99)  # its CPU is mostly forking, not comparable


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
    celery_row = f"celery prefork -c {CORES} (= cores)"
    rows: dict[str, tuple[int, list[Run]]] = {
        "stoker, Redis Streams, autoscaled (defaults)": (args.messages, []),
        "stoker, Redis Streams, async calls, autoscaled (defaults)": (args.messages, []),
        f"stoker, Redis Streams, {args.replicas} replica(s) pinned": (args.messages, []),
        celery_row: (celery_n, []),
        "celery prefork -c 1": (celery_n, []),
        f"stoker, embedded queue, {args.replicas} replica(s) pinned": (args.messages, []),
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
            # The autoscaled row is the default configuration: default scaling, default STOKER_QUEUE_CONCURRENCY
            # (the worker follows the replicas). The pinned rows keep 64 queued calls at once, as before.
            next(runs)[1].append(bench_stoker(url, args.messages, home / "scaled", rpid, {}, {}))
            next(runs)[1].append(bench_async(url, args.messages, home / "async", rpid))
            fixed = {"STOKER_QUEUE_CONCURRENCY": "64"}
            next(runs)[1].append(bench_stoker(url, args.messages, home / "redis", rpid, pinned, fixed))
            next(runs)[1].append(bench_celery(python, url, celery_n, work, CORES, rpid))
            next(runs)[1].append(bench_celery(python, url, celery_n, work, 1, rpid))
            next(runs)[1].append(bench_embedded(args.messages, home / "embedded", pinned))
            if not args.skip_rq:
                next(runs)[1].append(bench_rq(python, url, args.rq_messages, work, rpid))
            each = [
                f"{k} {v[-1].rate:.0f}/s p50 {v[-1].p50_ms:.0f} ms p99 {v[-1].p99_ms:.0f} ms"
                + (f" ({v[-1].replicas} replicas at most)" if v[-1].replicas else "")
                for k, (_, v) in rows.items()
            ]
            print(f"round {round_ + 1}: " + ", ".join(each), file=sys.stderr, flush=True)
        celery = statistics.median(r.rate for r in rows[celery_row][1])
        print(f"\n{args.rounds} round(s) on {CORES} cores, one redis-server; CPU: its processes + redis-server; "
              "latency: enqueue to completion per message, all of a round's messages enqueued at once\n")  # fmt: skip
        head = "| system | messages | median msg/s | worst msg/s | p50 ms | p99 ms | CPU µs/msg |"
        print(f"{head} median / Celery -c {CORES} |")
        print("|---|---|---|---|---|---|---|---|")
        for name, (count, runs_) in rows.items():
            med = statistics.median(r.rate for r in runs_)
            cpu = statistics.median(r.cpu_us for r in runs_)
            cpu_text = f"{cpu:.0f}" if cpu else "-"
            worst = min(r.rate for r in runs_)
            p50 = statistics.median(r.p50_ms for r in runs_)
            p99 = statistics.median(r.p99_ms for r in runs_)
            print(f"| {name} | {count} | {med:.0f} | {worst:.0f} | {p50:.0f} | {p99:.0f} | {cpu_text} | "
                  f"{med / celery:.2f}x |")  # fmt: skip
        scaled = next(iter(rows.values()))[1]
        print(f"\nAutoscaled row, most replicas per round: {'/'.join(str(r.replicas) for r in scaled)}")
        print("Rounds (msg/s): " + "; ".join(
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
