"""How taskfire's throughput grows with worker processes against one Redis, where the
bottleneck sits, and what one job costs Redis.

    python -m benchmarks.scaling [--server redis|valkey] [--jobs 20000] [--processes 1,2,4,8,16]
                                 [--threads 8] [--cost-jobs 2000]
    python -m benchmarks.scaling --cluster [--jobs 20000] [--processes 2] [--threads 8] [--chart x.png]
        the split of Redis's work over a 3-primary cluster's primaries (cluster_scaling.py)

Starts its own throwaway server. For each kind of job (a no-op, and a 1 ms sleep) and each
process count it fills a queue with --jobs jobs (enqueue_many), starts `taskfire worker
--processes N --threads T`, and measures the steady middle of the run (from 10% to 90% of
the jobs done, so that start-up and the last stragglers are left out): jobs/s, the Redis
server's CPU (INFO cpu: the share of one core, and µs per job), its commands per job (INFO
commandstats: every call, those inside scripts included; FCALL alone is the top level)
and how busy the whole machine was (/proc/stat). The projected jobs/s one Redis core
sustains is 1e6 / (Redis CPU µs per job).

Then the per-job cost through the counting proxy, as `benchmarks.compare` workload 8
measures it (one-call enqueues, then 2 processes x 8 threads; each job's body is one INCR):
top-level commands, calls inside scripts, round trips and Redis CPU per job.

Prints Markdown. On a 2-core machine the workers, Redis and this harness share the CPU:
the table shows where that CPU goes, and from the per-job Redis cost, what a Redis core
would carry if the workers ran elsewhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

from taskfire import Taskfire
from taskfire.embedded import EmbeddedServer

from . import jobs
from .compare import Harness, Monitor, ProxyProcess
from .core import start_worker, stop, wait_until

KINDS = {"no-op": jobs.noop, "1 ms sleep": jobs.sleep_1ms}


class Row(NamedTuple):
    kind: str
    processes: int
    jobs_per_s: float
    redis_cores: float     # Redis CPU seconds per second
    redis_cpu_us: float    # per job
    commands: float        # per job, every call (inside scripts too)
    scripts: float         # per job, script calls (FCALL, the top level)
    machine_busy: float    # share of all cores busy, whole machine


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def measure(url: str, port: int, kind: str, processes: int, threads: int, n: int) -> Row:
    mon = Monitor(port, 0)
    mon.flush()
    prefix = f"scale-{processes}:"
    tf = Taskfire(url, prefix=prefix)
    fn = KINDS[kind]
    for start in range(0, n, 1000):
        tf.enqueue_many(fn, [() for _ in range(min(1000, n - start))])
    done_key = tf.storage.keys.stat("Succeeded")
    worker = start_worker(url, prefix, processes, threads)
    try:
        low, high = n // 10, n - n // 10
        wait_until(lambda: mon.count(done_key) >= low, 120)
        s0, d0, t0, m0 = mon.snapshot(), mon.count(done_key), time.perf_counter(), machine_ticks()
        wait_until(lambda: mon.count(done_key) >= high, 600)
        s1, d1, t1, m1 = mon.snapshot(), mon.count(done_key), time.perf_counter(), machine_ticks()
        wait_until(lambda: mon.count(done_key) >= n, 120)
    finally:
        stop(worker)
        tf.close()
        mon.close()
    done, elapsed, cpu = d1 - d0, t1 - t0, s1["cpu"] - s0["cpu"]
    calls = (s1["calls"] - s0["calls"]) - (s1["harness_calls"] - s0["harness_calls"])
    scripts = s1["by_command"].get("cmdstat_fcall", 0) - s0["by_command"].get("cmdstat_fcall", 0)
    return Row(kind, processes, done / elapsed, cpu / elapsed, cpu * 1e6 / done, calls / done, scripts / done,
               (m1[0] - m0[0]) / max(1, m1[1] - m0[1]))


def per_job_cost(port: int, n: int, log_dir: Path) -> dict[str, float]:
    """benchmarks.compare's workload 8 for taskfire alone: its per-phase figures."""
    harness = Harness(argparse.Namespace(jobs=n, latency_ms=0.0), port, log_dir)
    harness.count_proxy = ProxyProcess(port, 0.0, True, 600)
    mon = Monitor(port, harness.db("taskfire"))
    try:
        harness.cost("taskfire", mon)
    finally:
        harness.count_proxy.stop()
        mon.close()
    if harness.results.failures:
        raise SystemExit(f"the cost run failed: {harness.results.failures}")
    return {k: v[0] for k, v in harness.results.values["taskfire"].items()}


