"""What 10,000 recurring jobs cost the schedulers and Redis, on a throwaway server.

    python -m benchmarks.recurring [--server valkey|redis] [--jobs 10000] [--seconds 30]

Three loads, each with one `taskfire worker` of 2 processes (2 schedulers) that takes no
fired job (it listens on another queue), so only scheduling is measured:

    idle     every job daily at 02:00: nothing is due
    spread   job i at second i % 60 of every minute: a steady ~jobs/60 runs per second
    burst    every job at second 0 of every minute: all runs due at once

For each: runs fired per second, the worker's CPU (server + both processes), Redis calls
and Redis CPU per second, and for the burst how long after the minute the last run fired.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from taskfire import Taskfire
from taskfire.embedded import EmbeddedServer

from . import jobs
from .core import start_worker, stop, wait_until


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that are still alive."""
    total = 0.0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / 100  # utime, stime in clock ticks
    return total


def redis_counters(tf: Taskfire) -> tuple[int, float]:
    """Commands served so far (less INFO itself) and the server's CPU seconds."""
    info = tf.storage.redis.info("all")
    calls = sum(v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k != "cmdstat_info")
    return calls, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def fired(tf: Taskfire) -> int:
    return tf.storage.redis.llen(tf.storage.keys.queue("fired"))


def measure(tf: Taskfire, worker_pid: int, seconds: float) -> dict[str, float]:
    calls0, rcpu0 = redis_counters(tf)
    wcpu0, fired0, t0 = cpu_seconds(worker_pid), fired(tf), time.monotonic()
    time.sleep(seconds)
    calls1, rcpu1 = redis_counters(tf)
    wcpu1, fired1, t1 = cpu_seconds(worker_pid), fired(tf), time.monotonic()
    span = t1 - t0
    return {"runs/s": (fired1 - fired0) / span, "worker CPU %": 100 * (wcpu1 - wcpu0) / span,
            "Redis calls/s": (calls1 - calls0 - 2) / span, "Redis CPU %": 100 * (rcpu1 - rcpu0) / span}


def load(tf: Taskfire, n: int, cron_of) -> None:
    for i in range(n):
        tf.recurring.add_or_update(f"r{i}", jobs.incr.options(queue="fired"), cron_of(i))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("valkey", "redis"), default="redis")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    binary = shutil.which("redis-server") if args.server == "redis" else None
    server = EmbeddedServer(tempfile.mkdtemp(prefix="taskfire-bench-"), binary=binary)
    server.start()
    rows = []
    try:
        for name, cron_of in (("idle", lambda i: "0 2 * * *"), ("spread", lambda i: f"{i % 60} * * * * *"),
                              ("burst", lambda i: "0 * * * * *")):
            prefix = f"rec-{name}:"
            tf = Taskfire(server.url, prefix=prefix)
            t = time.monotonic()
            load(tf, args.jobs, cron_of)
            added = args.jobs / (time.monotonic() - t)
            worker = start_worker(server.url, prefix, 2, 1)
            try:
                time.sleep(3)  # the worker starts and settles
                row = {"load": name, "add_or_update/s": added, **measure(tf, worker.pid, args.seconds)}
                if name == "burst":
                    now = tf.storage.server_time_ms()
                    minute = now - now % 60_000 + 60_000
                    before = fired(tf)
                    wait_until(lambda: fired(tf) >= before + args.jobs, 120)
                    last = max(int(j.created_at.timestamp() * 1000) for j in map(
                        tf.get_job, (b.decode() for b in tf.storage.redis.lrange(
                            tf.storage.keys.queue("fired"), 0, 50))) if j and j.created_at)
                    row["last run after its tick (ms)"] = last - minute
                rows.append(row)
            finally:
                stop(worker)
    finally:
        server.stop()
    print(f"taskfire recurring scheduling on {server.binary.name} (loopback), {args.jobs:,} recurring jobs, "
          f"1 worker of 2 processes, {args.seconds:.0f} s per load")
    columns = ["load", "add_or_update/s", "runs/s", "worker CPU %", "Redis calls/s", "Redis CPU %",
               "last run after its tick (ms)"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{row[c]:,.1f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                                for c in columns) + " |")


if __name__ == "__main__":
    main()
