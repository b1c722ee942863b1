"""The indexes the dashboard reads at any depth, on real servers: jobs waiting for a retry
(`retries`), and Failed jobs by function and by exception type. They are kept on the
failure path only, and a store written before them gets them built in bounded slices."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from taskfire import Failed, Scheduled
from taskfire.client import transition_for
from tests import jobs
from tests.conftest import state_of, wait_for, wait_state


def fail(tf, ids, function_error="ValueError", message="boom"):
    """Moves jobs to Failed, as a worker's finish does (one script call each, one trip)."""
    tf.storage.transitions([transition_for(i, Failed(reason="An exception occurred", exception_type=function_error,
                                                     exception_message=message)) for i in ids])


def retry(tf, ids, delay=3600.0):
    """Moves jobs to Scheduled in place of a failure, as the retry policy elects it."""
    failure = Failed(reason="An exception occurred", exception_type="TimeoutError", exception_message="slow")
    tf.storage.transitions([transition_for(i, Scheduled(delay=delay, reason="Retry attempt 1 of 3"),
                                           fields={"retries": "1"}, elected=[failure]) for i in ids])


def index_keys(tf):
    k = tf.storage.keys
    return [k.retries, k.failed_functions, k.failed_exceptions, k.index_builds]


def test_retries_are_listed_whatever_else_is_scheduled_sooner(tf):
    # Given 8,100 scheduled jobs, 6,000 of them due sooner than 20 retries
    sooner = tf.enqueue_many(jobs.add, [(i, 1) for i in range(6000)])
    tf.storage.transitions([transition_for(i, Scheduled(delay=60)) for i in sooner])
    later = tf.enqueue_many(jobs.add, [(i, 2) for i in range(2100)])
    tf.storage.transitions([transition_for(i, Scheduled(delay=7200)) for i in later])
    retrying = tf.enqueue_many(jobs.fails_with, [("x",)] * 20)
    retry(tf, retrying)
    # Then every retry is listed, soonest first, and counted
    listed = tf.storage.monitor.retry_ids(0, 100)
    assert sorted(i for i, _ in listed) == sorted(retrying)
    assert [due for _, due in listed] == sorted(due for _, due in listed)
    assert tf.storage.monitor.counts()["retries"] == 20
    # And a job leaves the list when it leaves Scheduled, however it does
    assert tf.requeue(retrying[0]) and tf.delete(retrying[1])
    tf.storage.transitions([transition_for(retrying[2], Scheduled(delay=10))])  # rescheduled by hand
    assert {i for i, _ in tf.storage.monitor.retry_ids(0, 100)} == set(retrying[3:])
    assert tf.storage.monitor.counts()["retries"] == 17


def test_a_retry_that_comes_due_leaves_the_retries_list(tf, start_worker):
    start_worker()
    job_id = jobs.fail_times.options(retry_delays=[0.3]).enqueue(1)
    wait_for(lambda: tf.get_job(job_id).retry_count == 1, 20, "the first attempt to fail")
    wait_state(tf, job_id, "Succeeded")
    assert tf.storage.monitor.retry_ids(0, 10) == [] and tf.storage.monitor.counts()["retries"] == 0


def test_failed_jobs_are_found_by_function_and_exception_at_any_depth(tf):
    # Given 20 failures of one function, older than 6,000 of another
    old = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(20)])
    fail(tf, old, "billing.CardDeclined", "card declined")
    recent = tf.enqueue_many(jobs.add, [(i, 1) for i in range(6000)])
    fail(tf, recent, "ValueError")
    monitor = tf.storage.monitor
    # Then each is found at any depth, newest first, and counted
    found = monitor.failed_ids(0, 50, function="tests.jobs:record_order")
    assert {i for i, _ in found} == set(old)
    assert [at for _, at in found] == sorted((at for _, at in found), reverse=True)
    assert {i for i, _ in monitor.failed_ids(0, 50, exception="billing.CardDeclined")} == set(old)
    assert len(monitor.failed_ids(0, 10_000, exception="ValueError")) == 6000
    assert monitor.failure_groups() == ({"tests.jobs:add": 6000, "tests.jobs:record_order": 20},
                                        {"ValueError": 6000, "billing.CardDeclined": 20})
    # And a job that leaves Failed leaves them; a group that empties is forgotten
    assert tf.requeue(old[0]) and tf.delete(old[1])
    fail(tf, [old[2]], "TimeoutError")  # failed again, with another exception
    functions, exceptions = monitor.failure_groups()
    assert functions["tests.jobs:record_order"] == 18
    assert exceptions["billing.CardDeclined"] == 17 and exceptions["TimeoutError"] == 1
    assert tf.requeue_all("Failed", exception="billing.CardDeclined").changed == 17
    assert "billing.CardDeclined" not in monitor.failure_groups()[1]
    assert tf.storage.redis.exists(tf.storage.keys.failed_by_exception("billing.CardDeclined")) == 0


