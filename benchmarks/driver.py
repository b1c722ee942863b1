"""The enqueue side of the second environment's libraries (taskiq, BullMQ, streaq), driven
by `benchmarks.compare` over a line protocol, so that the harness never imports them:

    .venv-bench2/bin/python -m benchmarks.driver LIBRARY REDIS_URL

It connects, prints `ready`, then reads one command a line on stdin and answers each with
`ok` (or `error <what went wrong>`) on stdout once it is done:

    each KIND COUNT     COUNT jobs of KIND (incr, incr_sleep), one enqueue call each
    bulk KIND COUNT     the library's bulk form, 1000 jobs per call
    stamp               one job recording how late it starts (idle pickup latency)
    late DUE            one job due at epoch DUE recording how late it starts
    close               disconnect and exit (also on end of input)

The harness times the enqueues around the command, so a round trip of the pipe (tens of
µs) is counted once per command, not per job. Everything runs in one asyncio task: the
libraries' clients (anyio task groups for streaq) are opened and closed in the same task.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TextIO

BATCH = 1000


class Adapter:
    """One library's enqueue calls, on one Redis URL."""

    async def open(self, stack: AsyncExitStack) -> None:
        pass

    async def each(self, kind: str, count: int) -> None:
        raise NotImplementedError

    async def bulk(self, kind: str, count: int) -> None:
        raise NotImplementedError("no bulk API")

    async def stamp(self) -> None:
        raise NotImplementedError

    async def late(self, due: float) -> None:
        raise NotImplementedError("no delayed jobs")


class TaskiqAdapter(Adapter):
    def __init__(self, url: str) -> None:
        from .peer_jobs import taskiq_jobs
        self.broker, self.tasks = taskiq_jobs.make(url)

    async def open(self, stack: AsyncExitStack) -> None:
        await self.broker.startup()  # declares the consumer group (at "$": the stream is empty)
        stack.push_async_callback(self.broker.shutdown)

    async def each(self, kind: str, count: int) -> None:
        kiq = self.tasks[kind].kiq
        for _ in range(count):
            await kiq()

    async def stamp(self) -> None:
        await self.tasks["stamp"].kiq(time.time())


class BullmqAdapter(Adapter):
    def __init__(self, url: str) -> None:
        from bullmq import Queue

        from .peer_jobs.bullmq_jobs import QUEUE
        self.queue = Queue(QUEUE, {"connection": url})

    async def open(self, stack: AsyncExitStack) -> None:
        stack.push_async_callback(self.queue.close)

    async def each(self, kind: str, count: int) -> None:
        add = self.queue.add
        for _ in range(count):
            await add(kind, {})

    async def bulk(self, kind: str, count: int) -> None:
        for start in range(0, count, BATCH):
            await self.queue.addBulk([{"name": kind, "data": {}} for _ in range(min(BATCH, count - start))])

    async def stamp(self) -> None:
        await self.queue.add("stamp", {"sent": time.time()})

    async def late(self, due: float) -> None:
        await self.queue.add("late", {"due": due}, {"delay": max(0, round((due - time.time()) * 1000))})


class StreaqAdapter(Adapter):
    def __init__(self, url: str) -> None:
        from .peer_jobs import streaq_jobs
        self.worker, self.tasks = streaq_jobs.make(url)

    async def open(self, stack: AsyncExitStack) -> None:
        await stack.enter_async_context(self.worker)  # connects and loads its Lua library

    async def each(self, kind: str, count: int) -> None:
        task = self.tasks[kind]
        for _ in range(count):
            await task.enqueue()

    async def bulk(self, kind: str, count: int) -> None:
        task = self.tasks[kind]
        for start in range(0, count, BATCH):
            await self.worker.enqueue_many([task.enqueue() for _ in range(min(BATCH, count - start))])

    async def stamp(self) -> None:
        await self.tasks["stamp"].enqueue(time.time())

    async def late(self, due: float) -> None:
        await self.tasks["late"].enqueue(due).start(schedule=datetime.fromtimestamp(due, UTC))


class TaskfireAdapter(Adapter):
    """taskfire at another commit (benchmarks.baseline): whichever taskfire this process
    imports, through the API every version has."""

    def __init__(self, url: str) -> None:
        from taskfire import Taskfire

        from .peer_jobs import taskfire_jobs
        self.jobs = taskfire_jobs
        self.tf = Taskfire(url, prefix="bench-tf:")

    async def each(self, kind: str, count: int) -> None:
        fn, enqueue = getattr(self.jobs, kind), self.tf.enqueue
        for _ in range(count):
            enqueue(fn)

    async def bulk(self, kind: str, count: int) -> None:
        fn = getattr(self.jobs, kind)
        for start in range(0, count, BATCH):
            self.tf.enqueue_many(fn, [() for _ in range(min(BATCH, count - start))])

    async def stamp(self) -> None:
        self.tf.enqueue(self.jobs.stamp, time.time())

    async def late(self, due: float) -> None:
        self.tf.schedule(self.jobs.late, due - time.time(), due)


ADAPTERS: dict[str, type[Adapter]] = {"taskiq": TaskiqAdapter, "bullmq": BullmqAdapter, "streaq": StreaqAdapter,
                                      "taskfire": TaskfireAdapter}


async def perform(adapter: Adapter, words: list[str]) -> None:
    match words:
        case ["each", kind, count]:
            await adapter.each(kind, int(count))
        case ["bulk", kind, count]:
            await adapter.bulk(kind, int(count))
        case ["stamp"]:
            await adapter.stamp()
        case ["late", due]:
            await adapter.late(float(due))
        case _:
            raise ValueError(f"unknown command {' '.join(words)!r}")


async def serve(lib: str, url: str, out: TextIO) -> None:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    adapter = ADAPTERS[lib](url)
    async with AsyncExitStack() as stack:
        await adapter.open(stack)
        say("ready")
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            words = line.split()
            if not words or words == ["close"]:
                break
            try:
                await perform(adapter, words)
            except Exception as exc:  # noqa: BLE001 -- reported to the harness, which records the failure
                say(f"error {type(exc).__name__}: {exc}".replace("\n", " "))
            else:
                say("ok")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ADAPTERS:
        raise SystemExit(f"usage: python -m benchmarks.driver {{{','.join(ADAPTERS)}}} REDIS_URL")
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever a library prints must not reach the protocol
    asyncio.run(serve(sys.argv[1], sys.argv[2], out))


if __name__ == "__main__":
    main()
