"""taskfire against RQ, Dramatiq, Celery, arq, Huey, SAQ, taskiq, BullMQ and streaq: the
same workloads, the same throwaway Redis, the same run.

    python -m benchmarks.compare [--jobs 20000] [--reps 3] [--libs taskfire,rq,...]
                                 [--workloads enqueue,bulk,...] [--latency-ms 0] [--out DIR]

Starts its own redis-server (Debian's binary) on a free port, runs repetition 1 of every
library, then repetition 2 of every library, ..., prints a Markdown table of medians with
their min-max spread, and writes the table (.md), the raw figures (.json) and a bar chart
(.png) to --out. See benchmarks/README.md for what each workload measures. taskiq, BullMQ
and streaq run from a second environment (`python -m benchmarks.env2` builds it); this
process never imports them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from taskfire.embedded import EmbeddedServer

from . import body
from .compare_report import (
    BUSY_THREADS,
    METRIC,
    Results,
    chart,
    markdown,
)
from .peer_jobs.common import DONE, LATE, LATENCY
from . import baseline
from .peers import PEERS, Peer, TaskfireBasePeer
from .workers import Workers, stop_group, wait_until

ROOT = Path(__file__).resolve().parent.parent

WORKLOADS = ("enqueue", "bulk", "process", "latency", "memory", "scheduled", "process_1ms", "cost", "cost_1ms_16")
LATENCY_SAMPLES = 200
LATENCY_BUDGET_S = 30.0  # a polling worker (arq: 0.5 s) gets fewer samples
SCHEDULED_JOBS = 50
# -- the server, the proxies, the monitoring client ---------------------------------

class Monitor:
    """The harness's own direct connection: counters, FLUSHALL and INFO. It counts its
    commands so that they can be taken out of INFO commandstats."""

    def __init__(self, port: int, db: int) -> None:
        self.r = redis.Redis(host="127.0.0.1", port=port, db=db, socket_timeout=30)
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.r.execute_command(*args)

    def count(self, key: str) -> int:
        return int(self("GET", key) or 0)

    def llen(self, key: str) -> int:
        return int(self("LLEN", key))

    def floats(self, key: str) -> list[float]:
        return [float(v) for v in self("LRANGE", key, 0, -1)]

    def flush(self) -> None:
        self("FLUSHALL")

    def used_memory(self) -> tuple[int, int]:
        """INFO memory used_memory, and the part of it that is client buffers (which
        Redis grows and shrinks on its own schedule)."""
        self.calls += 1
        info = self.r.info("memory")
        return int(info["used_memory"]), int(info["mem_clients_normal"])

    def snapshot(self) -> dict[str, Any]:
        """INFO commandstats + cpu, with how many commands this client had sent before."""
        calls = self.calls
        self.calls += 1
        info = self.r.info("commandstats", "cpu")
        stats = {k: v["calls"] for k, v in info.items() if k.startswith("cmdstat_")}
        return {"harness_calls": calls, "calls": sum(stats.values()), "by_command": stats,
                "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"])}

    def close(self) -> None:
        self.r.close()


class ProxyProcess:
    """benchmarks.proxy in a subprocess of its own (so its CPU is not the harness's)."""

    def __init__(self, target_port: int, latency_ms: float, count_commands: bool, max_seconds: float) -> None:
        argv = [sys.executable, "-m", "benchmarks.proxy", "--target-port", str(target_port),
                "--latency-ms", str(latency_ms), "--max-seconds", str(max_seconds),
                "--parent-pid", str(os.getpid())]
        if count_commands:
            argv.append("--count-commands")
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        line = self.process.stdout.readline().split() if self.process.stdout else []
        if len(line) != 4 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"the proxy did not start (it printed {line!r})")
        self.port, self.control_port = int(line[1]), int(line[3])

    def _control(self, command: str) -> str:
        with socket.create_connection(("127.0.0.1", self.control_port), timeout=10) as s:
            s.sendall(command.encode() + b"\n")
            return s.makefile().readline()

    def stats(self) -> dict[str, Any]:
        return json.loads(self._control("stats"))

    def stop(self) -> None:
        stop_group(self.process, grace=5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def phase(pa: dict[str, Any], pb: dict[str, Any], sa: dict[str, Any], sb: dict[str, Any], n: int
          ) -> tuple[float, float, float, float, float]:
    """Per job between two (proxy stats, INFO snapshot) pairs: top-level commands, calls
    inside scripts, Redis CPU µs, round trips, top-level script calls."""
    top = pb["commands"] - pa["commands"]
    total = (sb["calls"] - sa["calls"]) - (sb["harness_calls"] - sa["harness_calls"])
    scripts = sum(pb["by_command"].get(c, 0) - pa["by_command"].get(c, 0)
                  for c in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"))
    return (top / n, max(0, total - top) / n, (sb["cpu"] - sa["cpu"]) * 1e6 / n,
            (pb["round_trips"] - pa["round_trips"]) / n, scripts / n)


# -- the harness --------------------------------------------------------------------

class Harness:
    def __init__(self, args: argparse.Namespace, port: int, log_dir: Path) -> None:
        self.args = args
        self.port = port
        self.log_dir = log_dir
        self.latency_proxy: ProxyProcess | None = None
        self.count_proxy: ProxyProcess | None = None
        self.results = Results()

    def db(self, lib: str) -> int:
        return 1 + list(PEERS).index(lib)

    def url(self, lib: str, port: int | None = None) -> str:
        return f"redis://127.0.0.1:{port or self.port}/{self.db(lib)}"

    def client_url(self, lib: str) -> str:
        """Where the library's clients and workers connect: Redis, or the latency proxy."""
        return self.url(lib, self.latency_proxy.port if self.latency_proxy else None)

    def n_for(self, peer: type[Peer], base: int, cap: int | None) -> int:
        return min(base, cap) if cap else base

    # -- workloads ------------------------------------------------------------------

    def enqueue_and_memory(self, lib: str, mon: Monitor, workloads: set[str]) -> None:
        n = max(1, self.args.jobs // 4)
        mon.flush()
        peer = PEERS[lib](self.client_url(lib))
        try:
            peer.enqueue_each("incr", 1)  # connections, script loads (no FLUSHALL after it:
            time.sleep(0.3)                 # kombu would lose the routing it declared)
            before, before_clients = mon.used_memory()
            started = time.perf_counter()
            peer.enqueue_each("incr", n)
            elapsed = time.perf_counter() - started
            time.sleep(0.3)  # the AOF buffer goes to disk
            after, after_clients = mon.used_memory()
        finally:
            peer.close()
        if "enqueue" in workloads:
            self.record(lib, "enqueue", n / elapsed, f"{n:,} jobs")
        if "memory" in workloads:
            # client query/output buffers are not the jobs' memory
            self.record(lib, "memory", ((after - after_clients) - (before - before_clients)) / n, f"{n:,} jobs")
            self.results.add(lib, "memory_raw", (after - before) / n)

    def bulk(self, lib: str, mon: Monitor) -> None:
        n = self.args.jobs
        cls = PEERS[lib]
        if not cls.bulk:
            self.results.note(lib, "bulk", "no bulk API")
            return
        mon.flush()
        peer = cls(self.client_url(lib))
        try:
            peer.enqueue_bulk("incr", 10)
            started = time.perf_counter()
            peer.enqueue_bulk("incr", n)
            elapsed = time.perf_counter() - started
        finally:
            peer.close()
        self.record(lib, "bulk", n / elapsed, f"{n:,} jobs; {cls.bulk}")

    def process(self, lib: str, mon: Monitor, kind: str, key: str) -> None:
        cls = PEERS[lib]
        n = self.n_for(cls, self.args.jobs, cls.process_cap)
        mon.flush()
        peer = cls(self.client_url(lib))
        try:
            peer.enqueue_fill(kind, n)
        finally:
            peer.close()
        done_key = cls.prefix + DONE
        with Workers(peer, self.log_dir, key, self.results.warnings) as workers:
            wait_until(lambda: mon.count(done_key) > 0, 60, f"{lib}'s first job", workers)
            started, done0 = time.perf_counter(), mon.count(done_key)
            per_job = 0.02 if cls.process_cap else 0.005
            wait_until(lambda: mon.count(done_key) >= n, 120 + n * per_job, f"{lib}'s {n:,} jobs", workers)
            elapsed = time.perf_counter() - started
        note = f"{n:,} jobs" + (" (capped: slow worker)" if n < self.args.jobs else "")
        self.record(lib, key, (n - done0) / elapsed, note)

    def idle(self, lib: str, mon: Monitor, workloads: set[str]) -> None:
        """Idle pickup latency, then scheduled-job lateness, with one set of workers."""
        cls = PEERS[lib]
        mon.flush()
        peer = cls(self.client_url(lib))
        lat_key, late_key = cls.prefix + LATENCY, cls.prefix + LATE

        def has(key: str, count: int) -> Callable[[], bool]:
            return lambda: mon.llen(key) >= count
        try:
            with Workers(peer, self.log_dir, "idle", self.results.warnings) as workers:
                peer.enqueue_stamp()  # warm-up: the workers are up and idle after it
                wait_until(lambda: mon.llen(lat_key) == 1, 120, f"{lib}'s workers to start", workers)
                mon("DEL", lat_key)
                if "latency" in workloads:
                    deadline = time.monotonic() + LATENCY_BUDGET_S
                    for i in range(LATENCY_SAMPLES):
                        if i >= 20 and time.monotonic() > deadline:
                            break
                        time.sleep(0.02)  # the workers go idle again
                        peer.enqueue_stamp()
                        wait_until(has(lat_key, i + 1), 15, f"{lib}'s latency job", workers, poll=0.0005)
                    values = [v * 1000 for v in mon.floats(lat_key)]
                    note = f"{len(values)} samples" + (
                        f" (stopped after {LATENCY_BUDGET_S:.0f} s)" if len(values) < LATENCY_SAMPLES else "")
                    self.record(lib, "latency_p50", statistics.median(values), note)
                    self.record(lib, "latency_p99", percentile(values, 0.99), note)
                if "scheduled" in workloads:
                    base = time.time() + 1.0
                    for i in range(SCHEDULED_JOBS):
                        peer.schedule_late(base + i * 0.02)
                    wait_until(lambda: mon.llen(late_key) >= SCHEDULED_JOBS, 60, f"{lib}'s scheduled jobs",
                               workers, poll=0.01)
                    values = [v * 1000 for v in mon.floats(late_key)]
                    self.record(lib, "late_p50", statistics.median(values), f"{SCHEDULED_JOBS} jobs")
                    self.record(lib, "late_p99", percentile(values, 0.99), f"{SCHEDULED_JOBS} jobs")
        finally:
            peer.close()

    def cost(self, lib: str, mon: Monitor, busy: bool = False) -> None:
        """Per-job Redis cost through the counting proxy: one-call enqueues, then processing,
        then the job body alone (to subtract from the processing). busy (workload 9): 1 ms
        jobs with BUSY_THREADS threads per worker process; else (workload 8) INCR-only jobs
        with each library's own configuration."""
        assert self.count_proxy is not None
        cls = PEERS[lib]
        n = min(self.args.jobs, cls.cost_cap)
        kind, concurrency, label = ("incr_sleep", BUSY_THREADS, "cost_1ms_16") if busy else ("incr", None, "cost")
        url = self.url(lib, self.count_proxy.port)
        mon.flush()
        peer = cls(url)
        done_key = cls.prefix + DONE
        try:
            peer.enqueue_each(kind, 1)  # connections, script loads
            p0, s0 = self.count_proxy.stats(), mon.snapshot()
            peer.enqueue_each(kind, n)
            p1, s1 = self.count_proxy.stats(), mon.snapshot()
            with Workers(peer, self.log_dir, label, self.results.warnings, concurrency) as workers:
                wait_until(lambda: mon.count(done_key) >= n + 1, 120 + n * 0.02, f"{lib}'s {n:,} jobs",
                           workers, poll=0.01)
                p2, s2 = self.count_proxy.stats(), mon.snapshot()
        finally:
            peer.close()
        enq = phase(p0, p1, s0, s1, n)
        proc = phase(p1, p2, s1, s2, n + 1)  # the warm-up job is processed too
        # the body as the library's workers send it: from 2 processes, over as many threads
        threads = BUSY_THREADS if busy and not cls.no_concurrency else 1
        body_us = self.body_cpu(mon, url, n + 1, threads, 1.0 if busy else 0.0)
        note = f"{n:,} jobs"
        if busy:
            if cls.no_concurrency:
                note += f" ({cls.no_concurrency}, as in workload 3)"
            self.record(lib, "busy_process_cpu_us", proc[2], note)
            self.record(lib, "busy_process_cpu_net_us", proc[2] - body_us, note)
            for key, value in (("busy_process_commands", proc[0]), ("busy_process_script_calls", proc[1]),
                               ("busy_process_round_trips", proc[3]), ("busy_body_cpu_us", body_us)):
                self.results.add(lib, key, value)
            return
        self.record(lib, "cost_commands", enq[0] + proc[0], note)
        self.record(lib, "cost_script_calls", enq[1] + proc[1], note)
        self.record(lib, "cost_cpu_us", enq[2] + proc[2], note)
        self.record(lib, "cost_round_trips", enq[3] + proc[3], note)
        self.record(lib, "cost_process_cpu_us", proc[2], note)
        self.record(lib, "cost_process_cpu_net_us", proc[2] - body_us, note)
        for key, value in (("cost_enqueue_commands", enq[0]), ("cost_process_commands", proc[0]),
                           ("cost_enqueue_script_calls", enq[1]), ("cost_process_script_calls", proc[1]),
                           ("cost_enqueue_cpu_us", enq[2]), ("cost_body_cpu_us", body_us),
                           ("cost_enqueue_round_trips", enq[3]), ("cost_process_round_trips", proc[3]),
                           ("cost_evalsha", enq[4] + proc[4])):
            self.results.add(lib, key, value)
        if os.environ.get("BENCH_DEBUG"):
            top = {c: p2["by_command"].get(c, 0) - p0["by_command"].get(c, 0) for c in p2["by_command"]}
            print(f"    {lib} top-level commands: {top}", file=sys.stderr)

    def body_cpu(self, mon: Monitor, url: str, count: int, threads: int, sleep_ms: float) -> float:
        """Redis CPU µs per job of the job body alone: `count` unpipelined INCRs from two
        `benchmarks.body` processes (`threads` threads each, `sleep_ms` after each INCR),
        through the same proxy as the jobs, waited for with the same polling."""
        mon("DEL", body.KEY)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        s0 = mon.snapshot()
        processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.body", url, str(share), "--threads",
                                       str(threads), "--sleep-ms", str(sleep_ms)], cwd=ROOT, env=env,
                                      stdin=subprocess.DEVNULL)
                     for share in (count - count // 2, count // 2)]

        def done() -> bool:
            if any(p.poll() not in (None, 0) for p in processes):
                raise RuntimeError("a benchmarks.body process failed (its error is above)")
            return mon.count(body.KEY) >= count
        try:
            wait_until(done, 60 + count * 0.01, "the job body's INCRs", poll=0.01)
            s1 = mon.snapshot()
        finally:
            for p in processes:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        return (s1["cpu"] - s0["cpu"]) * 1e6 / count

    def record(self, lib: str, key: str, value: float, note: str = "") -> None:
        self.results.add(lib, key, value)
        if note:
            self.results.note(lib, key, note)
        print(f"    {lib:<9} {METRIC[key].title:<68} {METRIC[key].fmt.format(value):>12} {METRIC[key].unit}",
              file=sys.stderr, flush=True)

    # -- one library, one repetition ----------------------------------------------

    def run_library(self, lib: str, workloads: set[str]) -> None:
        cls = PEERS[lib]
        reason = cls.unavailable()
        if reason:
            self.results.not_run[lib] = reason
            print(f"    NOT RUN {lib}: {reason}", file=sys.stderr, flush=True)
            return
        if cls.no_schedule and "scheduled" in workloads:
            self.results.note(lib, "late_p50", "not run")
            self.results.note(lib, "late_p99", "not run")
            workloads = workloads - {"scheduled"}
        mon = Monitor(self.port, self.db(lib))
        steps: list[tuple[str, Callable[[], None]]] = []
        if workloads & {"enqueue", "memory"}:
            steps.append(("enqueue/memory", lambda: self.enqueue_and_memory(lib, mon, workloads)))
        if "bulk" in workloads:
            steps.append(("bulk", lambda: self.bulk(lib, mon)))
        if "process" in workloads:
            steps.append(("process", lambda: self.process(lib, mon, "incr", "process")))
        if workloads & {"latency", "scheduled"}:
            steps.append(("latency/scheduled", lambda: self.idle(lib, mon, workloads)))
        if "process_1ms" in workloads:
            steps.append(("process_1ms", lambda: self.process(lib, mon, "incr_sleep", "process_1ms")))
        if "cost" in workloads:
            steps.append(("cost", lambda: self.cost(lib, mon, busy=False)))
        if "cost_1ms_16" in workloads:
            steps.append(("cost_1ms_16", lambda: self.cost(lib, mon, busy=True)))
        try:
            for name, step in steps:
                t0 = time.monotonic()
                try:
                    step()
                    if os.environ.get("BENCH_DEBUG"):
                        print(f"    ({name}: {time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
                except Exception as exc:  # noqa: BLE001 -- one library's failure must not end the run
                    message = f"{lib} {name}: {type(exc).__name__}: {exc}"
                    self.results.failures.append(message)
                    print(f"    FAILED {message}", file=sys.stderr, flush=True)
                    if os.environ.get("BENCH_DEBUG"):
                        traceback.print_exc()
        finally:
            try:
                mon.flush()
            finally:
                mon.close()



# -- main -----------------------------------------------------------------------------

def parse_list(raw: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    items = [x.strip().lower() for x in raw.split(",") if x.strip()]
    aliases = {str(i + 1): w for i, w in enumerate(allowed)} if what == "workload" else {}
    items = [aliases.get(x, x) for x in items]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}(s): {', '.join(bad)}; choose from {', '.join(allowed)}")
    return items


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run (default 20000)")
    p.add_argument("--reps", type=int, default=3, help="repetitions, interleaved across libraries (default 3)")
    every = [name for name in PEERS if name != "taskfire-base"]
    p.add_argument("--libs", default=None, help=f"comma-separated, default {','.join(every)} (and taskfire-base "
                                                 f"with --baseline)")
    p.add_argument("--baseline", default=None, metavar="REF",
                   help="also run taskfire as it was at this git commit, as the library taskfire-base "
                        "(benchmarks/baseline.py): a before/after in one run")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated names or numbers 1-9, default {','.join(WORKLOADS)}")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="route every client and worker through a proxy adding this delay each way (default 0)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output directory")
    p.add_argument("--max-minutes", type=float, default=60.0,
                   help="the proxies stop by themselves after this long (default 60)")
    args = p.parse_args()
    if args.jobs < 1 or args.reps < 1:
        raise SystemExit("--jobs and --reps must be at least 1")
    if args.baseline:
        TaskfireBasePeer.tree = baseline.export(args.baseline)
    default = every + (["taskfire-base"] if args.baseline else [])
    libs = parse_list(args.libs or ",".join(default), list(PEERS), "library")
    workloads = set(parse_list(args.workloads, WORKLOADS, "workload"))
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found on PATH (apt-get install redis-server)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp, when = time.strftime("%Y%m%d-%H%M%S"), time.strftime("%Y-%m-%d %H:%M")
    data_dir = Path(tempfile.mkdtemp(prefix="taskfire-compare-"))
    log_dir = out / f"compare-{stamp}-logs"
    log_dir.mkdir()

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: workers, proxies, server

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    server = EmbeddedServer(data_dir / "redis", binary=binary)
    server.start()
    assert server.port is not None
    version = redis.Redis(port=server.port).info("server")["redis_version"]
    server_name = f"redis-server {version} (AOF everysec)"
    # The job modules read BENCH_REDIS_URL at import: never the default 6379.
    os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
    harness = Harness(args, server.port, log_dir)
    started = time.monotonic()
    try:
        if args.latency_ms > 0:
            harness.latency_proxy = ProxyProcess(server.port, args.latency_ms, False, args.max_minutes * 60)
        if workloads & {"cost", "cost_1ms_16"}:
            harness.count_proxy = ProxyProcess(server.port, args.latency_ms, True, args.max_minutes * 60)
        for rep in range(args.reps):
            for lib in libs:
                print(f"[rep {rep + 1}/{args.reps}] {lib} ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr, flush=True)
                harness.run_library(lib, workloads)
    finally:
        for proxy in (harness.latency_proxy, harness.count_proxy):
            if proxy is not None:
                proxy.stop()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    results = harness.results
    table = markdown(results, libs, args, server_name, when)
    print(table)
    base = out / f"compare-{stamp}"
    base.with_suffix(".md").write_text(table)
    base.with_suffix(".json").write_text(json.dumps({
        "args": vars(args), "server": server_name, "values": results.values, "notes": results.notes,
        "failures": results.failures, "warnings": results.warnings, "not_run": results.not_run, "seconds": round(time.monotonic() - started, 1)}, indent=1))
    chart(results, libs, base.with_suffix(".png"),
          f"taskfire vs peers — {server_name}, {args.jobs:,} jobs, {args.reps} rep(s), "
          f"latency {args.latency_ms:g} ms each way; bars: median, whiskers: min–max")
    print(f"wrote {base}.md, {base}.json, {base}.png (worker logs in {log_dir}); "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
