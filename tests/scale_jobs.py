"""Jobs for the many-hosts, metrics and log tests (`taskfire worker tests.scale_jobs`). They
leave their traces in Redis under the test's prefix, like tests/jobs.py."""

from __future__ import annotations

import logging
import threading
import time

from taskfire import current_job, job
from taskfire.client import default_client
from taskfire.context import JobContext

log = logging.getLogger("tests.scale_jobs")


def _redis():
    return default_client().storage.redis


def key(prefix: str, name: str) -> str:
    return prefix + "test:" + name


def _key(name: str) -> str:
    return key(default_client().prefix, name)


def _context() -> JobContext:
    ctx = current_job()
    assert ctx is not None, "called outside a job"
    return ctx


def _host() -> str:
    """The worker's server name (`--name`): the host, in the many-hosts tests."""
    return _context().worker_id.split(":")[0]


@job(retries=0)
def host_run(n: int, pause: float) -> int:
    """Counts each start of the job and notes the host of each; returns n * 2."""
    ctx = _context()
    pipe = _redis().pipeline(transaction=False)
    pipe.hincrby(_key("runs"), ctx.id, 1)
    pipe.rpush(_key("hosts:" + ctx.id), _host())
    pipe.execute()
    # Not time.sleep: under libfaketime with DONT_FAKE_MONOTONIC (the skewed host) its
    # clock_nanosleep fails with EINVAL.
    threading.Event().wait(pause)
    return n * 2


@job(retries=0)
def clocks() -> dict:
    """The host's wall clock and the Redis server's, read together."""
    seconds, micros = _redis().time()
    return {"host": _host(), "wall_ms": int(time.time() * 1000), "server_ms": seconds * 1000 + micros // 1000}


@job(retries=0)
def server_time_at_start() -> dict:
    """When the job started by the Redis server's clock (not the host's)."""
    seconds, micros = _redis().time()
    return {"host": _host(), "started_ms": seconds * 1000 + micros // 1000}


@job
def nap(seconds: float) -> None:
    time.sleep(seconds)


@job(retries=1, retry_delays=[0.1])
def fails_once() -> str:
    if _context().attempt == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt"


@job
def logs_a_line(text: str) -> None:
    log.info("the job says %s", text)
