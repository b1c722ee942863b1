"""RQ's benchmark jobs: plain functions; the INCR goes through the job's own connection."""

import time

from rq import get_current_job

from .common import DONE, LATE, LATENCY, since


def _redis():
    return get_current_job().connection


def incr() -> None:
    _redis().incr(DONE)


def incr_sleep() -> None:
    _redis().incr(DONE)
    time.sleep(0.001)


def stamp(sent: float) -> None:
    _redis().rpush(LATENCY, since(sent))


def late(due: float) -> None:
    _redis().rpush(LATE, since(due))
