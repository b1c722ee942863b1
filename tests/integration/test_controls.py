"""Job controls on real servers with real worker processes: timeouts, mutexes,
concurrency and rate limits, uniqueness, async jobs, progress and logs, cancellation."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from taskfire import ConfigError, Taskfire, job
from tests import jobs
from tests.conftest import report, state_of, traces, wait_for, wait_state


def test_a_busy_loop_past_its_timeout_is_stopped_and_the_other_jobs_finish(tf, start_worker):
    worker = start_worker("--threads", "4")
    first_pid = wait_for(worker.children, what="the worker process")[0]
    others = [jobs.count_run.enqueue(0.3) for _ in range(6)]
    t0 = time.monotonic()
    stuck = jobs.busy_loop.enqueue(30)
    wait_state(tf, stuck, "Failed", 15)
    stopped_after = time.monotonic() - t0
    failed = tf.get_job(stuck)
    assert failed is not None and failed.exception is not None
    assert failed.exception.type == "taskfire.errors.JobTimeout"
    assert "did not stop within 1 s" in failed.exception.message
    for jid in others:
        wait_state(tf, jid, "Succeeded")
    wait_for(lambda: (now := worker.children()) and now[0] != first_pid, 10, "a replacement process")
    assert "ran past its timeout and ignored cancellation" in worker.output()
    report(f"timeout: CPU-bound job with timeout=1 s failed with JobTimeout {stopped_after:.2f} s after "
           f"enqueue; its process was replaced, the 6 other jobs all succeeded")


def test_a_job_that_stops_when_its_timeout_fires_fails_and_is_retried(tf, start_worker):
    worker = start_worker()
    jid = jobs.slow_but_polite.enqueue()
    wait_state(tf, jid, "Succeeded")
    done = tf.get_job(jid)
    assert done is not None and done.result == "second attempt in time"
    failure = next(e for e in done.history if e.state == "Failed")
    assert failure.data["exception_type"] == "taskfire.errors.JobTimeout"
    assert "timeout of 0.5 s" in failure.data["exception_message"]
    assert traces(tf, "attempts") == ["1", "2"]
    assert "replacing worker process" not in worker.output()  # a polite job costs no process


def test_a_mutex_never_lets_two_runs_overlap_across_workers(tf, start_worker):
    for _ in range(3):
        start_worker("--threads", "4")
    t0 = time.monotonic()
    ids = [jobs.sync_customer.enqueue(1, 0.1) for _ in range(20)]
    other = jobs.sync_customer.enqueue(2, 0.1)  # another customer: its own mutex
    for jid in ids + [other]:
        wait_state(tf, jid, "Succeeded", 60)
    elapsed = time.monotonic() - t0
    intervals = sorted(tuple(map(float, v.split(":"))) for v in traces(tf, "intervals:1"))
    assert len(intervals) == 20
    overlaps = sum(1 for a, b in zip(intervals, intervals[1:]) if b[0] < a[1])
    assert overlaps == 0, intervals
    waited = sum(1 for jid in ids if any("Waiting for mutex:sync-1" in (e.reason or "") for e in tf.get_job(jid).history))  # type: ignore[union-attr]
    assert waited > 0  # they really contended
    report(f"mutex: 20 jobs of 0.1 s on one mutex across 3 workers (12 threads): 0 overlaps, "
           f"{waited} waited, all done in {elapsed:.2f} s")


def test_a_concurrency_limit_of_two_is_never_exceeded(tf, start_worker):
    start_worker("--threads", "4")
    start_worker("--threads", "4")
    ids = [jobs.limited.enqueue(0.15) for _ in range(12)]
    for jid in ids:
        wait_state(tf, jid, "Succeeded", 60)
    peaks = [int(v) for v in traces(tf, "peaks")]
    assert len(peaks) == 12 and max(peaks) == 2
    assert tf.storage.redis.zcard(tf.storage.keys.prefix + "limit:concurrency:tests.jobs:limited") == 0


def ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def entered(tf: Taskfire, job_id: str, state: str) -> list[int]:
    """When (ms, the Redis server's clock) the job entered `state`, each time."""
    job = tf.get_job(job_id)
    assert job is not None
    return [ms(e.at) for e in job.history if e.state == state]


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The most half-open [start, end) spans that overlap at any moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])  # an end before a start
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_a_rate_limit_holds_over_ten_seconds(tf, start_worker):
    start_worker("--threads", "4")
    start_worker("--threads", "4")
    ids = [jobs.rated.enqueue() for _ in range(25)]  # 5 per 2 s: the last starts after ~8 s
    for jid in ids:
        wait_state(tf, jid, "Succeeded", 30)
    # Measured where the limit is kept: each start is the Processing entry that the fetch
    # script wrote, by the server's clock, in the step that admitted it.
    starts = sorted(t for jid in ids for t in entered(tf, jid, "Processing"))
    assert len(starts) == 25
    # Any 6 consecutive starts span at least the 2 s window: a 6th start inside it would
    # have found 5 starts there already.
    tightest = min(b - a for a, b in zip(starts, starts[5:]))
    assert tightest >= 2000, tightest
    waited = [jid for jid in ids if any((e.reason or "").startswith("Rate limit") for e in tf.get_job(jid).history)]  # type: ignore[union-attr]
    assert waited  # the limit was reached, not merely never tested
    report(f"rate limit 5 per 2 s: 25 jobs over {(starts[-1] - starts[0]) / 1000:.1f} s (server clock); "
           f"tightest 6 starts spanned {tightest / 1000:.3f} s; {len(waited)} jobs waited for the window")


