"""Benchmark jobs: each does the same one Redis command any peer's benchmark job does."""

import time

from taskfire import job
from taskfire.client import default_client


@job
def incr() -> None:
    client = default_client()
    client.storage.redis.incr(client.prefix + "bench:done")


@job
def stamp(sent: float) -> None:
    client = default_client()
    client.storage.redis.rpush(client.prefix + "bench:latency", repr(time.time() - sent))


@job(retries=0)
def fails() -> None:
    raise ValueError("a benchmark job that fails")
