"""Real `taskfire worker` processes running jobs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from taskfire import Taskfire
from tests import jobs
from tests.conftest import redis_client, report, wait_for


def settled(tf: Taskfire, job_id: str, states=("Succeeded", "Failed", "Deleted"), timeout: float = 15.0):
    return wait_for(lambda: (j := tf.get_job(job_id)) and j.state in states and j, timeout,
                    f"job {job_id} to reach {'/'.join(states)}")


def test_a_worker_runs_a_job_and_stores_its_result(tf, start_worker):
    start_worker()
    jid = jobs.add.enqueue(2, 3)
    j = settled(tf, jid)
    assert (j.state, j.result) == ("Succeeded", 5)
    assert [e.state for e in j.history] == ["Enqueued", "Processing", "Succeeded"]
    assert j.started_at >= j.created_at and j.finished_at >= j.started_at
    assert "duration_ms" in j.history[-1].data and "latency_ms" in j.history[-1].data


def test_a_job_sees_its_context(tf, start_worker):
    start_worker()
    jid = jobs.context_info.enqueue()
    assert settled(tf, jid).result == {"id": jid, "name": "tests.jobs:context_info", "queue": "default", "attempt": 1}


def test_arguments_are_converted_to_the_annotated_types(tf, start_worker):
    start_worker()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    jid = jobs.typed.enqueue(when, jobs.Point(1, 2), ("a", "b"))
    j = settled(tf, jid)
    assert j.state == "Succeeded", j.exception
    assert j.result == "2026-01-02T03:04:05+00:00 1,2 a/b"


def test_strict_priority_takes_higher_queues_first(tf, start_worker):
    # Given jobs waiting in three queues, enqueued lowest priority first
    jobs.record_low.enqueue_many([(f"low-{i}",) for i in range(5)])
    jobs.record_default.enqueue_many([(f"default-{i}",) for i in range(5)])
    ids = jobs.record_critical.enqueue_many([(f"critical-{i}",) for i in range(5)])
    # When one single-threaded worker listens to critical, default, low
    start_worker("--queues", "critical,default,low", "--threads", "1")
    # Then it empties them in that order, each in FIFO order
    key = tf.prefix + "test:order"
    wait_for(lambda: tf.storage.redis.llen(key) == 15, 15, "15 jobs to run")
    order = [t.decode() for t in tf.storage.redis.lrange(key, 0, -1)]
    assert order == [f"{q}-{i}" for q in ("critical", "default", "low") for i in range(5)]
    assert tf.get_job(ids[0]).state == "Succeeded"


def entered(j, state: str) -> datetime:
    """When the job (last) entered `state`, by the Redis server's clock."""
    return [e.at for e in j.history if e.state == state][-1]


def test_an_idle_worker_starts_a_new_job_at_once(tf, start_worker):
    # Given an idle worker whose longest wait is 8 s, and whose jobs' leases (30 s) never
    # end a wait sooner: left to itself it would look for work every 8 s
    start_worker("--idle-wait", "8", env={"TASKFIRE_LEASE_TIMEOUT": "30"})
    picked_up: list[datetime] = []
    latencies = []
    # When jobs arrive one at a time, each after the one before has finished
    for _ in range(20):
        j = settled(tf, jobs.echo.enqueue(1), timeout=30)
        picked_up.append(entered(j, "Processing"))
        latencies.append(j.history[-1].data["latency_ms"])
    # Then each was taken before the idle wait begun after the previous pickup could
    # end (server clock): the enqueue woke the worker, not the end of its wait
    gaps = [(b - a).total_seconds() for a, b in zip(picked_up, picked_up[1:])]
    assert max(gaps) < 8, gaps
    latencies.sort()
    report(f"idle pickup latency (enqueue -> Processing, server clock) over 20 jobs: "
           f"median {latencies[10]} ms, max {latencies[-1]} ms (idle wait 8 s)")


