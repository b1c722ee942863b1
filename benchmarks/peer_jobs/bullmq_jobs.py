"""BullMQ for Python's benchmark jobs, and its worker: BullMQ has no worker CLI, so
`python -m benchmarks.peer_jobs.bullmq_jobs` runs one `bullmq.Worker` on the queue
"bench" until SIGTERM (the harness starts two of them). Second environment only (python -m
benchmarks.env2).

Each worker process takes `concurrency` jobs at once (8, as the thread-based peers run;
BullMQ's own default is 1; BENCH_CONCURRENCY overrides it). The processor is a coroutine
that dispatches on the job's name; BullMQ hands no Redis client to it, so the INCR goes
through a per-process redis-py asyncio client. Jobs keep BullMQ's defaults (completed and
failed jobs are kept, no retries).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from bullmq import Worker
from redis.asyncio import Redis

from . import common
from .common import DONE, LATE, LATENCY, since

QUEUE = "bench"
CONCURRENCY = 8

_clients: list[Redis] = []


def _redis() -> Redis:
    if not _clients:
        _clients.append(Redis.from_url(common.url()))
    return _clients[0]


async def process(job: Any, token: str) -> None:
    if job.name == "incr":
        await _redis().incr(DONE)
    elif job.name == "incr_sleep":
        await _redis().incr(DONE)
        await asyncio.sleep(0.001)
    elif job.name == "stamp":
        await _redis().rpush(LATENCY, since(job.data["sent"]))
    elif job.name == "late":
        await _redis().rpush(LATE, since(job.data["due"]))
    else:
        raise ValueError(f"no benchmark job named {job.name!r}")


async def run() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(QUEUE, process, {"connection": common.url(), "concurrency": common.concurrency(CONCURRENCY)})
    await stop.wait()
    # The harness stops workers once their jobs are done: nothing is in flight but the wait
    # for the next job, a blocking BZPOPMIN that a graceful close() lets run out (up to its
    # 5 s drainDelay, and redis-py 8 does not cancel a blocking command), which can outlast
    # the harness's 10 s grace. force closes the connections instead.
    await worker.close(force=True)
    for client in _clients:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(run())
