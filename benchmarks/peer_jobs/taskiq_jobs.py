"""taskiq's benchmark tasks on taskiq-redis's RedisStreamBroker: messages go to a Redis
stream read by a consumer group, each acknowledged (XACK) after it ran, and one left
unacknowledged is reclaimed (XAUTOCLAIM) by another worker. `make(url)` builds the broker
and its tasks (benchmarks.driver calls it); at import the module does so for
BENCH_REDIS_URL, which is what `taskiq worker benchmarks.peer_jobs.taskiq_jobs:broker`
runs. Second environment only (python -m benchmarks.env2).

taskiq hands no Redis client to tasks, so the INCR goes through a client on the broker's
own connection pool (the one its XADD and XACK use), one per process. The tasks are
coroutines: the worker runs up to --max-async-tasks of them at once per process. No
`late` task: a delayed taskiq task needs a schedule source and a `taskiq scheduler`
process besides the workers, so the scheduled-job workload is not run for taskiq.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

from . import common
from .common import DONE, LATENCY, since


def make(url: str) -> tuple[RedisStreamBroker, dict[str, Any]]:
    broker = RedisStreamBroker(url)
    clients: list[Redis] = []

    def redis() -> Redis:
        if not clients:
            clients.append(Redis(connection_pool=broker.connection_pool))
        return clients[0]

    async def incr() -> None:
        await redis().incr(DONE)

    async def incr_sleep() -> None:
        await redis().incr(DONE)
        await asyncio.sleep(0.001)

    async def stamp(sent: float) -> None:
        await redis().rpush(LATENCY, since(sent))

    tasks = {fn.__name__: broker.task(task_name=fn.__name__)(fn) for fn in (incr, incr_sleep, stamp)}
    return broker, tasks


broker, tasks = make(common.url())