def test_a_delayed_job_starts_on_time(tf, start_worker):
    # Given an idle worker whose longest wait is 8 s
    start_worker("--idle-wait", "8")
    # When a job is scheduled 2 s ahead
    jid = jobs.record_start.schedule(2.0)
    j = settled(tf, jid, timeout=20)
    # Then, by the server's clock, it started at its due time, not before, and not when
    # the worker's 8 s wait would have ended: the worker slept until the job was due
    scheduled = j.history[0]
    assert scheduled.state == "Scheduled" and scheduled.due is not None
    started = entered(j, "Processing")
    assert scheduled.due <= started < scheduled.at + timedelta(seconds=8), (scheduled, started)
    report(f"job delayed 2 s started {(started - scheduled.due).total_seconds() * 1000:.0f} ms after its due "
           f"time (server clock)")


def test_a_job_without_retry_options_is_retried_on_hangfires_schedule(tf, start_worker):
    # Given a job that sets no retry options (what users get by default)
    start_worker()
    jid = jobs.fails_on_the_default_schedule.enqueue()
    # When it fails
    j = settled(tf, jid, states=("Scheduled",))
    # Then its first retry is due 15 to 44 s later (Hangfire's AutomaticRetry), of 10
    failed, retry = j.history[-2:]
    assert (failed.state, retry.state) == ("Failed", "Scheduled")
    assert retry.reason == "Retry attempt 1 of 10: the default retry policy applies"
    assert retry.due is not None and 15 <= (retry.due - retry.at).total_seconds() <= 44, retry
    assert j.retry_count == 1


def test_retries_until_success_record_every_attempt(tf, start_worker):
    start_worker()
    jid = jobs.fail_times.enqueue(2)
    j = settled(tf, jid)
    assert (j.state, j.result, j.retry_count) == ("Succeeded", "succeeded on attempt 3", 2)
    assert [e.state for e in j.history] == [
        "Enqueued", "Processing", "Failed", "Scheduled", "Enqueued",
        "Processing", "Failed", "Scheduled", "Enqueued", "Processing", "Succeeded"]
    assert j.history[3].reason == "Retry attempt 1 of 5: failure 1 of 2"
    assert j.history[2].data["exception_type"] == "RuntimeError"
    assert "failure 1 of 2" in j.history[2].data["exception_details"]


def test_retries_until_exhaustion_leave_the_job_failed_with_its_traceback(tf, start_worker):
    start_worker()
    jid = jobs.always_fails.enqueue()
    j = settled(tf, jid, states=("Failed",))
    wait_for(lambda: tf.get_job(jid).retry_count == 2 and tf.get_job(jid).state == "Failed", 10)
    j = tf.get_job(jid)
    assert [e.state for e in j.history].count("Processing") == 3
    assert j.reason == "ValueError: this job always fails"
    assert j.exception.type == "ValueError" and "always_fails" in j.exception.traceback
    assert tf.storage.redis.ttl(tf.storage.keys.job(jid)) == -1  # Failed never expires
    assert tf.storage.redis.zscore(tf.storage.keys.state("Failed"), jid) is not None


def test_on_exhausted_delete_deletes_with_the_exception(tf, start_worker):
    start_worker()
    jid = jobs.fails_then_deleted.enqueue()
    j = settled(tf, jid, states=("Deleted",))
    assert j.reason == "Exceeded the maximum number of retry attempts."
    assert j.exception.message == "gone after retries"


def test_retry_on_limits_which_exceptions_retry(tf, start_worker):
    start_worker()
    retried = jobs.fails_with.enqueue("connection")
    failed_at_once = jobs.fails_with.enqueue("value")
    j = settled(tf, failed_at_once, states=("Failed",))
    assert j.retry_count == 0 and [e.state for e in j.history] == ["Enqueued", "Processing", "Failed"]
    wait_for(lambda: tf.get_job(retried).retry_count == 3 and tf.get_job(retried).state == "Failed", 10)


