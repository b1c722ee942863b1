"""streaq's benchmark tasks. `make(url)` builds a Worker and its tasks (benchmarks.driver
calls it); at import the module does so for BENCH_REDIS_URL, which is what `streaq run
benchmarks.peer_jobs.streaq_jobs:worker --workers 2` runs. Second environment only (python
-m benchmarks.env2).

streaq's defaults: 16 tasks at once per process (BENCH_CONCURRENCY overrides it), results
kept 5 minutes, up to 3 tries. Tasks are `silent` (no log line per task), as the other
libraries' workers run without per-job logging. The INCR goes through the worker's own
coredis client (`worker.redis`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from streaq import Worker

from . import common
from .common import DONE, LATE, LATENCY, since

CONCURRENCY = 16


def make(url: str) -> tuple[Worker[Any], dict[str, Any]]:
    worker: Worker[Any] = Worker(redis_url=url, concurrency=common.concurrency(CONCURRENCY))

    async def incr() -> None:
        await worker.redis.incr(DONE)

    async def incr_sleep() -> None:
        await worker.redis.incr(DONE)
        await asyncio.sleep(0.001)

    async def stamp(sent: float) -> None:
        await worker.redis.rpush(LATENCY, [since(sent)])

    async def late(due: float) -> None:
        await worker.redis.rpush(LATE, [since(due)])

    tasks = {fn.__name__: worker.task(name=fn.__name__, silent=True)(fn) for fn in (incr, incr_sleep, stamp, late)}
    return worker, tasks


worker, tasks = make(common.url())
