"""`taskfire worker --burst`: real worker processes that take jobs until the queues are
empty and nothing is due within a second, then exit, saying whether a job failed."""

from __future__ import annotations

import signal

from tests import jobs
from tests.conftest import state_of, traces, wait_for


def test_a_burst_worker_runs_every_queue_dry_with_continuations_and_near_retries_then_exits_0(tf, start_worker):
    # Given jobs on two queues, a continuation, and a job that fails once then is retried 0.2 s later
    critical = [jobs.record_critical.enqueue(f"c{i}") for i in range(3)]
    plain = [jobs.record_default.enqueue(f"d{i}") for i in range(3)]
    parent = jobs.sleep_for.enqueue(0.3)
    child = jobs.record_default.continue_with(parent, "child")
    retried = jobs.fail_times.enqueue(1)
    # When a burst worker runs
    worker = start_worker("--burst", "--queues", "critical,default", ready=False)
    # Then it exits 0 once all of them have run
    assert worker.wait(60) == 0, worker.output()
    for job_id in (*critical, *plain, parent, child, retried):
        assert state_of(tf, job_id) == "Succeeded", (job_id, tf.get_job(job_id))
    assert sorted(traces(tf, "order")) == sorted(["c0", "c1", "c2", "d0", "d1", "d2", "child"])
    assert "burst: the queues are empty and nothing is due" in worker.output()


def test_a_burst_worker_exits_1_when_a_job_failed_for_good(tf, start_worker):
    failed = jobs.always_fails.enqueue()  # retried at 0.1 s and 0.2 s, then Failed
    fine = jobs.add.enqueue(1, 2)
    worker = start_worker("--burst", ready=False)
    assert worker.wait(60) == 1, worker.output()
    assert state_of(tf, failed) == "Failed" and state_of(tf, fine) == "Succeeded"


def test_a_retry_due_within_a_second_keeps_a_burst_worker_until_it_ran(tf, start_worker):
    retried = jobs.fail_times.enqueue(1)  # fails, then is retried 0.2 s later: the only job
    worker = start_worker("--burst", ready=False)
    assert worker.wait(60) == 0, worker.output()
    job = tf.get_job(retried)
    assert job is not None and job.state == "Succeeded" and job.retry_count == 1


def test_a_job_due_later_than_a_second_does_not_keep_a_burst_worker(tf, start_worker):
    later = jobs.echo.schedule(60, "later")
    now = jobs.echo.enqueue("now")
    worker = start_worker("--burst", "--processes", "2", ready=False)
    assert worker.wait(60) == 0, worker.output()
    assert state_of(tf, now) == "Succeeded" and state_of(tf, later) == "Scheduled"


def test_a_burst_worker_stopped_by_ctrl_c_hands_its_running_job_back(tf, start_worker):
    slow = jobs.sleep_for.enqueue(30)
    worker = start_worker("--burst", "--shutdown-timeout", "0.5", ready=False)
    wait_for(lambda: state_of(tf, slow) == "Processing", 20, "the slow job to start")
    worker.signal(signal.SIGINT)
    assert worker.wait(30) == 0, worker.output()
    job = tf.get_job(slow)
    assert job is not None and job.state == "Enqueued"
    assert job.reason == "Requeued: its worker shut down before the job finished"
    assert tf.job_ids_in_state("Enqueued", queue="default") == [slow]