def test_a_requeued_job_keeps_its_retry_count_and_gets_one_more_run(tf, start_worker):
    # Given a job that failed for good after its 2 retries
    start_worker()
    jid = jobs.always_fails.enqueue()
    wait_for(lambda: (j := tf.get_job(jid)) and j.state == "Failed" and j.retry_count == 2, 15, "retries exhausted")
    # When an operator requeues it
    assert tf.requeue(jid)
    # Then it runs once more and fails for good again, its retry count kept (as in Hangfire)
    wait_for(lambda: [e.state for e in tf.get_job(jid).history].count("Processing") == 4, 15, "the fourth run")
    j = settled(tf, jid, states=("Failed",))
    states = [e.state for e in j.history]
    assert states[-4:] == ["Failed", "Enqueued", "Processing", "Failed"], states
    assert j.retry_count == 2 and states.count("Scheduled") == 2
    assert j.reason == "ValueError: this job always fails"


def test_a_failed_job_can_be_requeued_and_succeed(tf, start_worker):
    jid = jobs.add.enqueue(1, 2)
    tf.storage.redis.hset(tf.storage.keys.job(jid), "args", b"\xc1")  # corrupt it first
    start_worker()
    settled(tf, jid, states=("Failed",))
    from taskfire.payload import encode_args
    tf.storage.redis.hset(tf.storage.keys.job(jid), "args", encode_args("add", (1, 2), {}))
    assert tf.requeue(jid)
    assert settled(tf, jid, states=("Succeeded",)).result == 3


def test_a_job_naming_an_unknown_function_fails_and_others_run(tf, start_worker):
    start_worker()
    unknown = tf.enqueue("tests.jobs:does_not_exist", 1)
    fine = jobs.add.enqueue(1, 1)
    j = settled(tf, unknown)
    assert j.state == "Failed" and j.retry_count == 0
    assert j.exception.type == "taskfire.errors.UnknownJobError"
    assert "'tests.jobs:does_not_exist' is not a @job registered in this worker" in j.reason
    assert settled(tf, fine).state == "Succeeded"


def test_a_corrupt_payload_fails_the_job_and_others_run(tf, start_worker):
    bad = jobs.add.enqueue(1, 2)
    tf.storage.redis.hset(tf.storage.keys.job(bad), "args", b"\x93not msgpack")
    mistyped = jobs.add.enqueue(1, 2)
    from taskfire.payload import encode_args
    tf.storage.redis.hset(tf.storage.keys.job(mistyped), "args", encode_args("add", ("x", 2), {}))
    fine = jobs.add.enqueue(2, 2)
    start_worker("--threads", "1")
    j = settled(tf, bad)
    assert j.state == "Failed" and "corrupt" in j.reason and j.retry_count == 0
    j = settled(tf, mistyped)
    assert j.state == "Failed" and "argument 'a' of tests.jobs:add does not fit its type" in j.reason
    assert settled(tf, fine).result == 4


def test_a_job_whose_import_raises_fails_with_the_traceback(tf, start_worker):
    start_worker()
    jid = jobs.import_broken.options(retries=0).enqueue()
    j = settled(tf, jid)
    assert j.state == "Failed" and "configuration is missing" in j.reason
    assert "broken_module.py" in j.exception.traceback
    assert settled(tf, jobs.add.enqueue(1, 1)).state == "Succeeded"


def test_a_worker_given_a_module_that_fails_to_import_refuses_to_start(tf, start_worker):
    w = start_worker(modules=("tests.broken_jobs",), ready=False)
    assert w.wait(20) != 0
    out = w.output()
    assert "cannot import job module 'tests.broken_jobs'" in out and "a dependency is missing" in out


def test_invalid_worker_options_give_clear_errors(tf, start_worker):
    for args, message in [
        (("--queues", "critical,Bad Queue"), "invalid queue name 'Bad Queue'"),
        (("--threads", "0"), "threads must be at least 1"),
        (("--processes", "two"), "processes: 'two' is not a int"),
        (("--queues", "a,a"), "a queue is listed twice"),
    ]:
        w = start_worker(*args, ready=False)
        assert w.wait(20) == 2
        assert message in w.output()


