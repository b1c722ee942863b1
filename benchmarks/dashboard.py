"""The dashboard at scale: fills a throwaway server with a million succeeded and a hundred
thousand failed jobs, serves the dashboard with gunicorn, and times every page over HTTP.

    python -m benchmarks.dashboard [--succeeded 1000000] [--failed 100000] [--requests 20]

The jobs are real records: created by `enqueue_many`, then moved to Succeeded or Failed
by the same transition script `change_state` runs (pipelined, so filling takes a minute
rather than the hours workers would need). Also stored: jobs waiting in two queues,
retries, a batch of a thousand, and a few recurring jobs. Prints a Markdown table of
each page's p50 / p95 / max response time, and the server's memory and command count
per request (from INFO commandstats), which shows that no page walks the whole store.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from taskfire import Cron, Failed, Scheduled, Succeeded, Taskfire
from taskfire.client import transition_for
from taskfire.embedded import EmbeddedServer, free_port

from . import jobs

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "dash:"
CHUNK = 5000


def move_all(tf: Taskfire, ids: list[str], state_for: object) -> None:
    """Moves jobs with the transition script, CHUNK per round trip."""
    for start in range(0, len(ids), CHUNK):
        tf.storage.transitions([transition_for(job_id, state_for(job_id))  # type: ignore[operator]
                                for job_id in ids[start:start + CHUNK]])


def fill(tf: Taskfire, succeeded: int, failed: int) -> dict[str, str]:
    """The store the pages are timed against; returns a few ids to open. The first
    1,000 failures (the oldest) are TimeoutErrors, every later one a ValueError."""
    started = time.perf_counter()
    done = Succeeded(reason="benchmark fill", duration_ms=3.0, latency_ms=1.0)
    broken = Failed(reason="An exception occurred", exception_type="ValueError",
                    exception_message="row 17: price is not a number",
                    exception_details="Traceback (most recent call last):\n  ...\nValueError: row 17")
    timed_out = Failed(reason="An exception occurred", exception_type="TimeoutError",
                       exception_message="the warehouse did not answer in 30 s")
    sample: dict[str, str] = {}
    for kind, total, fn, state in (("succeeded", succeeded, jobs.incr, done), ("failed", failed, jobs.fails, broken)):
        for start in range(0, total, 50_000):
            ids = tf.enqueue_many(fn, [() for _ in range(min(50_000, total - start))])
            move_all(tf, ids[:1000] if kind == "failed" and start == 0 else [], lambda _id: timed_out)
            move_all(tf, ids[1000:] if kind == "failed" and start == 0 else ids, lambda _id, s=state: s)
            sample.setdefault(kind, ids[0])
            print(f"  {kind}: {start + len(ids):,} of {total:,} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    waiting = tf.enqueue_many(jobs.incr, [() for _ in range(20_000)])
    jobs.incr.options(queue="reports").enqueue_many([() for _ in range(5_000)])
    sample["enqueued"] = waiting[0]
    sooner = tf.enqueue_many(jobs.incr, [() for _ in range(20_000)])  # scheduled, due before the retries
    move_all(tf, sooner, lambda _id: Scheduled(delay=600, reason="Scheduled by the benchmark"))
    retries = tf.enqueue_many(jobs.fails, [() for _ in range(2_000)])
    failure = Failed(reason="An exception occurred", exception_type="ConnectionError", exception_message="refused")
    for start in range(0, len(retries), CHUNK):  # elected in place of a failure, as the retry policy does
        tf.storage.transitions([transition_for(i, Scheduled(delay=3600, reason="Retry attempt 1 of 3: refused"),
                                               fields={"retries": "1"}, elected=[failure])
                                for i in retries[start:start + CHUNK]])
    with tf.batch() as b:
        for _ in range(1_000):
            b.enqueue(jobs.incr)
    sample["batch"] = b.id
    for name, cron in (("nightly-report", Cron.daily(2)), ("invoices", Cron.monthly(1, 6)),
                       ("overdue", Cron.hourly())):
        tf.recurring.add_or_update(name, jobs.incr, cron)
    print(f"  filled in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return sample


def time_backfill(tf: Taskfire) -> str:
    """Drops the retry and failure indexes, as a store from before them lacks them, and
    times building them again in the slices the dashboard uses; says what they weigh."""
    k, r = tf.storage.keys, tf.storage.redis
    functions, exceptions = tf.storage.monitor.failure_groups()
    keys = [k.retries, k.failed_functions, k.failed_exceptions, *map(k.failed_by_function, functions),
            *map(k.failed_by_exception, exceptions)]
    weight = sum(r.memory_usage(key, samples=0) or 0 for key in keys)  # type: ignore[misc]
    r.delete(*keys, k.index_builds)
    parts = []
    for index in ("retries", "failed"):
        started, calls, looked = time.perf_counter(), 0, 0
        while True:
            n, built = tf.storage.backfill(index, 2000)
            calls, looked = calls + 1, looked + n
            if built:
                break
        parts.append(f"{index} from {looked:,} jobs in {calls} slices, {time.perf_counter() - started:.2f} s")
    failed = sum(functions.values())
    return (f"Indexes of retries and failures: {weight / 2**20:.1f} MiB ({weight / max(1, failed):.0f} B per failed "
            f"job); built again for an older store: {'; '.join(parts)}")


def get(url: str, expect: int = 200) -> float:
    """Milliseconds to fetch a page whole."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as exc:  # a 404 page is a page too
        exc.read()
        status = exc.code
    if status != expect:
        raise SystemExit(f"{url} answered {status}, not {expect}")
    return (time.perf_counter() - started) * 1000


