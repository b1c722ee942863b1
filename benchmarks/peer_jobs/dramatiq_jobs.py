"""Dramatiq's benchmark actors. `make(url)` builds a RedisBroker and its actors (the
harness calls it); at import, the module does so for BENCH_REDIS_URL and makes that
broker the global one, which is what `dramatiq benchmarks.peer_jobs.dramatiq_jobs` runs.
The INCR goes through the broker's own Redis client."""

from __future__ import annotations

import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from . import common
from .common import DONE, LATE, LATENCY, since


def make(url: str) -> tuple[RedisBroker, dict[str, dramatiq.Actor]]:
    broker = RedisBroker(url=url)

    def incr() -> None:
        broker.client.incr(DONE)

    def incr_sleep() -> None:
        broker.client.incr(DONE)
        time.sleep(0.001)

    def stamp(sent: float) -> None:
        broker.client.rpush(LATENCY, since(sent))

    def late(due: float) -> None:
        broker.client.rpush(LATE, since(due))

    actors: dict[str, dramatiq.Actor] = {
        fn.__name__: dramatiq.actor(broker=broker, actor_name=fn.__name__, max_retries=0)(fn)
        for fn in (incr, incr_sleep, stamp, late)}
    return broker, actors


broker, actors = make(common.url())
dramatiq.set_broker(broker)
