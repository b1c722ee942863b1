"""One adapter per library for `benchmarks.compare`: how the harness enqueues and schedules
its jobs, and how its real worker CLI is started with two processes.

An adapter is opened on one Redis URL (direct, or through the latency / counting proxy,
with the library's own logical db) for one workload run, then closed: the harness flushes
the server between runs, and some clients (Celery's kombu) remember what they declared.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

PY = sys.executable
JOBS = "benchmarks.peer_jobs"

#: kinds of bulk job the harness enqueues: INCR, or INCR then sleep 1 ms
KINDS = ("incr", "incr_sleep")


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Peer:
    name = ""
    #: how the bulk workload enqueues; None: the library has no bulk API and none is run
    bulk: str | None = None
    #: the worker setup, for the report
    workers_note = ""
    #: key prefix of the counters its jobs write
    prefix = ""
    #: most jobs a processing run uses (None: --jobs)
    process_cap: int | None = None
    cost_cap: int = 2000

    def __init__(self, url: str) -> None:
        self.url = url

    def close(self) -> None:
        pass

    def enqueue_each(self, kind: str, count: int) -> None:
        """Enqueues `count` jobs, one call per job."""
        raise NotImplementedError

    def enqueue_bulk(self, kind: str, count: int) -> None:
        raise NotImplementedError(f"{self.name}: no bulk API")

    def enqueue_fill(self, kind: str, count: int) -> None:
        """Enqueues `count` jobs the fastest way the library offers."""
        if self.bulk:
            self.enqueue_bulk(kind, count)
        else:
            self.enqueue_each(kind, count)

    def enqueue_stamp(self) -> None:
        """One job that records time.time() minus the enqueue timestamp it is given."""
        raise NotImplementedError

    def schedule_late(self, due: float) -> None:
        """One job due at epoch `due` that records how late it started."""
        raise NotImplementedError

    def worker_commands(self) -> list[list[str]]:
        """argv of each worker command to start (together they run 2 processes)."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_REDIS_URL": self.url}


# -- taskfire -----------------------------------------------------------------------

class TaskfirePeer(Peer):
    name = "taskfire"
    bulk = "enqueue_many, 1000 per call"
    workers_note = "taskfire worker --processes 2 --threads 8"
    prefix = "bench-tf:"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from taskfire import Taskfire

        from .peer_jobs import taskfire_jobs
        self.jobs = taskfire_jobs
        self.tf = Taskfire(url, prefix=self.prefix)

    def close(self) -> None:
        self.tf.close()

    def enqueue_each(self, kind: str, count: int) -> None:
        fn, enqueue = getattr(self.jobs, kind), self.tf.enqueue
        for _ in range(count):
            enqueue(fn)

    def enqueue_bulk(self, kind: str, count: int) -> None:
        fn = getattr(self.jobs, kind)
        for start in range(0, count, 1000):
            self.tf.enqueue_many(fn, [() for _ in range(min(1000, count - start))])

    def enqueue_stamp(self) -> None:
        self.tf.enqueue(self.jobs.stamp, time.time())

    def schedule_late(self, due: float) -> None:
        self.tf.schedule(self.jobs.late, due - time.time(), due)

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "taskfire", "worker", f"{JOBS}.taskfire_jobs", "--processes", "2", "--threads", "8"]]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "TASKFIRE_REDIS_URL": self.url, "TASKFIRE_PREFIX": self.prefix,
                "TASKFIRE_LOG_LEVEL": "INFO"}  # start and stop lines only


# -- RQ -----------------------------------------------------------------------------

class RQPeer(Peer):
    name = "rq"
    bulk = "Queue.enqueue_many + pipeline, 1000 per call"
    workers_note = "2 x rq worker (forks a work horse per job), --with-scheduler"
    process_cap = 1000
    cost_cap = 500

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from redis import Redis
        from rq import Queue

        from .peer_jobs import rq_jobs
        self.jobs = rq_jobs
        self.Queue = Queue
        self.conn = Redis.from_url(url)
        self.queue = Queue("default", connection=self.conn)

    def close(self) -> None:
        self.conn.close()

    def enqueue_each(self, kind: str, count: int) -> None:
        fn, enqueue = getattr(self.jobs, kind), self.queue.enqueue
        for _ in range(count):
            enqueue(fn)

    def enqueue_bulk(self, kind: str, count: int) -> None:
        fn = getattr(self.jobs, kind)
        for start in range(0, count, 1000):
            with self.conn.pipeline() as pipe:
                self.queue.enqueue_many([self.Queue.prepare_data(fn) for _ in range(min(1000, count - start))],
                                        pipeline=pipe)
                pipe.execute()

    def enqueue_stamp(self) -> None:
        self.queue.enqueue(self.jobs.stamp, time.time())

    def schedule_late(self, due: float) -> None:
        self.queue.enqueue_at(utc(due), self.jobs.late, due)

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "rq.cli", "worker", "--url", self.url, "--quiet", "--with-scheduler",
                 "--name", f"bench-{i}-{time.monotonic_ns()}", "default"] for i in range(2)]


# -- Dramatiq -----------------------------------------------------------------------

