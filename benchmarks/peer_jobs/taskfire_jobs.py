"""taskfire's benchmark jobs. The worker's own client (`default_client()`) does the INCR;
keys carry the client's prefix."""

import time

from taskfire import job
from taskfire.client import default_client

from .common import DONE, LATE, LATENCY, since


@job
def incr() -> None:
    c = default_client()
    c.storage.redis.incr(c.prefix + DONE)


@job
def incr_sleep() -> None:
    c = default_client()
    c.storage.redis.incr(c.prefix + DONE)
    time.sleep(0.001)


@job
def stamp(sent: float) -> None:
    c = default_client()
    c.storage.redis.rpush(c.prefix + LATENCY, since(sent))


@job
def late(due: float) -> None:
    c = default_client()
    c.storage.redis.rpush(c.prefix + LATE, since(due))
