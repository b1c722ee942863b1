"""Instructions the Redis server spends inside taskfire's script calls, per job, counted by
valgrind's callgrind: the same figure on every run whatever else the machine is doing,
so a change to the Lua scripts can be compared before and after on a noisy 2-core box
where jobs/s move by 15 % from run to run.

    python -m benchmarks.instructions [--server redis-server] [--workloads single,bulk,process]
                                      [--jobs 2000]

single: one enqueue per call; bulk: enqueue_many, 1,000 per call; process: jobs enqueued
beforehand, run by `taskfire worker --processes 2 --threads 8` (jobs per script call
vary with timing, so it prints them). Only FCALL is counted (--toggle-collect), not the
event loop or the job body's own INCR. Under valgrind the server runs ~50x slower.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from taskfire import Taskfire
from taskfire.embedded import free_port

from . import jobs

ROOT = Path(__file__).resolve().parent.parent


def enqueue_one_by_one(tf: Taskfire, n: int) -> None:
    for _ in range(n):
        tf.enqueue(jobs.incr)


def enqueue_in_bulk(tf: Taskfire, n: int) -> None:
    for start in range(0, n, 1000):
        tf.enqueue_many(jobs.incr, [() for _ in range(min(1000, n - start))])


def counted(server: str, n: int, workload: str) -> tuple[float, float]:
    """FCALL instructions per job and script calls per job for one workload."""
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="tf-callgrind-")) / "callgrind.out"
    srv = subprocess.Popen(["valgrind", "--tool=callgrind", "--toggle-collect=fcallCommand",
                            f"--callgrind-out-file={out}", server, "--port", str(port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        tf = Taskfire(url, prefix="i:")
        enqueue_in_bulk(tf, 50)  # the library is loaded, the keys exist
        if workload == "process":
            enqueue_in_bulk(tf, n)
        subprocess.run(["callgrind_control", "--zero", str(srv.pid)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        r.config_resetstat()
        runs: dict[str, Callable[[Taskfire, int], None]] = {"single": enqueue_one_by_one, "bulk": enqueue_in_bulk}
        if workload == "process":
            env = dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX="i:", PYTHONPATH=str(ROOT))
            worker = subprocess.Popen([sys.executable, "-m", "taskfire", "worker", "benchmarks.jobs",
                                       "--processes", "2", "--threads", "8"], env=env, cwd=ROOT,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 1800
            while int(r.get("i:bench:done") or 0) < n + 50:
                if time.monotonic() > deadline or worker.poll() is not None:
                    raise RuntimeError("the worker did not finish the jobs")
                time.sleep(0.2)
        else:
            runs[workload](tf, n)
        calls = r.info("commandstats")["cmdstat_fcall"]["calls"]
        subprocess.run(["callgrind_control", "--dump", str(srv.pid)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        dumps = sorted(glob.glob(f"{out}*"), key=os.path.getmtime)
        totals = [line for line in Path(dumps[-1]).read_text().splitlines() if line.startswith(("summary:", "totals:"))]
        return int(totals[0].split()[1]) / n, calls / n
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        srv.terminate()
        srv.wait(60)
        for f in glob.glob(f"{out}*"):
            os.remove(f)
        out.parent.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="redis-server", help="the server binary (default: Debian's redis-server)")
    parser.add_argument("--workloads", default="single,bulk,process")
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    print(f"{args.server}, {args.jobs:,} jobs per workload; instructions inside FCALL")
    print("| workload | instructions per job | script calls per job |\n|---|---:|---:|")
    for workload in args.workloads.split(","):
        per_job, calls = counted(args.server, args.jobs, workload)
        print(f"| {workload} | {per_job:,.0f} | {calls:.3g} |", flush=True)


if __name__ == "__main__":
    main()