def test_options_come_from_environment_variables(tf, start_worker):
    w = start_worker(env={"TASKFIRE_QUEUES": "low", "TASKFIRE_THREADS": "3", "TASKFIRE_NAME": "box-7"})
    assert "taking jobs from low with 3 threads" in w.output()
    record = wait_for(lambda: tf.storage.redis.zrange(tf.storage.keys.servers, 0, -1), 10, "a server record")
    assert record[0].decode().startswith("box-7:")


def test_a_flag_wins_over_its_environment_variable(tf, start_worker):
    w = start_worker("--threads", "5", "--queues", "critical", env={"TASKFIRE_THREADS": "3", "TASKFIRE_QUEUES": "low"})
    assert "taking jobs from critical with 5 threads" in w.output()


def test_a_worker_warns_when_redis_may_evict_jobs(tf, server, start_worker):
    r = redis_client(server)
    quiet = start_worker()
    assert "maxmemory-policy" not in quiet.output()  # noeviction, as the test servers run
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        warned = start_worker()
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    assert "Redis maxmemory-policy is 'allkeys-lru': under memory pressure it may evict jobs. " \
           "Set it to 'noeviction'." in warned.output()


def test_a_server_registers_itself_and_leaves_on_stop(tf, start_worker):
    w = start_worker("--processes", "2", "--threads", "3", "--queues", "critical,default", "--name", "box-1")
    r, k = tf.storage.redis, tf.storage.keys
    server_id = wait_for(lambda: r.zrange(k.servers, 0, -1), 10)[0].decode()
    facts = wait_for(lambda: (f := r.hgetall(k.server(server_id))) and f.get(b"workers", b"").count(b",") == 1 and f, 10)
    assert facts[b"name"] == b"box-1" and facts[b"queues"] == b"critical,default"
    assert facts[b"processes"] == b"2" and facts[b"threads"] == b"3"
    assert sorted(int(p) for p in facts[b"workers"].split(b",")) == sorted(w.children())
    w.signal(15)
    assert w.wait(20) == 0
    assert r.zrange(k.servers, 0, -1) == [] and not r.exists(k.server(server_id))


def test_a_dead_server_is_removed_by_a_live_one(tf, start_worker):
    r, k = tf.storage.redis, tf.storage.keys
    doomed = start_worker("--name", "doomed")
    wait_for(lambda: r.zcard(k.servers) == 1, 10)
    doomed.kill()  # SIGKILL to the whole group: no goodbye
    start_worker("--name", "survivor")
    wait_for(lambda: [s.decode().split(":")[0] for s in r.zrange(k.servers, 0, -1)] == ["survivor"], 15,
             "the dead server to be removed")


def test_finished_jobs_expire_and_counters_stay_bounded(tf, start_worker):
    start_worker()
    ok = jobs.add.enqueue(1, 1)
    bad = jobs.always_fails.options(retries=0).enqueue()
    settled(tf, ok)
    settled(tf, bad)
    r, k = tf.storage.redis, tf.storage.keys
    assert 86300 < r.ttl(k.job(ok)) <= 86400
    # a job that never left the happy path keeps its history in its record: no list to expire
    assert not r.exists(k.history(ok)) and [e.state for e in tf.get_job(ok).history] == [
        "Enqueued", "Processing", "Succeeded"]
    assert r.ttl(k.job(bad)) == -1  # Failed is kept until someone acts
    hour = int(time.time() // 3600)
    for state in ("Succeeded", "Failed"):
        assert int(r.get(k.stat(state))) == 1
        hourly = [key for key in (k.stat(state, hour), k.stat(state, hour - 1)) if r.exists(key)]
        assert hourly and 0 < r.ttl(hourly[0]) <= 8 * 24 * 3600
    assert r.lrange(k.state("Succeeded"), 0, -1) == [ok.encode()]
