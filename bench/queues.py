"""Queue throughput: N messages end to end (XADD/enqueue to acknowledged) for a no-op function, stoker's Redis Streams
worker beside Celery and RQ on the same redis-server, each with one worker process, in one run.

    python -m bench.queues [--messages 10000] [--rounds 3] [--celery-messages N] [--rq-messages 500]

Each system has its own message count: ``--messages`` for stoker (and Celery unless ``--celery-messages``), and
``--rq-messages`` (default 500) for RQ, which forks a process per job (about 10 jobs/s here: 10,000 would take 17
minutes). Rates (messages/s) are compared, so one run shows all three; the table says how many messages each ran.

Celery and RQ are installed into a throwaway virtualenv (they are not project dependencies). Prints a markdown table:
messages/s per round (median, worst) and the ratio of stoker's median to each baseline's.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from tests.platform_fixture import start_platform, write_handler

ROOT = Path(__file__).resolve().parents[1]

VENV = Path(tempfile.gettempdir()) / "stoker-bench-venv"
TASKS = """
from celery import Celery
import os
app = Celery("bench", broker=os.environ["BENCH_REDIS"])
app.conf.update(task_acks_late=True, task_ignore_result=True, worker_prefetch_multiplier=64)

@app.task
def noop(i):
    return None

def rq_noop(i):
    return None
"""


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


def bench_stoker(url: str, n: int, work: Path) -> float:
    r = redis.Redis.from_url(url)
    p = start_platform(work / "home", "--redis", url, env={"STOKER_QUEUE_CONCURRENCY": "64", "STOKER_POOL_SIZE": "0"})
    try:
        stream = "bench-stoker"
        body = {"service": "noop", "annotations": {"com.stoker.queue.stream": stream}}
        assert p.deploy("noop", write_handler(work / "noop", "def handle(event, context):\n    return ''\n"),
                        **{k: v for k, v in body.items() if k != "service"}).status_code == 202  # fmt: skip
        group = b"stoker:noop.openfaas-fn"
        _wait(lambda: any(g["name"] == group for g in _groups(r, stream)), 30)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(stream, {"i": str(i)})
        start = time.perf_counter()
        pipe.execute()

        def done() -> bool:
            g = next(g for g in _groups(r, stream) if g["name"] == group)
            return int(g["pending"]) == 0 and int(g.get("entries-read") or 0) >= n

        _wait(done, 600)
        elapsed = time.perf_counter() - start
        r.delete(stream)
        return n / elapsed
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


def bench_celery(python: Path, url: str, n: int, work: Path) -> float:
    env = {**os.environ, "BENCH_REDIS": url, "PYTHONPATH": str(work)}
    r = redis.Redis.from_url(url)
    r.flushdb()
    worker = subprocess.Popen(
        [str(python), "-m", "celery", "-A", "benchtasks", "worker", "-c", "1", "-P", "prefork", "-l", "warning"],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        enqueue = (
            "import sys, time\nfrom benchtasks import noop\nn = int(sys.argv[1])\n"
            "t = time.perf_counter()\nfor i in range(n):\n    noop.delay(i)\nprint(t)\n"
        )
        time.sleep(3)  # the worker connects and waits; a started worker has nothing queued
        out = subprocess.run([str(python), "-c", enqueue, str(n)], env=env, cwd=work, capture_output=True, text=True)
        start = float(out.stdout.split()[-1])  # perf_counter is CLOCK_MONOTONIC: comparable across processes
        _wait(lambda: r.llen("celery") == 0 and r.hlen("unacked") == 0, 900)
        return n / (time.perf_counter() - start)
    finally:
        worker.terminate()
        worker.wait(30)


def bench_rq(python: Path, url: str, n: int, work: Path) -> float:
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
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000, help="stoker's messages (and Celery's by default)")
    parser.add_argument("--celery-messages", type=int, default=0, help="Celery's messages (default: --messages)")
    parser.add_argument("--rq-messages", type=int, default=500, help="RQ's messages (it forks per job: ~10/s)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-rq", action="store_true", help="leave RQ out")
    args = parser.parse_args()
    counts = {"stoker": args.messages, "celery": args.celery_messages or args.messages, "rq": args.rq_messages}
    work = Path(tempfile.mkdtemp(prefix="stoker-bench-queue-"))
    (work / "benchtasks.py").write_text(TASKS)
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(work)], stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(lambda: _ping(url), 20)
        python = _venv()
        results: dict[str, list[float]] = {"stoker": [], "celery": [], "rq": []}
        for round_ in range(args.rounds):
            home = work / f"r{round_}"
            home.mkdir()
            results["stoker"].append(bench_stoker(url, counts["stoker"], home))
            results["celery"].append(bench_celery(python, url, counts["celery"], work))
            if not args.skip_rq:
                results["rq"].append(bench_rq(python, url, counts["rq"], work))
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in results.items() if v),
                  file=sys.stderr)  # fmt: skip
        ours = statistics.median(results["stoker"])
        print(f"\n{args.rounds} round(s), 1 worker process each, same redis-server\n")
        print("| system | messages | median msg/s | worst msg/s | stoker median / this median |")
        print("|---|---|---|---|---|")
        for name, values in results.items():
            if values:
                med = statistics.median(values)
                print(f"| {name} | {counts[name]} | {med:.0f} | {min(values):.0f} | {ours / med:.2f}x |")
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