def test_a_limit_shared_by_two_functions_is_never_exceeded(tf, start_worker):
    # Given two functions naming one limit ("crm-api", 2) and eight threads on two workers
    start_worker("--threads", "4")
    start_worker("--threads", "4")
    ids = [fn.enqueue(0.2) for _ in range(6) for fn in (jobs.push_contact, jobs.pull_contact)]
    for jid in ids:
        wait_state(tf, jid, "Succeeded", 60)
    # Then, by the server's clock (a place is taken by the script that moves a job to
    # Processing and given back by the one that stores its outcome), never more than two
    # ran at once, both functions together
    spans = [(entered(tf, jid, "Processing")[-1], entered(tf, jid, "Succeeded")[-1]) for jid in ids]
    assert most_at_once(spans) == 2, spans
    waited = [jid for jid in ids
              if any("Waiting for limit:crm-api" in (e.reason or "") for e in tf.get_job(jid).history)]  # type: ignore[union-attr]
    assert waited
    report(f"shared limit 2 over two functions, 12 jobs of 0.2 s on 8 threads: at most 2 at once, "
           f"{len(waited)} waited")


def test_a_job_that_waits_past_its_mutex_timeout_fails_with_limit_timeout(tf, start_worker):
    # Given a job holding customer 5's mutex until the test lets it go
    start_worker("--threads", "2")
    holder = jobs.hold_mutex.enqueue(5)
    wait_for(lambda: traces(tf, "holding") == [holder], what="the holder to start")
    # When another job for customer 5 may wait only half a second
    waiter = jobs.impatient_sync.enqueue(5)
    # Then it gives up, recorded as taskfire.LimitTimeout, while the holder still runs
    wait_state(tf, waiter, "Failed")
    failed = tf.get_job(waiter)
    assert failed is not None and failed.exception is not None
    assert failed.exception.type == "taskfire.LimitTimeout"
    assert failed.reason == "Gave up waiting for mutex:sync-5"
    assert [e.state for e in failed.history] == ["Enqueued", "Scheduled", "Enqueued", "Failed"]
    assert failed.history[1].reason == f"Waiting for mutex:sync-5 (held by job {holder})"
    assert state_of(tf, holder) == "Processing"
    tf.storage.redis.set(tf.prefix + "test:go", 1)
    wait_state(tf, holder, "Succeeded")


