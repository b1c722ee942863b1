"""Queue control on real servers with real workers: weighted priority, pausing queues,
quieting servers, and bulk operator actions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from taskfire import ConfigError, Enqueued, Failed
from taskfire.client import transition_for
from taskfire.queues import run_bulk
from tests import jobs
from tests.conftest import ROOT, report, state_of, traces, wait_for


def test_weighted_queues_are_served_in_proportion_and_none_starves(tf, start_worker):
    for fn, q in ((jobs.record_critical, "critical"), (jobs.record_default, "default"), (jobs.record_low, "low")):
        fn.enqueue_many([(q,) for _ in range(1000)])
    start_worker("--queues", "critical:5,default:3,low:1", "--threads", "1")
    wait_for(lambda: len(traces(tf, "order")) >= 1500, 60, "1,500 jobs to run")
    first = Counter(traces(tf, "order")[:1500])  # every queue still had jobs throughout these
    shares = {q: first[q] / 1500 for q in ("critical", "default", "low")}
    # Expected 5/9, 3/9, 1/9 (critical: 833 of its 1,000 jobs). A multinomial draw of
    # 1,500 has a standard deviation of at most 1.3 points per share; 5 points is about
    # 4 deviations.
    assert abs(shares["critical"] - 5 / 9) < 0.05, shares
    assert abs(shares["default"] - 3 / 9) < 0.05, shares
    assert abs(shares["low"] - 1 / 9) < 0.05, shares
    report("weighted fetch critical:5,default:3,low:1 over the first 1,500 jobs: "
           + ", ".join(f"{q} {shares[q]:.3f}" for q in shares) + " (expected 0.556, 0.333, 0.111)")


def processing_at(tf, job_id: str) -> datetime:
    """When the job (last) entered Processing, by the Redis server's clock."""
    job = tf.get_job(job_id)
    assert job is not None
    return [e.at for e in job.history if e.state == "Processing"][-1]


def test_a_paused_queue_keeps_accepting_jobs_and_resuming_wakes_idle_workers(tf, start_worker):
    jobs.record_default.enqueue("before")
    assert tf.queues.pause("default")
    assert not tf.queues.pause("default")  # already paused
    # (an idle wait of 8 s, and leases of 30 s that never end a wait sooner)
    start_worker("--queues", "critical,default", "--threads", "2", "--idle-wait", "8",
                 env={"TASKFIRE_LEASE_TIMEOUT": "30"})
    waiting = [jobs.record_default.enqueue(f"during-{i}") for i in range(5)]
    proof = jobs.record_critical.enqueue("proof-of-life")
    # Its outcome is stored by the same script that fetches the thread's next job: had
    # the pause not held, default's jobs would be taken by then.
    wait_for(lambda: state_of(tf, proof) == "Succeeded", what="the critical job to run")
    assert "before" not in traces(tf, "order") and all(state_of(tf, j) == "Enqueued" for j in waiting)
    info = {q.name: q for q in tf.queues.list()}["default"]
    assert info.paused and info.length == 6 and info.oldest_enqueued_at is not None
    assert tf.queues.resume("default")
    wait_for(lambda: all(state_of(tf, j) == "Succeeded" for j in waiting), 30, "the resumed queue to run")
    # The worker's idle wait began once it had taken the critical job; the first resumed
    # job started before that wait could end (server clock): the resume woke the worker.
    first = min(processing_at(tf, j) for j in waiting)
    assert first < processing_at(tf, proof) + timedelta(seconds=8)
    report(f"queue resume: the first resumed job started {(first - processing_at(tf, proof)).total_seconds():.3f} s "
           f"after the worker took its previous job (idle wait 8 s, server clock)")
    assert not {q.name: q for q in tf.queues.list()}["default"].paused


def test_a_queue_can_be_paused_before_its_first_job(tf, start_worker):
    # Given a queue no job has used yet, paused ahead of a maintenance window
    assert tf.queues.pause("reports")
    assert {q.name: q.paused for q in tf.queues.list()} == {"reports": True}
    # When its first job comes, with a worker running
    start_worker("--queues", "reports,default", "--threads", "1")
    held = jobs.record_default.options(queue="reports").enqueue("held")
    proof = jobs.record_default.enqueue("proof-of-life")
    wait_for(lambda: state_of(tf, proof) == "Succeeded", what="the default job to run")
    # Then it waits for the resume
    assert state_of(tf, held) == "Enqueued"
    tf.queues.resume("reports")
    wait_for(lambda: state_of(tf, held) == "Succeeded", what="the resumed queue's job")