def test_a_job_that_succeeds_writes_nothing_to_the_failure_indexes(tf, start_worker):
    start_worker()
    job_id = jobs.add.enqueue(1, 2)
    wait_state(tf, job_id, "Succeeded")
    assert [k for k in index_keys(tf) if tf.storage.redis.exists(k)] == []


def test_requeue_all_and_delete_all_of_the_retries_touch_only_them(tf):
    scheduled = tf.schedule(jobs.add, 3600, 1, 1)
    retrying = tf.enqueue_many(jobs.fails_with, [("x",)] * 5)
    retry(tf, retrying)
    assert tf.requeue_all("Scheduled", only_retries=True).changed == 5
    assert [state_of(tf, i) for i in retrying] == ["Enqueued"] * 5 and state_of(tf, scheduled) == "Scheduled"
    retry(tf, retrying[:3])
    assert tf.delete_all("Scheduled", only_retries=True).changed == 3
    assert state_of(tf, scheduled) == "Scheduled" and tf.storage.monitor.counts()["retries"] == 0


def test_a_store_written_before_the_indexes_gets_them_built_in_bounded_slices(tf):
    # Given failures and retries stored as an older version stored them (no indexes),
    # 300 of the retries due at the very same millisecond
    failed = tf.enqueue_many(jobs.add, [(i, 1) for i in range(250)])
    fail(tf, failed[:200], "ValueError")
    fail(tf, failed[200:], "KeyError")
    same_time = datetime.now(timezone.utc) + timedelta(hours=1)
    retrying = tf.enqueue_many(jobs.fails_with, [("x",)] * 300)
    failure = Failed(reason="An exception occurred", exception_type="TimeoutError")
    tf.storage.transitions([transition_for(i, Scheduled(at=same_time), elected=[failure]) for i in retrying])
    plain = tf.enqueue_many(jobs.add, [(i, 2) for i in range(120)])
    tf.storage.transitions([transition_for(i, Scheduled(delay=60)) for i in plain])
    expected_failed = tf.storage.monitor.failure_groups()
    r = tf.storage.redis
    r.delete(*index_keys(tf), *(tf.storage.keys.failed_by_function(f) for f in expected_failed[0]),
             *(tf.storage.keys.failed_by_exception(e) for e in expected_failed[1]))
    assert tf.storage.monitor.indexes_built() == {"retries": False, "failed": False}
    # When the backfill runs, 70 jobs per call
    calls = {"retries": 0, "failed": 0}
    for index in calls:
        built = False
        while not built and calls[index] < 50:
            looked, built = tf.storage.backfill(index, 70)
            calls[index] += 1
            assert looked <= 70
    # Then every index is whole, and built once for all
    assert calls == {"retries": 7, "failed": 4}  # 420 scheduled and 250 failed, 70 at a time
    assert sorted(i for i, _ in tf.storage.monitor.retry_ids(0, 1000)) == sorted(retrying)
    assert tf.storage.monitor.failure_groups() == expected_failed == ({"tests.jobs:add": 250},
                                                                        {"ValueError": 200, "KeyError": 50})
    assert len(tf.storage.monitor.failed_ids(0, 1000, exception="KeyError")) == 50
    assert tf.storage.monitor.indexes_built() == {"retries": True, "failed": True}
    assert tf.storage.backfill("failed", 70) == (0, True)
