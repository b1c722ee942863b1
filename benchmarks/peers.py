"""One adapter per library for `benchmarks.compare`: how the harness enqueues and schedules
its jobs, and how its real worker CLI is started with two processes.

An adapter is opened on one Redis URL (direct, or through the latency / counting proxy,
with the library's own logical db) for one workload run, then closed: the harness flushes
the server between runs, and some clients (Celery's kombu) remember what they declared.

taskiq, BullMQ and streaq live in the second environment (benchmarks/env2.py): their
adapters here import nothing of theirs; they talk to `benchmarks.driver`, a process of
that environment, and start their workers with its interpreter.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from . import baseline, env2

PY = sys.executable
JOBS = "benchmarks.peer_jobs"
ROOT = Path(__file__).resolve().parent.parent

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
    #: None: its workers take `concurrency` (threads or coroutines per process); else why
    #: they cannot and how they run instead
    no_concurrency: str | None = None
    #: None: it runs delayed jobs (workload 6); else why it is not run
    no_schedule: str | None = None
    #: None: its workers stop on SIGTERM; else why they are killed 3 s after it
    killed_on_stop: str | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the library cannot run here (None: it can)."""
        return None

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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        """argv of each worker command to start (together they run 2 processes), each
        process running `concurrency` jobs at once (None: as `workers_note` says). The
        harness also sets BENCH_CONCURRENCY, which the job modules of libraries configured
        in code read (benchmarks.peer_jobs.common.concurrency)."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_REDIS_URL": self.url}

    def worker_cwd(self) -> Path:
        """Where its workers run (the first place Python imports from)."""
        return ROOT


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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "taskfire", "worker", f"{JOBS}.taskfire_jobs", "--processes", "2",
                 "--threads", str(concurrency or 8)]]

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
    no_concurrency = "no threads: each of its 2 workers runs one job at a time in a forked work horse"

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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "dramatiq", f"{JOBS}.dramatiq_jobs", "--processes", "2", "--threads", str(concurrency or 8)]]


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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "celery", "-A", f"{JOBS}.celery_jobs", "worker", "-P", "threads", "-c", str(concurrency or 8),
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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "huey.bin.huey_consumer", f"{JOBS}.huey_jobs.huey", "-k", "thread", "-w", str(concurrency or 8),
                 "-q"]
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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "arq", f"{JOBS}.arq_jobs.WorkerSettings"] for _ in range(2)]  # max_jobs: BENCH_CONCURRENCY


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

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY, "-m", "saq", f"{JOBS}.saq_jobs.settings", "--workers", "2", "--quiet"]]  # BENCH_CONCURRENCY


# -- the second environment's peers ----------------------------------------------

class DriverPeer(Peer):
    """A library of the second environment: its enqueue calls are made by a
    `benchmarks.driver` process of that environment, one command line each."""

    #: seconds the driver gets to answer one command
    REPLY_TIMEOUT = 900.0
    #: the driver's adapter for it (default: its name)
    adapter = ""

    def driver_python(self) -> str:
        return str(env2.python())

    def driver_env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")

    @classmethod
    def unavailable(cls) -> str | None:
        return env2.missing(cls.name)

    def __init__(self, url: str) -> None:
        super().__init__(url)
        reason = self.unavailable()
        if reason:
            raise RuntimeError(reason)
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed by close()
        self.process = subprocess.Popen([self.driver_python(), "-m", "benchmarks.driver", self.adapter or self.name, url],
                                        cwd=self.worker_cwd(), env=self.driver_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, start_new_session=True)
        self.replies: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True).start()
        try:
            self._expect("ready")
        except BaseException:
            self._kill()
            raise

    def _read_replies(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.replies.put(line.strip())
        self.replies.put("")  # end of output: the driver exited

    def _expect(self, word: str) -> None:
        try:
            reply = self.replies.get(timeout=self.REPLY_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"{self.name} driver: no answer in {self.REPLY_TIMEOUT:.0f} s") from None
        if reply != word:
            raise RuntimeError(f"{self.name} driver: {reply or 'exited: ' + self._stderr_tail()}")

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) or "(no output)"

    def call(self, *words: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        self._expect("ok")

    def close(self) -> None:
        try:
            if self.process.poll() is None and self.process.stdin is not None:
                self.process.stdin.write("close\n")
                self.process.stdin.flush()
                self.process.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            self._kill()

    def _kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.stderr.close()

    def enqueue_each(self, kind: str, count: int) -> None:
        self.call("each", kind, count)

    def enqueue_bulk(self, kind: str, count: int) -> None:
        self.call("bulk", kind, count)

    def enqueue_stamp(self) -> None:
        self.call("stamp")

    def schedule_late(self, due: float) -> None:
        self.call("late", repr(due))

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "PYTHONPATH": str(ROOT)}  # none of the main environment's paths


PY2 = str(env2.python())


class TaskiqPeer(DriverPeer):
    name = "taskiq"
    workers_note = ("taskiq worker --workers 2 with taskiq-redis's RedisStreamBroker (consumer group, XACK after "
                    "the task ran, its defaults: 100 messages per XREADGROUP, --max-async-tasks 100, ack when saved), "
                    "--log-level WARNING")
    no_schedule = "a delayed taskiq task needs a schedule source and a `taskiq scheduler` process besides the workers"
    killed_on_stop = ("its idle workers ignore SIGTERM, for redis-py 8 swallows the cancellation of their "
                      "blocking XREADGROUP and taskiq's receiver waits for that read forever")

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY2, "-m", "taskiq", "worker", f"{JOBS}.taskiq_jobs:broker", "--workers", "2",
                 "--log-level", "WARNING", *(["--max-async-tasks", str(concurrency)] if concurrency else [])]]


class BullmqPeer(DriverPeer):
    name = "bullmq"
    bulk = "Queue.addBulk, 1000 per call"
    workers_note = ("2 x python -m benchmarks.peer_jobs.bullmq_jobs (no worker CLI: one bullmq.Worker each, "
                    "concurrency 8; its default is 1)")

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY2, "-m", f"{JOBS}.bullmq_jobs"] for _ in range(2)]  # concurrency: BENCH_CONCURRENCY


class StreaqPeer(DriverPeer):
    name = "streaq"
    bulk = "Worker.enqueue_many (one pipeline), 1000 per call"
    workers_note = "streaq run --workers 2 (its default concurrency 16, tasks `silent`: no log line per task)"

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return [[PY2, "-m", "streaq", "run", f"{JOBS}.streaq_jobs:worker", "--workers", "2"]]  # BENCH_CONCURRENCY


class TaskfireBasePeer(DriverPeer):
    """taskfire at the commit `--baseline REF` names (benchmarks.baseline), beside today's:
    the same jobs, workers and settings, the old package first on their path."""

    name = "taskfire-base"
    adapter = "taskfire"
    bulk = TaskfirePeer.bulk
    workers_note = "as taskfire's, at the --baseline commit"
    prefix = TaskfirePeer.prefix
    #: the exported tree (set by benchmarks.compare from --baseline)
    tree: Path | None = None

    @classmethod
    def unavailable(cls) -> str | None:
        return None if cls.tree else "run benchmarks.compare with --baseline REF (a git commit) to compare with it"

    def driver_python(self) -> str:
        return PY

    def driver_env(self) -> dict[str, str]:
        assert self.tree is not None
        return baseline.environment(self.tree)

    def worker_cwd(self) -> Path:
        assert self.tree is not None
        return self.tree

    def worker_commands(self, concurrency: int | None = None) -> list[list[str]]:
        return TaskfirePeer.worker_commands(self, concurrency)  # type: ignore[arg-type]

    def worker_env(self) -> dict[str, str]:
        assert self.tree is not None
        return {"BENCH_REDIS_URL": self.url, "TASKFIRE_REDIS_URL": self.url, "TASKFIRE_PREFIX": self.prefix,
                "TASKFIRE_LOG_LEVEL": "INFO", "PYTHONPATH": baseline.environment(self.tree)["PYTHONPATH"]}


PEERS: dict[str, type[Peer]] = {p.name: p for p in (
    TaskfirePeer, RQPeer, DramatiqPeer, CeleryPeer, ArqPeer, HueyPeer, SaqPeer, TaskiqPeer, BullmqPeer, StreaqPeer,
    TaskfireBasePeer)}