def test_a_queue_length_leaves_out_the_ids_of_jobs_that_moved_on(tf, start_worker):
    # Given ten waiting jobs, of which four are deleted and two moved to another queue
    ids = jobs.record_default.enqueue_many([(f"j{i}",) for i in range(10)])
    for i in ids[:4]:
        assert tf.delete(i)
    for i in ids[4:6]:
        assert tf.change_state(i, Enqueued(queue="low"))
    # Then the queue counts the four still waiting, though its list holds ten ids
    assert tf.queue_lengths() == {"default": 4, "low": 2}
    assert {q.name: q.length for q in tf.queues.list()} == {"default": 4, "low": 2}
    assert tf.storage.monitor.counts()["states"]["Enqueued"] == 6
    # and once a worker has taken them all, every count is back to nothing
    start_worker("--queues", "default,low")
    wait_for(lambda: len(traces(tf, "order")) == 6, what="the six waiting jobs to run")
    wait_for(lambda: tf.queue_lengths() == {"default": 0, "low": 0}, what="the lengths to settle")
    assert tf.storage.redis.llen(tf.storage.keys.queue("default")) == 0
    assert int(tf.storage.redis.hget(tf.storage.keys.queue_stats, "default:stale")) == 0


@pytest.mark.parametrize("how", ["operator", "SIGTSTP"])
def test_a_quiet_server_finishes_its_running_job_and_takes_no_other(tf, start_worker, how):
    worker = start_worker("--threads", "2")
    slow = jobs.count_run.enqueue(1.5)
    wait_for(lambda: tf.storage.redis.hexists(tf.prefix + "test:runs", slow), what="the slow job to start")
    servers = wait_for(lambda: tf.servers(), what="the server record")
    if how == "operator":
        assert tf.quiet_server(servers[0]["id"])
        assert not tf.quiet_server("no-such-server")
    else:
        worker.signal(signal.SIGTSTP)
    wait_for(lambda: "quiet: taking no new jobs" in worker.output(), 10, "the worker to go quiet")
    later = jobs.count_run.enqueue()
    wait_for(lambda: state_of(tf, slow) == "Succeeded", 10, "the running job to finish")
    wait_for(lambda: tf.servers()[0].get("state") == "quiet", 5, "the server to show as quiet")
    assert state_of(tf, later) == "Enqueued"  # the finishing thread did not take it
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert state_of(tf, later) == "Enqueued"


def test_a_quiet_server_replaces_no_worker_process(tf, start_worker):
    # Given a quiet server of one process
    worker = start_worker("--processes", "1")
    [child] = wait_for(worker.children, what="the worker process")
    [server] = wait_for(lambda: tf.servers(), what="the server record")
    assert tf.quiet_server(server["id"])
    wait_for(lambda: tf.servers()[0].get("state") == "quiet", 10, "the server to show as quiet")
    # When its process dies
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: f"(pid {child}) ended with signal 9" in worker.output(), 10, "the server to see it die")
    # Then it stays without one (it is on its way out): its next heartbeats list no process
    wait_for(lambda: tf.servers()[0].get("workers") == "", 10, "a heartbeat listing no worker process")
    assert worker.children() == [] and worker.proc.poll() is None
    later = jobs.count_run.enqueue()
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0
    assert state_of(tf, later) == "Enqueued"


def fail_in_bulk(tf, ids: list[str], exception_type: str) -> None:
    """Test setup: moves jobs to Failed with pipelined script calls."""
    storage = tf.storage
    for start in range(0, len(ids), 5000):
        storage.transitions([transition_for(jid, Failed(reason="failed for the test", exception_type=exception_type))
                             for jid in ids[start:start + 5000]])


def test_requeue_all_failed_over_100000_jobs_in_slices(tf):
    parked = jobs.record_order.options(queue="parked")
    ids = parked.enqueue_many([(str(i),) for i in range(100_000)])
    fail_in_bulk(tf, ids, "TimeoutError")
    assert tf.storage.redis.zcard(tf.storage.keys.state("Failed")) == 100_000
    calls_before = tf.storage.redis.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
    t0 = time.perf_counter()
    result = tf.requeue_all("Failed")
    elapsed = time.perf_counter() - t0
    calls_after = tf.storage.redis.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)
    assert result.changed == 100_000 and result.calls == calls_after - calls_before == 101
    assert tf.storage.redis.zcard(tf.storage.keys.state("Failed")) == 0
    sample = tf.get_job(ids[12345])
    assert sample is not None and sample.state == "Enqueued" and sample.reason == "Requeued by an operator (bulk)"
    report(f"requeue all Failed: 100,000 jobs in {elapsed:.2f} s, {result.calls} script calls (1,000 jobs per call)")