def markdown(rows: list[Row], cost: dict[str, float], args: argparse.Namespace, server: str) -> str:
    lines = [f"taskfire scaling on {server}, {os.cpu_count()} CPUs, {args.jobs:,} jobs per run, "
             f"--threads {args.threads}; steady middle of each run (10% to 90% done).", "",
             "| job | worker processes | jobs/s | Redis CPU (cores) | Redis CPU µs/job | Redis calls/job "
             "| FCALL/job | machine CPU busy | jobs/s one Redis core sustains |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.kind} | {r.processes} | {r.jobs_per_s:,.0f} | {r.redis_cores:.2f} | {r.redis_cpu_us:,.1f} "
                     f"| {r.commands:.1f} | {r.scripts:.2f} | {r.machine_busy:.0%} | {1e6 / r.redis_cpu_us:,.0f} |")
    enqueue_cpu, process_cpu = cost["cost_enqueue_cpu_us"], cost["cost_process_cpu_us"]
    lines += ["", f"Per-job Redis cost ({args.cost_jobs:,} jobs enqueued one call each, then run by 2 processes "
                  "x 8 threads; each job's body is 1 INCR, counted here):", "",
              "| per job | enqueue (one call) | processing | total |", "|---|---:|---:|---:|"]
    for title, key, fmt in (("commands (top level)", "commands", "{:.2f}"),
                            ("calls inside scripts", "script_calls", "{:.1f}"),
                            ("round trips", "round_trips", "{:.2f}"),
                            ("Redis CPU µs", "cpu_us", "{:.1f}")):
        e, p = cost[f"cost_enqueue_{key}"], cost[f"cost_process_{key}"]
        lines.append(f"| {title} | {fmt.format(e)} | {fmt.format(p)} | {fmt.format(e + p)} |")
    best = max(rows, key=lambda r: r.jobs_per_s)
    lines += ["",
              f"One Redis core, projected (1e6 / Redis CPU µs per job): {1e6 / (enqueue_cpu + process_cpu):,.0f} "
              f"jobs/s enqueued one call at a time and processed ({enqueue_cpu + process_cpu:.1f} µs); "
              f"{1e6 / process_cpu:,.0f} jobs/s processed alone ({process_cpu:.1f} µs); "
              f"{1e6 / best.redis_cpu_us:,.0f} jobs/s processed at the fastest row above "
              f"({best.kind}, {best.processes} processes: {best.redis_cpu_us:.1f} µs, bulk-enqueued).",
              "",
              f"Bottleneck here: at its fastest ({best.jobs_per_s:,.0f} jobs/s) Redis used {best.redis_cores:.2f} of a "
              f"core while the machine was {best.machine_busy:.0%} busy, so the workers' CPU "
              + ("(sharing the machine's cores with Redis) bounds throughput, not Redis."
                 if best.redis_cores < 0.9 else "is no longer the limit: Redis is saturated.")]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("valkey", "redis"), default="redis")
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per run (default 20000)")
    p.add_argument("--processes", default="1,2,4,8,16", help="worker process counts (default 1,2,4,8,16)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (default 8)")
    p.add_argument("--cost-jobs", type=int, default=2000, help="jobs in the per-job cost run (default 2000)")
    p.add_argument("--cluster", action="store_true",
                   help="instead: the split over a 3-primary Redis Cluster vs one Redis (benchmarks/cluster_scaling.py)")
    p.add_argument("--samples", type=int, default=200, help="--cluster: idle pickup samples (default 200)")
    p.add_argument("--rounds", type=int, default=3, help="--cluster: rounds of the three loads (default 3)")
    p.add_argument("--chart", default="", help="--cluster: write the capacity chart to this PNG (needs matplotlib)")
    args = p.parse_args()
    if args.cluster:
        from . import cluster_scaling  # noqa: PLC0415 - its own servers; only for --cluster

        args.processes = int(args.processes) if args.processes.isdigit() else 2
        cluster_scaling.main(args)
        return
    try:
        counts = [int(c) for c in args.processes.split(",")]
    except ValueError:
        raise SystemExit(f"--processes takes whole numbers separated by commas, not {args.processes!r}") from None
    if args.jobs < 100 or args.cost_jobs < 1 or args.threads < 1 or min(counts) < 1:
        raise SystemExit("--jobs must be at least 100; --cost-jobs, --threads and --processes at least 1")
    binary = shutil.which("redis-server") if args.server == "redis" else None
    if args.server == "redis" and binary is None:
        raise SystemExit("redis-server not found on PATH (apt-get install redis-server, or --server valkey)")
    data_dir = Path(tempfile.mkdtemp(prefix="taskfire-scaling-"))
    server = EmbeddedServer(data_dir / "server", binary=binary)
    server.start()
    assert server.port is not None
    os.environ["BENCH_REDIS_URL"] = server.url  # the cost run's job module reads it: never 6379
    probe = Monitor(server.port, 0)
    info: Any = probe.r.info("server")
    probe.close()
    name = f"{server.binary.name} {info.get('redis_version', '?')} (loopback, AOF everysec)"
    rows: list[Row] = []
    try:
        for kind in KINDS:
            for n in counts:
                row = measure(server.url, server.port, kind, n, args.threads, args.jobs)
                print(f"  {kind:<10} {n:>2} processes: {row.jobs_per_s:>8,.0f} jobs/s, Redis {row.redis_cores:.2f} "
                      f"cores, {row.redis_cpu_us:.1f} µs/job", file=sys.stderr, flush=True)
                rows.append(row)
        cost = per_job_cost(server.port, args.cost_jobs, data_dir)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(markdown(rows, cost, args, name))


if __name__ == "__main__":
    main()
