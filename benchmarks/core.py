"""taskfire's own figures on one machine: enqueue rates, processing rate, idle pickup
latency and Redis memory per job, against a fresh throwaway server.

    python -m benchmarks.core [--server valkey|redis] [--jobs 20000]

Prints a table. Run it on a quiet machine; compare only figures from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from taskfire import AsyncTaskfire, Taskfire
from taskfire.embedded import EmbeddedServer

from . import jobs

ROOT = Path(__file__).resolve().parent.parent


def start_worker(url: str, prefix: str, processes: int, threads: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=prefix, TASKFIRE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "taskfire", "worker", "benchmarks.jobs",
                             "--processes", str(processes), "--threads", str(threads)],
                            cwd=ROOT, env=env, start_new_session=True)


def stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)


def wait_until(predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(0.005)


def bench_enqueue(url: str, n: int) -> float:
    tf = Taskfire(url, prefix="b-single:")
    started = time.perf_counter()
    for _ in range(n):
        tf.enqueue(jobs.incr)
    return n / (time.perf_counter() - started)


def bench_enqueue_async(url: str, n: int, tasks: int = 100) -> float:
    """AsyncTaskfire: `tasks` coroutines on one event loop, each enqueueing in turn."""
    async def run() -> float:
        async with AsyncTaskfire(url, prefix="b-async:") as tf:
            await tf.enqueue(jobs.incr)  # the library loaded, a connection made

            async def task(count: int) -> None:
                for _ in range(count):
                    await tf.enqueue(jobs.incr)

            started = time.perf_counter()
            await asyncio.gather(*(task(n // tasks) for _ in range(tasks)))
            return n // tasks * tasks / (time.perf_counter() - started)
    return asyncio.run(run())


def bench_bulk(url: str, n: int) -> float:
    tf = Taskfire(url, prefix="b-bulk:")
    started = time.perf_counter()
    for start in range(0, n, 1000):
        tf.enqueue_many(jobs.incr, [() for _ in range(min(1000, n - start))])
    return n / (time.perf_counter() - started)


def bench_memory(url: str, n: int) -> float:
    """Bytes of Redis memory per enqueued job, client buffers left out (as
    benchmarks.compare's workload 5: Redis grows and shrinks them on its own schedule)."""
    tf = Taskfire(url, prefix="b-mem:")
    r = tf.storage.redis

    def used() -> int:
        info = r.info("memory")
        return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))

    before = used()
    tf.enqueue_many(jobs.incr, [() for _ in range(n)])
    return (used() - before) / n


def bench_processing(url: str, n: int, processes: int, threads: int) -> float:
    prefix = f"b-proc{processes}:"
    tf = Taskfire(url, prefix=prefix)
    tf.enqueue_many(jobs.incr, [() for _ in range(n)])
    r = tf.storage.redis
    worker = start_worker(url, prefix, processes, threads)
    try:
        wait_until(lambda: r.get(prefix + "bench:done") is not None, 60)
        started, done0 = time.perf_counter(), int(r.get(prefix + "bench:done"))
        wait_until(lambda: int(r.get(prefix + "bench:done")) >= n)
        return (n - done0) / (time.perf_counter() - started)
    finally:
        stop(worker)


def bench_latency(url: str, samples: int) -> tuple[float, float]:
    prefix = "b-lat:"
    tf = Taskfire(url, prefix=prefix)
    r = tf.storage.redis
    worker = start_worker(url, prefix, 1, 4)
    try:
        tf.enqueue(jobs.stamp, time.time())
        wait_until(lambda: r.llen(prefix + "bench:latency") == 1, 60)
        r.delete(prefix + "bench:latency")
        for i in range(samples):
            time.sleep(0.02)  # the worker goes idle again
            tf.enqueue(jobs.stamp, time.time())
            wait_until(lambda i=i: r.llen(prefix + "bench:latency") == i + 1, 10)
        values = sorted(float(v) * 1000 for v in r.lrange(prefix + "bench:latency", 0, -1))
        return statistics.median(values), values[int(len(values) * 0.99) - 1]
    finally:
        stop(worker)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("valkey", "redis"), default="redis")
    p.add_argument("--jobs", type=int, default=20_000)
    args = p.parse_args()
    binary = shutil.which("redis-server") if args.server == "redis" else None
    server = EmbeddedServer(tempfile.mkdtemp(prefix="taskfire-bench-"), binary=binary)
    server.start()
    try:
        n = args.jobs
        rows = [
            ("enqueue, one call per job", f"{bench_enqueue(server.url, n // 4):,.0f} jobs/s"),
            ("enqueue, AsyncTaskfire, 100 tasks, one loop", f"{bench_enqueue_async(server.url, n // 4):,.0f} jobs/s"),
            ("enqueue_many, 1000 per call", f"{bench_bulk(server.url, n):,.0f} jobs/s"),
            ("Redis memory per enqueued job", f"{bench_memory(server.url, n):,.0f} bytes"),
            ("processing, 1 process x 8 threads", f"{bench_processing(server.url, n, 1, 8):,.0f} jobs/s"),
            ("processing, 2 processes x 8 threads", f"{bench_processing(server.url, n, 2, 8):,.0f} jobs/s"),
        ]
        p50, p99 = bench_latency(server.url, 200)
        rows.append(("idle pickup latency p50 / p99", f"{p50:.2f} / {p99:.2f} ms"))
    finally:
        server.stop()
    width = max(len(r[0]) for r in rows)
    print(f"taskfire on {server.binary.name} (loopback), {args.jobs:,} jobs")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>18}")


if __name__ == "__main__":
    main()