def test_a_job_that_fails_again_while_requeue_all_goes_on_is_not_requeued_twice(tf):
    # Given 2,500 failed jobs: the walk takes three slices of 1,000
    ids = jobs.record_order.options(queue="parked").enqueue_many([(str(i),) for i in range(2500)])
    fail_in_bulk(tf, ids, "TimeoutError")
    # When requeue_all has requeued its first slice, and 100 of those jobs ran and failed
    # again before its next slice
    began = str(tf.storage.server_time_ms())
    assert tf.storage.bulk("requeue", 1000, 0, "Failed", "", "", "", "", began).changed == 1000
    again = [i for i in ids if state_of(tf, i) == "Enqueued"][:100]
    fail_in_bulk(tf, again, "TimeoutError")
    # Then the rest of the walk requeues the other 1,500 only: those 100 stay Failed, for
    # the operator to see, instead of running a second time on one request
    assert run_bulk(tf.storage, "requeue", "Failed", "", "", "", "", began).changed == 1500
    assert {state_of(tf, i) for i in again} == {"Failed"}


def test_bulk_actions_filter_by_function_exception_and_queue(tf):
    a = jobs.record_order.options(queue="parked")
    b = jobs.record_default.options(queue="parked")
    a_timeouts = a.enqueue_many([("a",)] * 30)
    a_other = a.enqueue_many([("a2",)] * 10)
    b_timeouts = b.enqueue_many([("b",)] * 20)
    fail_in_bulk(tf, a_timeouts + b_timeouts, "TimeoutError")
    fail_in_bulk(tf, a_other, "myapp.errors.SyncError")
    r = tf.requeue_all("failed", function="tests.jobs:record_order", exception="TimeoutError")
    assert (r.changed, r.looked_at) == (30, 60)
    assert {state_of(tf, j) for j in a_timeouts} == {"Enqueued"}
    assert {state_of(tf, j) for j in a_other + b_timeouts} == {"Failed"}
    r = tf.delete_all("Failed", exception="myapp.errors.SyncError")
    assert r.changed == 10 and {state_of(tf, j) for j in a_other} == {"Deleted"}
    assert tf.requeue_all("Failed", queue="elsewhere").changed == 0
    with pytest.raises(ConfigError, match="per queue"):
        tf.delete_all("Enqueued")


def test_move_keeps_order_and_purge_deletes_with_a_reason(tf, start_worker):
    parked = jobs.record_order.options(queue="parked")
    ids = parked.enqueue_many([(f"m{i}",) for i in range(50)])
    tf.delete(ids[3])  # its id stays behind in the queue and must be dropped, not moved
    r = tf.queues.move("parked", "default")
    assert (r.changed, r.looked_at) == (49, 50)
    moved = tf.get_job(ids[0])
    assert moved is not None and moved.queue == "default" and moved.reason == "Moved from queue parked by an operator"
    start_worker("--threads", "1")
    wait_for(lambda: len(traces(tf, "order")) == 49, what="the moved jobs to run")
    assert traces(tf, "order") == [f"m{i}" for i in range(50) if i != 3]
    more = parked.enqueue_many([("p",)] * 7)
    r = tf.queues.purge("parked")
    assert r.changed == 7 and {state_of(tf, j) for j in more} == {"Deleted"}
    assert tf.get_job(more[0]).reason == "Purged from queue parked by an operator"  # type: ignore[union-attr]


def test_bad_queue_input_gives_clear_errors(tf, start_worker):
    with pytest.raises(ConfigError, match="unknown queue 'never-used'"):
        tf.queues.resume("never-used")
    with pytest.raises(ConfigError, match="invalid queue name"):
        tf.queues.pause("Bad Name")
    jobs.record_default.enqueue("x")
    with pytest.raises(ConfigError, match="to itself"):
        tf.queues.move("default", "default")
    for spec, message in [
        ("critical:0,default:1", "weight after ':' must be a whole number from 1 to 1000"),
        ("critical:-2,default:1", "weight after ':' must be a whole number from 1 to 1000"),
        ("critical:x", "weight after ':' must be a whole number"),
        ("critical:5,default", "give every queue a weight"),
        ("critical:5,critical:1", "a queue is listed twice"),
    ]:
        w = start_worker("--queues", spec, ready=False)
        assert w.wait(20) == 2, w.output()
        assert message in w.output()


def test_operator_cli(tf, server, prefix):
    env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "taskfire", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    ids = jobs.record_order.options(queue="parked").enqueue_many([("c",)] * 4)
    fail_in_bulk(tf, ids[:2], "TimeoutError")
    out = cli("queue", "pause", "parked")
    assert out.returncode == 0 and "parked: paused" in out.stdout
    out = cli("queue", "list", "--sample", "0.2")
    assert out.returncode == 0 and "parked" in out.stdout and "paused" in out.stdout
    out = cli("jobs", "requeue", "--state", "failed", "--function", "tests.jobs:record_order")
    assert out.returncode == 0 and "requeued 2 failed job(s)" in out.stdout
    out = cli("queue", "purge", "parked")
    assert out.returncode == 0 and "purged 4 job(s)" in out.stdout
    out = cli("queue", "resume", "nope")
    assert out.returncode == 2 and "unknown queue 'nope'" in out.stderr
    out = cli("server", "list")
    assert out.returncode == 0
