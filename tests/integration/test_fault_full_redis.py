"""Fault: Redis at maxmemory with noeviction (docs/operations.md, "A full Redis").

A full Redis refuses new jobs, with an error that says which were stored, and keeps
running, finishing and deleting the jobs it holds: the server stays registered and
beating, no job is lost or run twice, and the moment memory is freed, enqueues work."""

from __future__ import annotations

import itertools
import time

import pytest
import redis

from taskfire import EnqueueError, Taskfire
from tests import jobs
from tests.conftest import report, wait_for
from tests.integration.conftest import admin
from tests.integration.test_resilience import states_of
from tests.integration.test_worker import settled

_filler = itertools.count()


def fill(r: redis.Redis, headroom: int) -> list[str]:
    """Sets maxmemory `headroom` bytes above what Redis uses now, then writes keys of the
    test's own until Redis refuses one, and sets maxmemory a little under what it uses then,
    so that it stays full whatever buffers it frees meanwhile; returns the keys (deleting
    them frees the memory)."""
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + headroom)
    keys = []
    while True:
        key = f"filler:{next(_filler)}"
        try:
            r.set(key, b"x" * 20_000)
        except redis.OutOfMemoryError:
            r.config_set("maxmemory", int(r.info("memory")["used_memory"]) - 200_000)
            return keys
        keys.append(key)


def fetches(tf: Taskfire, ids: list[str]) -> list[int]:
    """How many times each job was taken by a worker (its record's `fetches`)."""
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(tf.storage.keys.job(i), "fetches")
    return [int(n or 0) for n in pipe.execute()]


def test_a_full_redis_keeps_running_stored_jobs_and_refuses_new_ones(own_server, prefix, start_worker_on):
    r = admin(own_server)
    tf = Taskfire(own_server.url, prefix=prefix)
    # Given a worker at work on 400 jobs
    ids = jobs.nap.enqueue_many([(0.01,)] * 400)
    w = start_worker_on(own_server.url, "--threads", "4")
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) >= 20, 30, "the worker to get going")
    [child] = w.children()
    # When Redis fills up to its maxmemory
    filler = fill(r, 1_000_000)
    full_at = time.monotonic()
    beat_before = int(tf.servers()[0]["heartbeat"])
    # Then an enqueue is refused, saying so, and with the id of the job it did not store
    with pytest.raises(EnqueueError, match="not stored: Redis is full") as refused:
        jobs.nap.enqueue()
    assert len(refused.value.not_stored) == 1 and not refused.value.maybe_stored
    assert tf.get_job(refused.value.not_stored[0]) is None
    # and the stored jobs still run (a deleted one is deleted), the server keeps beating,
    # and no worker process dies
    assert tf.delete(ids[-1])
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) == len(ids) - 1, 60, "the stored jobs to drain")
    drained = time.monotonic() - full_at
    wait_for(lambda: int(tf.servers()[0]["heartbeat"]) > beat_before, 10, "a heartbeat while full")
    assert w.proc.poll() is None and w.children() == [child]
    assert int(r.info("memory")["used_memory"]) > int(r.config_get("maxmemory")["maxmemory"])  # still full
    # When memory is freed
    r.delete(*filler)
    freed_at = time.monotonic()
    # Then jobs are taken again at once
    again = wait_for(lambda: _enqueue_or_none(), 10, "an enqueue to be taken")
    recovered = time.monotonic() - freed_at
    assert settled(tf, again).state == "Succeeded"
    runs = fetches(tf, ids[:-1])
    lost = sum(1 for n in runs if n == 0)
    duplicated = sum(1 for n in runs if n > 1)
    report(f"{own_server.binary.name} full (maxmemory, noeviction) with a worker at work: {len(ids) - 1} stored "
           f"jobs drained in {drained:.2f} s while full, lost {lost}, duplicated {duplicated}; enqueue refused "
           f"(EnqueueError, not stored); after memory was freed, an enqueue went through {recovered:.3f} s later")
    assert (lost, duplicated) == (0, 0)
    assert "Traceback" not in w.output()
    assert w.output().count("Redis is full") <= 3  # one line per loop that met it, not one per try


def _enqueue_or_none() -> str | None:
    try:
        return jobs.nap.enqueue()
    except EnqueueError:
        return None


def test_enqueue_many_into_a_nearly_full_redis_says_which_jobs_it_stored(own_server, prefix):
    r = admin(own_server)
    tf = Taskfire(own_server.url, prefix=prefix)
    # Given a Redis with room for a few thousand jobs
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 1_000_000)
    # When 10,000 are enqueued at once
    with pytest.raises(EnqueueError) as refused:
        jobs.nap.enqueue_many([(0,)] * 10_000)
    e = refused.value
    # Then the error says which were stored (those are in Redis) and which were not (those are not)
    assert e.stored and e.not_stored and not e.maybe_stored
    assert len(e.stored) + len(e.not_stored) == 10_000
    stored = tf.get_jobs(e.stored)
    assert all(j is not None for j in stored)
    assert all(j is None for j in tf.get_jobs(e.not_stored))
    # and once memory is freed, retrying stores the rest, none twice
    r.config_set("maxmemory", 0)
    e.retry()
    assert tf.storage.redis.llen(tf.storage.keys.queue("default")) == 10_000
    assert all(j is not None for j in tf.get_jobs(e.not_stored))
    report(f"{own_server.binary.name}: enqueue_many(10,000) into a nearly full Redis: EnqueueError with "
           f"{len(e.stored):,} stored and {len(e.not_stored):,} not stored ids; e.retry() stored the rest, "
           f"0 duplicated")
