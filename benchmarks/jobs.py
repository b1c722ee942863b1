"""Benchmark jobs: incr and stamp do the same one Redis command any peer's benchmark job does;
noop and sleep_1ms (benchmarks.scaling) none."""

import time

from taskfire import job
from taskfire.client import default_client


@job
def incr() -> None:
    client = default_client()
    client.storage.redis.incr(client.prefix + "bench:done")


@job
def noop() -> None:
    """Nothing at all: what is left is taskfire's own cost (benchmarks.scaling)."""


@job
def sleep_1ms() -> None:
    time.sleep(0.001)


@job
def stamp(sent: float) -> None:
    client = default_client()
    client.storage.redis.rpush(client.prefix + "bench:latency", repr(time.time() - sent))


@job(retries=0)
def fails() -> None:
    raise ValueError("a benchmark job that fails")
