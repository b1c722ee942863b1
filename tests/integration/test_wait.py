"""`tf.wait` and `tf.wait_batch`: blocking on Redis until a job or batch has an outcome,
with real workers on real servers."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest

from taskfire import NotFoundError
from tests import jobs
from tests.conftest import report, wait_for


class Spy:
    """Counts the waiting client's calls to Redis (they still go to the real server)."""

    def __init__(self, tf: Any) -> None:
        self.calls: list[str] = []
        scripts = tf.storage.scripts
        call, send = scripts.call, scripts.send

        def counted_call(script: str, args: Any) -> Any:
            self.calls.append(script)
            return call(script, args)

        def counted_send(*command: Any) -> Any:
            self.calls.append(command[0])
            return send(*command)

        scripts.call, scripts.send = counted_call, counted_send


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def waiting(tf: Any, kind: str, id_: str) -> int:
    """How many clients are counted as waiting for the job or batch."""
    key = tf.storage.keys.job(id_) if kind == "job" else tf.storage.keys.batch(id_)
    return int(tf.storage.redis.hget(key, "waited") or 0)


def test_wait_returns_the_succeeded_job_after_one_wake_up_not_a_polling_loop(tf, start_worker):
    spy = Spy(tf)
    start_worker()
    job_id = jobs.sleep_for.enqueue(1.5)
    started = time.monotonic()
    job = tf.wait(job_id, timeout=30)
    waited = time.monotonic() - started
    assert job.state == "Succeeded" and job.result == "slept"
    # wait.lua (marks), one BLPOP that the outcome ends, wait.lua again (finds it):
    # a polling loop would have sent a call every few milliseconds for 1.5 s.
    assert spy.calls == ["wait", "BLPOP", "wait"], spy.calls
    report(f"wait: a 1.5 s job's outcome seen after {waited:.2f} s with {len(spy.calls)} calls")


def test_a_job_nobody_waits_for_leaves_no_wake_up_behind(tf, start_worker):
    start_worker()
    job_id = jobs.echo.enqueue("x")
    wait_for(lambda: (j := tf.get_job(job_id)) is not None and j.state == "Succeeded", 20, "the job to succeed")
    assert not tf.storage.redis.exists(tf.storage.keys.outcome("job", job_id))
    assert waiting(tf, "job", job_id) == 0


def test_a_job_that_finished_before_the_wait_is_returned_at_once(tf, start_worker):
    start_worker()
    job_id = jobs.add.enqueue(2, 3)
    wait_for(lambda: (j := tf.get_job(job_id)) is not None and j.state == "Succeeded", 20, "the job to succeed")
    spy = Spy(tf)
    assert tf.wait(job_id, timeout=5).result == 5
    assert spy.calls == ["wait"]


def test_a_retried_job_is_waited_for_until_its_last_retry(tf, start_worker):
    start_worker()
    recovered = jobs.fail_times.enqueue(1)  # fails once, then succeeds on its retry
    failed = jobs.always_fails.enqueue()    # fails, twice retried, then Failed for good
    job = tf.wait(recovered, timeout=30)
    assert job.state == "Succeeded" and job.result == "succeeded on attempt 2"
    assert [e.state for e in job.history].count("Failed") == 1  # the failure that became a retry
    job = tf.wait(failed, timeout=30)
    assert job.state == "Failed" and job.retry_count == 2
    assert job.exception is not None and job.exception.type == "ValueError"


def test_a_deleted_job_ends_every_wait_on_it(tf):
    job_id = jobs.echo.schedule(3600, "later")
    waiters = [in_thread(lambda: tf.wait(job_id, timeout=30)) for _ in range(3)]
    wait_for(lambda: waiting(tf, "job", job_id) == 3, 10, "three waiters")
    assert tf.delete(job_id, "not needed")
    for t, out in waiters:
        t.join(10)
        assert not t.is_alive() and "error" not in out, out
        assert out["value"].state == "Deleted" and out["value"].reason == "not needed"
    # one token each, taken; the count cleared
    assert tf.storage.redis.llen(tf.storage.keys.outcome("job", job_id)) == 0
    assert waiting(tf, "job", job_id) == 0


