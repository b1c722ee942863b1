"""SAQ's benchmark jobs (coroutines taking keyword arguments; the INCR goes through the
queue's own Redis client). `saq benchmarks.peer_jobs.saq_jobs.settings --workers 2` runs
them with SAQ's default concurrency (10 per process; BENCH_CONCURRENCY overrides it)."""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue

from . import common
from .common import DONE, LATE, LATENCY, since


def _redis(ctx: dict[str, Any]):
    return ctx["worker"].queue.redis


async def incr(ctx: dict[str, Any]) -> None:
    await _redis(ctx).incr(DONE)


async def incr_sleep(ctx: dict[str, Any]) -> None:
    await _redis(ctx).incr(DONE)
    await asyncio.sleep(0.001)


async def stamp(ctx: dict[str, Any], *, sent: float) -> None:
    await _redis(ctx).rpush(LATENCY, since(sent))


async def late(ctx: dict[str, Any], *, due: float) -> None:
    await _redis(ctx).rpush(LATE, since(due))


def settings() -> dict[str, Any]:
    """Called in each worker process: its own queue (and connection pool)."""
    return {"queue": Queue.from_url(common.url()), "functions": [incr, incr_sleep, stamp, late],
            "concurrency": common.concurrency(10)}