def test_a_mutex_held_by_a_killed_worker_lapses_with_its_lease_and_its_waiter_runs(tf, start_worker):
    # Given a worker holding customer 6's mutex in a job that never ends by itself, and
    # another job for customer 6 waiting for it (taken, and parked, by a second worker)
    doomed = start_worker("--threads", "1")
    holder = jobs.hold_mutex.enqueue(6)
    wait_for(lambda: traces(tf, "holding") == [holder], what="the holder to start")
    start_worker("--threads", "1", "--max-recoveries", "0")
    waiter = jobs.sync_customer.enqueue(6, 0.05)  # its mutex_timeout is 60 s
    wait_for(lambda: any("Waiting for mutex:sync-6" in (e.reason or "")
                         for e in tf.get_job(waiter).history), what="the waiter to wait")  # type: ignore[union-attr]
    # When the holder's worker is SIGKILLed (no goodbye, no release)
    doomed.kill()
    # Then its lease lapses (2 s), the holder is given up as lost (--max-recoveries 0),
    # its place is freed, and the waiter runs long before its mutex_timeout
    wait_state(tf, waiter, "Succeeded", 20)
    lost = tf.get_job(holder)
    assert lost is not None and lost.state == "Failed" and lost.exception is not None
    assert lost.exception.type == "taskfire.WorkerLost"
    woken = tf.get_job(waiter)
    assert woken is not None and "mutex:sync-6 is free" in [e.reason for e in woken.history]
    assert len(traces(tf, "intervals:6")) == 1


def test_a_unique_key_returns_the_pending_job_instead_of_a_duplicate(tf, start_worker):
    first = jobs.send_invoice.enqueue(42)
    assert jobs.send_invoice.enqueue(42) == first
    assert jobs.send_invoice.enqueue_many([(42,), (43,), (43,)])[0] == first
    other = jobs.send_invoice.enqueue(43)
    assert other != first
    keyed = jobs.record_order.options(unique_key="nightly-report")
    assert keyed.enqueue("a") == keyed.enqueue("b")
    start_worker()
    wait_state(tf, first, "Succeeded")
    wait_state(tf, other, "Succeeded")
    assert sorted(traces(tf, "invoices")) == ["42", "43"]
    again = jobs.send_invoice.enqueue(42)  # the first one is done: a new job
    assert again != first
    wait_state(tf, again, "Succeeded")


def test_unique_true_means_same_function_and_arguments_and_a_failure_frees_the_key(tf, start_worker):
    # Given jobs unique by function and arguments (unique=True), none run yet
    first = jobs.unique_by_arguments.enqueue(1)
    assert jobs.unique_by_arguments.enqueue(1) == first                  # same function, same arguments
    assert jobs.unique_by_arguments.enqueue(n=1) == first                # the same call, spelt by name
    assert jobs.unique_by_arguments.enqueue(2) != first                  # other arguments
    assert jobs.also_unique_by_arguments.enqueue(1) != first             # another function
    doomed = jobs.unique_by_arguments.enqueue(-1)
    retrying = jobs.unique_by_arguments.options(retries=1, retry_delays=[3600]).enqueue(-2)
    # When they run: -1 fails for good, -2 fails and waits an hour for its retry
    start_worker()
    wait_state(tf, first, "Succeeded")
    wait_state(tf, doomed, "Failed")
    wait_state(tf, retrying, "Scheduled")
    # Then a finished job (Succeeded, or Failed for good) frees its key; a retrying one
    # still holds it
    assert jobs.unique_by_arguments.enqueue(-1) != doomed
    assert jobs.unique_by_arguments.enqueue(1) != first
    assert jobs.unique_by_arguments.enqueue(-2) == retrying


def test_a_thousand_async_jobs_run_at_once_on_one_process(tf, start_worker):
    start_worker("--threads", "4")
    t0 = time.monotonic()
    ids = jobs.async_nap.enqueue_many([(0.5,)] * 1000)
    wait_for(lambda: int(tf.storage.redis.get(tf.prefix + "test:naps") or 0) == 1000, 60, "1,000 naps")
    elapsed = time.monotonic() - t0
    wait_for(lambda: state_of(tf, ids[-1]) == "Succeeded", 10, "the last outcome stored")
    done = tf.get_job(ids[0])
    assert done is not None and done.result == f"napped as {ids[0]}"
    slow = jobs.async_overslept.enqueue()
    wait_state(tf, slow, "Failed")
    assert tf.get_job(slow).exception.type == "taskfire.errors.JobTimeout"  # type: ignore[union-attr]
    report(f"async: 1,000 jobs each sleeping 0.5 s on 1 process x 4 threads finished in {elapsed:.2f} s")


