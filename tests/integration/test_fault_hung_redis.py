"""Fault: a hung Redis (SIGSTOP, longer than the client's timeout) during an enqueue.

The enqueue gives up after the client's `timeout` (retries included) and raises an
EnqueueError that says the job may have been stored, with its id; when Redis comes back
it stores the job it had received, and `e.retry()` (the same id) stores nothing twice."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from taskfire import AsyncTaskfire, EnqueueError, Taskfire
from tests import jobs
from tests.conftest import report
from tests.integration.test_worker import settled


def test_an_enqueue_to_a_hung_redis_times_out_saying_the_job_may_have_been_stored(own_server, prefix,
                                                                                   start_worker_on):
    tf = Taskfire(own_server.url, prefix=prefix, timeout=1.0)
    jobs.nap.enqueue()  # connected, and the scripts loaded
    # Given a Redis that stops answering (its process stopped)
    own_server.process.send_signal(signal.SIGSTOP)
    try:
        # When a job is enqueued
        started = time.monotonic()
        with pytest.raises(EnqueueError, match="may have been stored: Redis did not answer within 1 s") as hung:
            jobs.nap.enqueue()
        waited = time.monotonic() - started
    finally:
        own_server.process.send_signal(signal.SIGCONT)
    # Then the error named the job, which Redis stored once it came back
    [job_id] = hung.value.maybe_stored
    assert not hung.value.stored and not hung.value.not_stored
    # and a retry under the same id stores nothing twice: the job runs once
    hung.value.retry()
    start_worker_on(own_server.url)
    assert settled(tf, job_id, timeout=20).state == "Succeeded"
    queued = tf.storage.redis.hget(tf.storage.keys.queue_stats, "default:in")
    assert int(queued) == 2  # the first job and this one: the retry created nothing
    fetched = int(tf.storage.redis.hget(tf.storage.keys.job(job_id), "fetches"))
    report(f"{own_server.binary.name} SIGSTOPped during an enqueue (timeout 1 s): EnqueueError after "
           f"{waited:.2f} s naming the maybe-stored job; e.retry() then worker: lost 0, duplicated "
           f"{fetched - 1}")
    assert fetched == 1



def test_an_async_enqueue_to_a_hung_redis_times_out_and_its_retry_stores_it_once(own_server, prefix,
                                                                                 start_worker_on):
    async def enqueue_while_hung() -> EnqueueError:
        async with AsyncTaskfire(own_server.url, prefix=prefix, timeout=1.0) as atf:
            await jobs.nap.enqueue_async()  # connected, and the scripts loaded
            own_server.process.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(EnqueueError, match="may have been stored: Redis did not answer within 1 s") as hung:
                    await asyncio.wait_for(jobs.nap.enqueue_async(), timeout=30)  # the test's own bound
            finally:
                own_server.process.send_signal(signal.SIGCONT)
            await hung.value.retry()
            return hung.value

    # Given an AsyncTaskfire with a 1 s timeout and a Redis that stops answering
    # When a job is enqueued, Then the client's timeout ends the call with an EnqueueError naming it
    error = asyncio.run(enqueue_while_hung())
    [job_id] = error.maybe_stored
    assert not error.stored and not error.not_stored
    # and `await e.retry()` after Redis came back stored nothing twice: the job runs once
    tf = Taskfire(own_server.url, prefix=prefix)
    start_worker_on(own_server.url)
    assert settled(tf, job_id, timeout=20).state == "Succeeded"
    assert int(tf.storage.redis.hget(tf.storage.keys.queue_stats, "default:in")) == 2
    assert int(tf.storage.redis.hget(tf.storage.keys.job(job_id), "fetches")) == 1