def test_an_outcome_reached_before_the_waiter_blocks_still_wakes_it(tf):
    # Given a waiter that has been counted (wait.lua) but has not sent its BLPOP yet
    job_id = jobs.echo.schedule(3600, "later")
    assert tf.storage.scripts.call("wait", ["job", job_id]) == 0
    # When the job reaches its outcome in between
    tf.delete(job_id)
    # Then its token is there for the BLPOP, which returns at once, and expires if untaken
    key = tf.storage.keys.outcome("job", job_id)
    assert tf.storage.redis.llen(key) == 1
    assert 0 < tf.storage.redis.ttl(key) <= 60


def test_an_outcome_wakes_every_waiter_however_many(tf):
    # Given 2,500 clients counted as waiting (wait.lua, as 2,500 tf.wait calls would be)
    job_id = jobs.echo.schedule(3600, "later")
    for _ in range(2500):
        assert tf.storage.scripts.call("wait", ["job", job_id]) == 0
    # When the job reaches its outcome
    tf.delete(job_id)
    # Then each has its token (one RPUSH can carry only so many: they go in chunks)
    assert tf.storage.redis.llen(tf.storage.keys.outcome("job", job_id)) == 2500
    assert waiting(tf, "job", job_id) == 0


def test_a_wait_that_times_out_raises_and_says_what_the_job_is_doing(tf):
    job_id = jobs.echo.schedule(3600, "later")
    with pytest.raises(TimeoutError, match=rf"job {job_id} \(tests.jobs:echo\) has no outcome after 0.3 s: "
                                           rf"it is Scheduled"):
        tf.wait(job_id, timeout=0.3)


def test_waiting_for_a_job_that_does_not_exist_raises_not_found(tf):
    with pytest.raises(NotFoundError, match="no job 'nope': it was never created"):
        tf.wait("nope", timeout=1)
    with pytest.raises(NotFoundError, match="no batch 'nope'"):
        tf.wait_batch("nope", timeout=1)


def test_a_token_left_by_an_earlier_outcome_does_not_end_a_wait_for_the_next_one(tf):
    # Given a job deleted while a waiter that gave up was still counted: its token stays
    job_id = jobs.echo.schedule(3600, "later")
    with pytest.raises(TimeoutError):
        tf.wait(job_id, timeout=0.2)
    tf.delete(job_id)
    assert tf.storage.redis.llen(tf.storage.keys.outcome("job", job_id)) == 1
    # When the job is requeued (no worker takes its queue) and waited for again
    assert tf.requeue(job_id)
    t, out = in_thread(lambda: tf.wait(job_id, timeout=30))
    # Then the stale token only makes the waiter check and count itself again (twice
    # counted now: one token too many will be left, to expire) ...
    wait_for(lambda: waiting(tf, "job", job_id) == 2, 10, "the waiter to count itself again")
    assert tf.storage.redis.llen(tf.storage.keys.outcome("job", job_id)) == 0
    assert t.is_alive()
    # ... and the next outcome is the one it returns
    tf.delete(job_id, "deleted again")
    t.join(10)
    assert out["value"].reason == "deleted again"
    assert [e.state for e in out["value"].history].count("Deleted") == 2


def test_wait_batch_returns_the_batch_once_every_member_has_an_outcome(tf, start_worker):
    with tf.batch() as ok:
        ok.enqueue(jobs.sleep_for, 0.5)
        ok.enqueue(jobs.add, 1, 2)
    with tf.batch() as bad:
        bad.enqueue(jobs.add, 1, 2)
        bad.enqueue(jobs.always_fails)
    t, out = in_thread(lambda: tf.wait_batch(ok.id, timeout=30))
    wait_for(lambda: waiting(tf, "batch", ok.id) == 1, 10, "the batch waiter")
    start_worker()
    t.join(30)
    batch = out["value"]
    assert batch.outcome == "succeeded" and batch.succeeded == 2 and batch.pending == 0
    batch = tf.wait_batch(bad.id, timeout=30)
    assert batch.outcome == "failed" and batch.failed == 1 and batch.succeeded == 1
    assert waiting(tf, "batch", ok.id) == 0


def test_wait_batch_times_out_naming_the_members_still_pending(tf):
    with tf.batch() as b:
        b.schedule(jobs.echo, 3600, "later")
        b.schedule(jobs.echo, 3600, "later")
    with pytest.raises(TimeoutError, match=rf"batch {b.id} has no outcome after 0.2 s: 2 of its 2 member"):
        tf.wait_batch(b.id, timeout=0.2)
