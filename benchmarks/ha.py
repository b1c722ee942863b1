"""What waiting for a replica costs: enqueue rates with and without `wait_replicas=1`
(Redis WAIT after each call that stores jobs, in the same round trip), on a primary and
one replica, both Debian's redis-server with AOF (appendfsync everysec) on loopback. The
replica's link is direct, or goes through benchmarks.proxy adding a delay each way, as
between zones or sites.

    python -m benchmarks.ha [--jobs 3000] [--reps 3] [--replica-latency-ms 0,1]

Prints a Markdown table (median of the repetitions). Only the servers it starts are used.
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
from pathlib import Path
from typing import Callable

import redis

from taskfire import Taskfire
from taskfire.embedded import free_port

from . import jobs

ROOT = Path(__file__).resolve().parent.parent
BULK = 100  # jobs per enqueue_many call


class Pair:
    """A primary, and a replica following it directly or through a delaying proxy."""

    def __init__(self, home: Path, latency_ms: float) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.primary = self._server(home / "primary", [])
        upstream = self.primary
        if latency_ms:
            proxy = subprocess.Popen([sys.executable, "-m", "benchmarks.proxy", "--target-port", str(self.primary),
                                      "--latency-ms", str(latency_ms), "--parent-pid", str(os.getpid())],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
            self.processes.append(proxy)  # type: ignore[arg-type]
            upstream = int(proxy.stdout.readline().split()[1])  # type: ignore[union-attr]
        self.replica = self._server(home / "replica", [f"replicaof 127.0.0.1 {upstream}"])
        replica = redis.Redis(port=self.replica)
        wait_until(lambda: replica.info("replication")["master_link_status"] == "up", "the replica to sync")
        self.url = f"redis://127.0.0.1:{self.primary}/0"
        self.link_rtt_ms = _ping_ms(upstream)  # what a round trip on the replica's link really takes

    def _server(self, home: Path, lines: list[str]) -> int:
        home.mkdir(parents=True)
        port = free_port()
        (home / "redis.conf").write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", f'dir "{home}"', 'logfile "log"', 'save ""', "appendonly yes",
            "appendfsync everysec", "repl-diskless-sync-delay 0", "maxmemory-policy noeviction", *lines]) + "\n")
        self.processes.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "redis.conf"],
                                               cwd=home, stdout=subprocess.DEVNULL, start_new_session=True))
        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), f"redis-server on port {port}")
        return port

    def stop(self) -> None:
        for p in self.processes:
            p.send_signal(signal.SIGTERM)
            p.wait(20)


def _ping_ms(port: int, n: int = 200) -> float:
    """Median PING round trip to `port`, in milliseconds."""
    client = redis.Redis(port=port)
    client.ping()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        times.append((time.perf_counter() - started) * 1000)
    client.close()
    return statistics.median(times)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def rate(url: str, wait_replicas: int, n: int, bulk: bool, rep: int) -> float:
    """Jobs enqueued per second by one client, one job or BULK jobs per call."""
    tf = Taskfire(url, prefix=f"b-ha-{wait_replicas}-{int(bulk)}-{rep}:", wait_replicas=wait_replicas,
                  wait_timeout_ms=5000)
    tf.enqueue(jobs.incr)  # connected, scripts loaded
    started = time.perf_counter()
    if bulk:
        for _ in range(n // BULK):
            tf.enqueue_many(jobs.incr, [() for _ in range(BULK)])
    else:
        for _ in range(n):
            tf.enqueue(jobs.incr)
    elapsed = time.perf_counter() - started
    tf.close()
    return (n // BULK * BULK if bulk else n) / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=3000, help="jobs per measurement (default 3000)")
    p.add_argument("--reps", type=int, default=3, help="repetitions; the median is shown (default 3)")
    p.add_argument("--replica-latency-ms", default="0,1",
                   help="delays each way on the replica's link, comma-separated (default 0,1); the proxy's "
                        "own overhead adds to them, so the table shows the round trip it measured")
    args = p.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("needs Debian's redis-server on PATH (apt-get install redis-server)")
    rows = []
    for latency in (float(v) for v in args.replica_latency_ms.split(",")):
        pair = Pair(Path(tempfile.mkdtemp(prefix="taskfire-bench-ha-")), latency)
        try:
            for bulk in (False, True):
                # interleaved, so that a slow moment of the machine does not land on one column
                figures: dict[int, list[float]] = {0: [], 1: []}
                for rep in range(args.reps):
                    for wait in (0, 1):
                        figures[wait].append(rate(pair.url, wait, args.jobs, bulk, rep))
                plain, waiting = (statistics.median(figures[w]) for w in (0, 1))
                per_call = (1 / waiting - 1 / plain) * (BULK if bulk else 1) * 1e6
                rows.append((f"{latency:g} ms" if latency else "direct", f"{pair.link_rtt_ms:.2f} ms",
                             f"enqueue_many, {BULK} per call" if bulk else "enqueue, one job per call",
                             f"{plain:,.0f}", f"{waiting:,.0f}", f"{waiting / plain:.0%}", f"{per_call:,.0f} µs"))
        finally:
            pair.stop()
    print(f"taskfire enqueue with and without wait_replicas=1: redis-server primary + 1 replica on loopback, "
          f"{args.jobs:,} jobs, median of {args.reps}\n")
    print("| replica link delay (each way) | link round trip (PING) | call | no wait (jobs/s) "
          "| wait_replicas=1 (jobs/s) | kept | WAIT cost per call |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
