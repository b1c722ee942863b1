"""Huey's benchmark tasks. `make(url)` builds a RedisHuey and its tasks (the harness calls
it); at import the module builds `huey` for BENCH_REDIS_URL, which is what
`huey_consumer benchmarks.peer_jobs.huey_jobs.huey` runs. The INCR goes through the
storage's own Redis client."""

from __future__ import annotations

import time
from typing import Any

from huey import RedisHuey  # type: ignore[import-untyped]

from . import common
from .common import DONE, LATE, LATENCY, since


def make(url: str) -> tuple[RedisHuey, dict[str, Any]]:
    huey = RedisHuey("bench", url=url)

    def incr() -> None:
        huey.storage.conn.incr(DONE)

    def incr_sleep() -> None:
        huey.storage.conn.incr(DONE)
        time.sleep(0.001)

    def stamp(sent: float) -> None:
        huey.storage.conn.rpush(LATENCY, since(sent))

    def late(due: float) -> None:
        huey.storage.conn.rpush(LATE, since(due))

    tasks = {fn.__name__: huey.task()(fn) for fn in (incr, incr_sleep, stamp, late)}
    return huey, tasks


huey, tasks = make(common.url())