def commands(tf: Taskfire) -> int:
    stats = tf.storage.redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())  # type: ignore[union-attr]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", choices=("valkey", "redis"), default="redis")
    p.add_argument("--succeeded", type=int, default=1_000_000)
    p.add_argument("--failed", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=20, help="requests per page")
    args = p.parse_args()
    binary = shutil.which("redis-server") if args.server == "redis" else None
    data_dir = tempfile.mkdtemp(prefix="taskfire-dash-bench-")
    server = EmbeddedServer(data_dir, binary=binary, appendfsync="no")
    server.start()
    dash = None
    try:
        tf = Taskfire(server.url, prefix=PREFIX)
        sample = fill(tf, args.succeeded, args.failed)
        memory = tf.storage.redis.info("memory")["used_memory"]
        port = free_port()
        env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=PREFIX, TASKFIRE_LOG_LEVEL="WARNING")
        dash = subprocess.Popen([sys.executable, "-m", "taskfire", "dashboard", "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1", "--threads", "1"], cwd=ROOT, env=env, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                get(base + "/api/stats")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the dashboard did not start") from None
                time.sleep(0.1)
        backfill = time_backfill(tf)
        last_failed_page = args.failed // 50
        pages = [
            ("overview", "/"),
            ("succeeded, page 1", "/jobs/state/Succeeded"),
            ("succeeded, last kept page", f"/jobs/state/Succeeded?page={tf.storage.index_cap // 50}"),
            ("failed, page 1", "/jobs/state/Failed"),
            (f"failed, page {last_failed_page:,} (the oldest)", f"/jobs/state/Failed?page={last_failed_page}"),
            ("failed, by function (page 1)", "/jobs/state/Failed?function=benchmarks.jobs:fails"),
            ("failed, by exception: the 1,000 oldest", "/jobs/state/Failed?exception=TimeoutError"),
            ("failed, by exception, 500 rows", "/jobs/state/Failed?exception=TimeoutError&size=500"),
            ("search: failures by text", "/jobs/find?q=timeout"),
            ("succeeded, text filter (newest 5,000)", "/jobs/state/Succeeded?function=incr"),
            ("enqueued: the queues to pick from", "/jobs/state/Enqueued"),
            ("enqueued, queue default", "/jobs/state/Enqueued?queue=default"),
            ("scheduled", "/jobs/state/Scheduled"),
            ("retries (2,000 behind 20,000 due sooner)", "/retries"),
            ("job details (succeeded)", f"/jobs/{sample['succeeded']}"),
            ("job details (failed)", f"/jobs/{sample['failed']}"),
            ("search, an id no job has", "/jobs/find?q=nope"),
            ("batches", "/batches"),
            ("batch (1,000 members)", f"/batches/{sample['batch']}"),
            ("batch, last page of members", f"/batches/{sample['batch']}?page=20"),
            ("recurring", "/recurring"),
            ("queues", "/queues"),
            ("servers", "/servers"),
            ("api: stats", "/api/stats"),
            ("api: 1,000 failed jobs", "/api/jobs/state/Failed?limit=1000"),
            ("api: retries", "/api/retries"),
            ("metrics", "/metrics"),
        ]
        rows = []
        for name, path in pages:
            expect = 404 if "(404)" in name else 200
            before = commands(tf)
            times = sorted(get(base + path, expect) for _ in range(args.requests))
            per_request = (commands(tf) - before - 1) / args.requests  # the INFO call itself counts once
            rows.append((name, statistics.median(times), times[max(0, round(len(times) * 0.95) - 1)], times[-1],
                         per_request))
            print(f"  {name}: p50 {rows[-1][1]:.1f} ms", file=sys.stderr, flush=True)
        print(f"\ntaskfire dashboard on {server.binary.name}: {args.succeeded:,} succeeded, {args.failed:,} failed, "
              f"25,000 enqueued, 2,000 retries, a 1,000-job batch; Redis used_memory {memory / 2**20:,.0f} MiB; "
              f"gunicorn 1 process x 1 thread; {args.requests} requests per page over loopback HTTP\n")
        print(backfill + "\n")
        print("| page | p50 ms | p95 ms | max ms | Redis commands per request |")
        print("|---|---:|---:|---:|---:|")
        for name, p50, p95, worst, per in rows:
            print(f"| {name} | {p50:.1f} | {p95:.1f} | {worst:.1f} | {per:,.0f} |")
    finally:
        if dash is not None and dash.poll() is None:
            dash.send_signal(signal.SIGTERM)
            dash.wait(10)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
