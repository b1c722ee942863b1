"""Celery's benchmark tasks. `make(url)` builds an app with the tasks (the harness calls
it); at import the module builds `app` for BENCH_REDIS_URL, which is what
`celery -A benchmarks.peer_jobs.celery_jobs worker` runs. No result backend. Celery does
not hand its Redis connection to tasks, so the INCR uses a per-process redis-py client."""

from __future__ import annotations

import time

from celery import Celery  # type: ignore[import-untyped]

from . import common
from .common import DONE, LATE, LATENCY, since


def make(url: str) -> Celery:
    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False)

    @app.task(name="bench.incr", shared=False)
    def incr() -> None:
        common.client().incr(DONE)

    @app.task(name="bench.incr_sleep", shared=False)
    def incr_sleep() -> None:
        common.client().incr(DONE)
        time.sleep(0.001)

    @app.task(name="bench.stamp", shared=False)
    def stamp(sent: float) -> None:
        common.client().rpush(LATENCY, since(sent))

    @app.task(name="bench.late", shared=False)
    def late(due: float) -> None:
        common.client().rpush(LATE, since(due))

    return app


app = make(common.url())
