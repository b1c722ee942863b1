"""What the job modules share: key names and a per-process Redis client for the
libraries that do not hand a connection to their jobs."""

from __future__ import annotations

import os
import threading
import time

import redis

DONE = "bench:done"          # INCR once per job
LATENCY = "bench:latency"    # RPUSH seconds from enqueue to start (idle pickup)
LATE = "bench:late"          # RPUSH seconds from due time to start (scheduled jobs)

_lock = threading.Lock()
_clients: dict[int, redis.Redis] = {}


def url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def client() -> redis.Redis:
    """A Redis client of this process (created after any fork)."""
    pid = os.getpid()
    c = _clients.get(pid)
    if c is None:
        with _lock:
            c = _clients.get(pid)
            if c is None:
                c = _clients[pid] = redis.Redis.from_url(url())
    return c


def concurrency(default: int) -> int:
    """Jobs a worker process runs at once: BENCH_CONCURRENCY when the harness sets it (the
    16-thread workload), else the library's configuration for the other workloads."""
    return int(os.environ.get("BENCH_CONCURRENCY") or default)


def since(t: float) -> str:
    return repr(time.time() - t)