def test_async_limit_caps_the_async_jobs_a_process_runs_at_once(tf, start_worker):
    # Given one process of 10 threads allowed 2 async jobs at once
    start_worker("--async-limit", "2")
    # When 6 async jobs of 0.3 s arrive together
    ids = jobs.async_counted.enqueue_many([(0.3,)] * 6)
    for jid in ids:
        wait_state(tf, jid, "Succeeded")
    # Then at most 2 ran at once, and 2 did
    peaks = [int(v) for v in traces(tf, "peaks")]
    assert len(peaks) == 6 and max(peaks) == 2, peaks


def test_progress_and_log_are_visible_while_the_job_runs(tf, start_worker):
    start_worker()
    jid = jobs.import_rows.enqueue(5)
    running = wait_for(lambda: (j := tf.get_job(jid)) and j.progress and j.progress["done"] == 2 and j,
                       what="progress 2 of 5")
    assert running.state == "Processing"
    assert running.progress == {"done": 2, "total": 5, "fraction": 0.4}
    assert [line.line for line in running.log] == ["imported batch 1", "imported batch 2"]
    tf.storage.redis.set(tf.prefix + "test:go", 1)
    wait_state(tf, jid, "Succeeded")
    done = tf.get_job(jid)
    assert done is not None and done.progress == {"done": 5, "total": 5, "fraction": 1.0} and len(done.log) == 5
    # the log is kept as long as its job, and no longer
    r, k = tf.storage.redis, tf.storage.keys
    assert 0 < r.ttl(k.log(jid)) <= r.ttl(k.job(jid)) <= tf.storage.retention_s


def test_cancellation_is_honoured_or_ignored_by_the_job(tf, start_worker):
    start_worker("--threads", "2")
    polite = jobs.until_cancelled.enqueue()
    stubborn = jobs.ignores_cancellation.enqueue(1.5)
    wait_for(lambda: len(traces(tf, "started")) == 2, what="both jobs to start")
    assert tf.cancel(polite) and tf.cancel(stubborn)
    wait_state(tf, polite, "Deleted")
    assert tf.get_job(polite).reason == "Cancelled by request: the job stopped"  # type: ignore[union-attr]
    wait_state(tf, stubborn, "Succeeded")
    assert tf.get_job(stubborn).result == "ran to the end"  # type: ignore[union-attr]
    waiting = tf.enqueue(jobs.record_order.options(queue="nobody-listens"), "x")
    assert tf.cancel(waiting) and state_of(tf, waiting) == "Deleted"
    assert not tf.cancel(stubborn)  # finished: nothing to cancel
    assert not tf.cancel("0" * 24)


@pytest.mark.parametrize("options, words", [
    ({"timeout": -1}, "timeout must be a number of seconds > 0"),
    ({"mutex": "sync-{customer}"}, "names customer, which is not a parameter"),
    ({"mutex": "a", "concurrency": 2}, "choose one of mutex, concurrency and limit"),
    ({"concurrency": 0}, "concurrency must be a whole number >= 1"),
    ({"rate": (0, 10)}, "rate must be"),
    ({"limit": ("api", 0)}, "limit must be"),
])
def test_bad_controls_are_refused_when_the_job_is_declared(options, words):
    def f(customer_id: int) -> None: ...
    f.__qualname__ = "f_for_controls"
    with pytest.raises(ConfigError, match=words):
        job(**options)(f)


def test_recurring_runs_of_a_mutex_job_never_overlap(tf, start_worker):
    from taskfire import Cron
    start_worker("--threads", "2")
    start_worker("--threads", "2")
    tf.recurring.add_or_update("sync-7", jobs.sync_customer, Cron.every_second(), args=(7, 1.2))
    wait_for(lambda: len(traces(tf, "intervals:7")) >= 4, 30, "four runs")
    tf.recurring.disable("sync-7")
    intervals = sorted(tuple(map(float, v.split(":"))) for v in traces(tf, "intervals:7"))
    assert sum(1 for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]) == 0, intervals
