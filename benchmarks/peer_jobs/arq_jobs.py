"""arq's benchmark jobs (coroutines; the INCR goes through the worker's own ArqRedis,
ctx["redis"]). `arq benchmarks.peer_jobs.arq_jobs.WorkerSettings` runs them, with arq's
defaults (max_jobs=10, poll_delay=0.5 s); BENCH_CONCURRENCY overrides max_jobs."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from arq.connections import RedisSettings

from . import common
from .common import DONE, LATE, LATENCY, since


async def incr(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(DONE)


async def incr_sleep(ctx: dict[str, Any]) -> None:
    await ctx["redis"].incr(DONE)
    await asyncio.sleep(0.001)


async def stamp(ctx: dict[str, Any], sent: float) -> None:
    await ctx["redis"].rpush(LATENCY, since(sent))


async def late(ctx: dict[str, Any], due: float) -> None:
    await ctx["redis"].rpush(LATE, since(due))


class WorkerSettings:
    functions: ClassVar[list[Any]] = [incr, incr_sleep, stamp, late]
    redis_settings = RedisSettings.from_dsn(common.url())
    max_jobs = common.concurrency(10)
