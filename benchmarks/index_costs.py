"""Redis commands per job on each path a job takes, as the server counts them (INFO
commandstats counts the commands a script runs, and the FCALL itself): what the
dashboard's retry and failure indexes add to each path, and that a job that succeeds
pays nothing for them.

    python -m benchmarks.index_costs [--jobs 2000] [--server redis|valkey]

Each path runs the way a worker runs it: outcomes stored by `Storage.finish` (a group
of outcomes and the next fetch in one call), jobs taken by `Storage.fetch`, due retries
moved by a fetch's timekeeping. To compare with another version, run the same command
with that version's checkout first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from typing import Callable

from taskfire import Failed, Scheduled, Succeeded, Taskfire
from taskfire.client import transition_for
from taskfire.embedded import EmbeddedServer
from taskfire.states import PROCESSING
from taskfire.storage import FetchRequest

from . import jobs

GROUP = 20  # outcomes one finish call stores, as a busy worker's group commit does


def commands(tf: Taskfire) -> int:
    stats = tf.storage.redis.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())  # type: ignore[union-attr]


def measured(tf: Taskfire, n: int, step: Callable[[], None]) -> float:
    """Commands per job of `step` over n jobs (the INFO call itself taken out)."""
    before = commands(tf)
    step()
    return (commands(tf) - before - 1) / n


def request(n: int) -> FetchRequest:
    return FetchRequest(worker_id="bench:1/0", queues=["default"], max_jobs=n, lease_ms=60_000, recoveries_allowed=3)


def run_paths(tf: Taskfire, n: int) -> list[tuple[str, float]]:
    fails = Failed(reason="An exception occurred", exception_type="ValueError", exception_message="boom")
    rows: list[tuple[str, float]] = []

    def fetched() -> list:  # type: ignore[type-arg]
        ids = tf.enqueue_many(jobs.incr, [() for _ in range(n)])
        running = []
        while len(running) < len(ids):
            running += tf.storage.fetch(request(100)).jobs
        return running

    def finish(running, state_for) -> None:  # type: ignore[no-untyped-def]
        for i in range(0, len(running), GROUP):
            group = running[i:i + GROUP]
            tf.storage.finish([transition_for(j.id, *state_for(j)) for j in group], request(0))

    def succeed(job):  # type: ignore[no-untyped-def]
        return Succeeded(duration_ms=1.0, latency_ms=1.0), (PROCESSING,)

    rows.append(("enqueue (enqueue_many)", measured(tf, n, lambda: tf.enqueue_many(jobs.incr, [() for _ in range(n)]))))
    for _ in range(2):  # the queue above: drain it out of the way
        while tf.storage.fetch(request(100)).jobs:
            pass
    running: list = []  # type: ignore[type-arg]
    ids = tf.enqueue_many(jobs.incr, [() for _ in range(n)])

    def take() -> None:
        while len(running) < len(ids):
            running.extend(tf.storage.fetch(request(100)).jobs)

    rows.append(("fetch (100 a call)", measured(tf, n, take)))
    rows.append(("succeed (finish, 20 a call)", measured(tf, n, lambda: finish(running, succeed))))
    running = fetched()
    rows.append(("fail for good (finish)", measured(tf, n, lambda: finish(running, lambda j: (fails, (PROCESSING,))))))
    failed_ids = [j.id for j in running]
    rows.append(("requeue a failed job (client)", measured(tf, n, lambda: [tf.requeue(i) for i in failed_ids])))
    for _ in range(2):
        while tf.storage.fetch(request(100)).jobs:
            pass
    running = fetched()
    retry = Scheduled(delay=1.0, reason="Retry attempt 1 of 3: boom")
    rows.append(("fail, retry scheduled (finish)", measured(tf, n, lambda: _finish_retries(tf, running, retry, fails))))
    time.sleep(1.1)  # the retries come due (none did while they were stored)

    def promote() -> None:
        while tf.storage.monitor.counts()["states"]["Scheduled"]:
            tf.storage.fetch(request(0))

    rows.append(("retry comes due, back in its queue (fetch's timekeeping)", measured(tf, n, promote)))
    return rows


def _finish_retries(tf: Taskfire, running, retry: Scheduled, failure: Failed) -> None:  # type: ignore[no-untyped-def]
    for i in range(0, len(running), GROUP):
        tf.storage.finish([transition_for(j.id, retry, (PROCESSING,), fields={"retries": "1"}, elected=[failure])
                           for j in running[i:i + GROUP]], request(0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--server", choices=("valkey", "redis"), default="redis")
    args = p.parse_args()
    data_dir = tempfile.mkdtemp(prefix="taskfire-index-costs-")
    server = EmbeddedServer(data_dir, binary=shutil.which("redis-server") if args.server == "redis" else None,
                            appendfsync="no")
    server.start()
    try:
        tf = Taskfire(server.url, prefix="costs:")
        tf.storage.load_scripts()
        rows = run_paths(tf, args.jobs)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    import taskfire
    print(f"\nRedis commands per job, {args.jobs:,} jobs a path, on {server.binary.name} "
          f"(taskfire from {taskfire.__file__.rsplit('/', 2)[0]})\n", file=sys.stderr)
    print("| path | commands per job |")
    print("|---|---:|")
    for name, per_job in rows:
        print(f"| {name} | {per_job:.2f} |")


if __name__ == "__main__":
    main()