class DramatiqPeer(Peer):
    name = "dramatiq"
    bulk = "pipelined actor.send() (no bulk API: the broker's scripts bound to a pipeline), 1000 per round trip"
    workers_note = "dramatiq --processes 2 --threads 8 (its default threads)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from .peer_jobs import dramatiq_jobs
        self.broker, self.actors = dramatiq_jobs.make(url)

    def close(self) -> None:
        self.broker.close()

    def enqueue_each(self, kind: str, count: int) -> None:
        send = self.actors[kind].send
        for _ in range(count):
            send()

    def enqueue_bulk(self, kind: str, count: int) -> None:
        broker, send = self.broker, self.actors[kind].send
        broker._max_unpack_size()  # cached once per class; asked of Redis, not the pipeline
        scripts = broker.scripts
        try:
            for start in range(0, count, 1000):
                pipe = broker.client.pipeline(transaction=False)
                broker.scripts = {k: pipe.register_script(s.script) for k, s in scripts.items()}
                for _ in range(min(1000, count - start)):
                    send()
                pipe.execute()
        finally:
            broker.scripts = scripts

    def enqueue_stamp(self) -> None:
        self.actors["stamp"].send(time.time())

    def schedule_late(self, due: float) -> None:
        self.actors["late"].send_with_options(args=(due,), delay=max(0, int((due - time.time()) * 1000)))

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "dramatiq", f"{JOBS}.dramatiq_jobs", "--processes", "2", "--threads", "8"]]


# -- Celery -------------------------------------------------------------------------

class CeleryPeer(Peer):
    name = "celery"
    workers_note = "2 x celery worker -P threads -c 8 --without-mingle --without-gossip (no result backend)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from .peer_jobs import celery_jobs
        self.app = celery_jobs.make(url)
        self.tasks = {k: self.app.tasks[f"bench.{k}"] for k in ("incr", "incr_sleep", "stamp", "late")}

    def close(self) -> None:
        self.app.close()

    def enqueue_each(self, kind: str, count: int) -> None:
        delay = self.tasks[kind].delay
        for _ in range(count):
            delay()

    def enqueue_stamp(self) -> None:
        self.tasks["stamp"].delay(time.time())

    def schedule_late(self, due: float) -> None:
        self.tasks["late"].apply_async(args=(due,), eta=utc(due))

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "celery", "-A", f"{JOBS}.celery_jobs", "worker", "-P", "threads", "-c", "8",
                 "--without-mingle", "--without-gossip", "-l", "WARNING", "-n", f"bench{i}@%h"]
                for i in range(2)]


# -- Huey ---------------------------------------------------------------------------

class HueyPeer(Peer):
    name = "huey"
    bulk = "pipelined LPUSH of huey.serialize_task(task.s()) (no bulk API), 1000 per round trip"
    workers_note = "2 x huey_consumer -k thread -w 8 (blocking BRPOP storage, its default)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from .peer_jobs import huey_jobs
        self.huey, self.tasks = huey_jobs.make(url)

    def close(self) -> None:
        self.huey.storage.pool.disconnect()

    def enqueue_each(self, kind: str, count: int) -> None:
        task = self.tasks[kind]
        for _ in range(count):
            task()

    def enqueue_bulk(self, kind: str, count: int) -> None:
        task, storage = self.tasks[kind], self.huey.storage
        for start in range(0, count, 1000):
            pipe = storage.conn.pipeline(transaction=False)
            for _ in range(min(1000, count - start)):
                pipe.lpush(storage.queue_key, self.huey.serialize_task(task.s()))
            pipe.execute()

    def enqueue_stamp(self) -> None:
        self.tasks["stamp"](time.time())

    def schedule_late(self, due: float) -> None:
        self.tasks["late"].schedule(args=(due,), delay=max(0.0, due - time.time()))

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "huey.bin.huey_consumer", f"{JOBS}.huey_jobs.huey", "-k", "thread", "-w", "8", "-q"]
                for _ in range(2)]


# -- async peers --------------------------------------------------------------------

class AsyncPeer(Peer):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.run(self.aclose())
        finally:
            self.loop.close()

    async def aclose(self) -> None:
        pass


class ArqPeer(AsyncPeer):
    name = "arq"
    workers_note = ("2 x arq WorkerSettings (its defaults: max_jobs 10, poll_delay 0.5 s, at most 100 "
                    "job ids read per poll)")
    process_cap = 2000  # its workers sleep poll_delay between polls: ~250 jobs/s for two
    cost_cap = 1000

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from arq import create_pool
        from arq.connections import RedisSettings
        self.pool = self.run(create_pool(RedisSettings.from_dsn(url)))

    async def aclose(self) -> None:
        await self.pool.aclose()

    def enqueue_each(self, kind: str, count: int) -> None:
        async def go() -> None:
            for _ in range(count):
                await self.pool.enqueue_job(kind)
        self.run(go())

    def enqueue_stamp(self) -> None:
        self.run(self.pool.enqueue_job("stamp", time.time()))

    def schedule_late(self, due: float) -> None:
        self.run(self.pool.enqueue_job("late", due, _defer_until=utc(due)))

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "arq", f"{JOBS}.arq_jobs.WorkerSettings"] for _ in range(2)]


class SaqPeer(AsyncPeer):
    name = "saq"
    workers_note = "saq --workers 2 (its default concurrency 10)"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        from saq import Queue
        self.queue = Queue.from_url(url)
        self.run(self.queue.connect())

    async def aclose(self) -> None:
        await self.queue.disconnect()

    def enqueue_each(self, kind: str, count: int) -> None:
        async def go() -> None:
            for _ in range(count):
                await self.queue.enqueue(kind)
        self.run(go())

    def enqueue_stamp(self) -> None:
        self.run(self.queue.enqueue("stamp", sent=time.time()))

    def schedule_late(self, due: float) -> None:
        self.run(self.queue.enqueue("late", due=due, scheduled=due))

    def worker_commands(self) -> list[list[str]]:
        return [[PY, "-m", "saq", f"{JOBS}.saq_jobs.settings", "--workers", "2", "--quiet"]]


PEERS: dict[str, type[Peer]] = {p.name: p for p in (
    TaskfirePeer, RQPeer, DramatiqPeer, CeleryPeer, ArqPeer, HueyPeer, SaqPeer)}
