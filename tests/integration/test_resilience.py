"""Nothing lost: shutdowns, killed workers, long jobs, Redis restarts, dropped connections."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis

from taskfire import Taskfire
from taskfire.storage.library import LIBRARY_VERSION
from tests import jobs
from tests.conftest import SERVERS, report, start_server, wait_for
from tests.integration.test_worker import settled


def states_of(tf: Taskfire, ids: list[str]) -> dict[str, int]:
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(tf.storage.keys.job(i), "state")
    counts: dict[str, int] = {}
    for s in pipe.execute():
        name = s.decode() if s else "missing"
        counts[name] = counts.get(name, 0) + 1
    return counts


def processing(tf: Taskfire, job_id: str, timeout: float = 15):
    return settled(tf, job_id, states=("Processing",), timeout=timeout)


def running(tf: Taskfire, job_id: str, times: int = 1, timeout: float = 15) -> None:
    """Waits until the job's body has started `times` times (it counts its runs)."""
    wait_for(lambda: int(tf.storage.redis.hget(tf.prefix + "test:runs", job_id) or 0) >= times,
             timeout, f"job {job_id} to start {times} time(s)")


def test_sigterm_lets_a_running_job_finish_within_the_shutdown_timeout(tf, start_worker):
    w = start_worker("--shutdown-timeout", "20")
    jid = jobs.long_running.enqueue(1.5)
    running(tf, jid)
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    assert tf.get_job(jid).state == "Succeeded"
    assert "stopped (0 job(s) returned to their queue)" in w.output()


def test_sigterm_requeues_a_job_still_running_at_the_shutdown_timeout(tf, start_worker):
    w = start_worker("--shutdown-timeout", "1")
    jid = jobs.sleeps_on_first_run.enqueue(30)
    running(tf, jid)
    started = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(15) == 0
    report(f"SIGTERM with a job past a 1 s shutdown timeout: worker exited after {time.monotonic() - started:.2f} s")
    j = tf.get_job(jid)
    assert j.state == "Enqueued" and j.reason == "Requeued: its worker shut down before the job finished"
    # The next worker runs it again from the start.
    start_worker()
    j = settled(tf, jid)
    assert (j.state, j.result) == ("Succeeded", 2)


def test_a_job_watching_its_token_stops_on_shutdown_and_is_requeued(tf, start_worker):
    w = start_worker("--shutdown-timeout", "30")
    jid = jobs.sleep_cooperatively.enqueue(60)
    wait_for(lambda: tf.storage.redis.llen(tf.prefix + "test:started"), 5)
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0  # (its shutdown timeout is 30 s: the job ended the wait)
    assert tf.storage.redis.lrange(tf.prefix + "test:cancelled", 0, -1) == [b"shutdown"]
    j = tf.get_job(jid)
    assert j.state == "Enqueued" and j.reason == "Requeued: the job stopped for its worker's shutdown"
    assert j.retry_count == 0


def test_a_second_signal_stops_at_once(tf, start_worker):
    w = start_worker("--shutdown-timeout", "60")
    jid = jobs.sleeps_on_first_run.enqueue(60)
    running(tf, jid)
    w.signal(signal.SIGINT)
    wait_for(lambda: "stopping gracefully" in w.output(), 5)
    w.signal(signal.SIGINT)
    assert w.wait(15) == 0
    assert tf.get_job(jid).state == "Enqueued"


def test_a_sigkilled_worker_process_is_replaced_and_its_job_recovered(tf, start_worker):
    w = start_worker("--threads", "1")
    jid = jobs.sleeps_on_first_run.enqueue(60)
    running(tf, jid)
    [child] = w.children()
    killed_at = time.monotonic()
    import os
    os.kill(child, signal.SIGKILL)
    j = settled(tf, jid, timeout=20)
    report(f"SIGKILLed worker (lease 2 s): its job finished again {time.monotonic() - killed_at:.2f} s later")
    assert (j.state, j.result) == ("Succeeded", 2)
    requeue = [e for e in j.history if e.state == "Enqueued"][-1]
    assert requeue.reason == "Requeued: its worker stopped renewing the lease"
    assert requeue.data["recoveries"] == 1
    assert wait_for(lambda: (c := w.children()) and c != [child] and c, 10)


def test_jobs_of_a_vanished_host_are_recovered_by_another(tf, start_worker):
    doomed = start_worker("--threads", "2")
    ids = [jobs.sleeps_on_first_run.enqueue(60) for _ in range(2)]
    for i in ids:
        running(tf, i)
    doomed.kill()  # the whole process group, as if the host lost power
    start_worker()
    for i in ids:
        assert settled(tf, i, timeout=20).result == 2


def test_a_job_that_keeps_killing_its_worker_fails_after_max_recoveries(tf, start_worker):
    w = start_worker("--threads", "1", "--max-recoveries", "1")
    jid = jobs.long_running.enqueue(60)
    import os
    killed: set[int] = set()
    for attempt in (1, 2):
        running(tf, jid, attempt, timeout=20)
        [child] = wait_for(lambda: [c for c in w.children() if c not in killed], 10)
        os.kill(child, signal.SIGKILL)
        killed.add(child)
    j = settled(tf, jid, states=("Failed",), timeout=20)
    assert j.exception.type == "taskfire.WorkerLost" and "lost 2 times" in j.reason


def test_a_job_longer_than_its_lease_runs_once_while_its_worker_lives(tf, start_worker):
    env = {"TASKFIRE_LEASE_TIMEOUT": "1"}
    start_worker("--threads", "1", env=env)
    start_worker("--threads", "1", env=env)  # would take the job if its lease lapsed
    jid = jobs.long_running.enqueue(5)
    j = settled(tf, jid, timeout=20)
    assert j.state == "Succeeded"
    assert [e.state for e in j.history] == ["Enqueued", "Processing", "Succeeded"]
    assert tf.storage.redis.hget(tf.prefix + "test:runs", jid) == b"1"


def test_five_thousand_jobs_survive_a_worker_process_killed_every_400_jobs(tf, start_worker):
    # Given 5,000 jobs and a server with 3 worker processes
    # (each job holds its thread 20 ms, so the run lasts long enough for many kills)
    ids = jobs.count_run.enqueue_many([(0.02,) for _ in range(5000)])
    w = start_worker("--processes", "3", "--threads", "4")
    started = time.monotonic()
    import os
    # When one of its live processes is SIGKILLed each time another 400 jobs succeeded
    killed: list[int] = []
    for step in range(1, 12):
        wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) >= 400 * step, 120,
                 f"{400 * step} jobs to succeed", interval=0.1)
        live = wait_for(lambda: [c for c in w.children() if c not in killed], 20, "a live worker process")
        os.kill(live[step % len(live)], signal.SIGKILL)
        killed.append(live[step % len(live)])
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) == 5000, 180, "every job to succeed", interval=0.5)
    elapsed = time.monotonic() - started
    # Then the server saw each kill and replaced the process; every job succeeded, each
    # ran at least once
    wait_for(lambda: all(f"(pid {pid}) ended with signal 9" in w.output() for pid in killed), 10,
             "the server to report each killed process")
    assert len(killed) == 11 and len(set(killed)) == 11
    runs = {k.decode(): int(v) for k, v in tf.storage.redis.hgetall(tf.prefix + "test:runs").items()}
    assert states_of(tf, ids) == {"Succeeded": 5000}
    assert set(runs) == set(ids)
    twice = sum(1 for n in runs.values() if n > 1)
    report(f"kill test: 5,000 jobs, 3 processes x 4 threads, "
           f"{len(killed)} SIGKILLs, {elapsed:.1f} s, {twice} jobs ran twice ({sum(runs.values()) - 5000} extra runs)")


@pytest.fixture(params=SERVERS)
def restartable(request, tmp_path):
    """A server of our own that the test may kill and restart on the same port."""
    s = start_server(request.param, tmp_path / "data", appendfsync="always")
    yield s
    s.stop()


def test_redis_killed_and_restarted_under_load_loses_nothing(restartable, prefix, start_worker_on):
    tf = Taskfire(restartable.url, prefix=prefix)
    # (appendfsync always makes every write durable before its reply, and slow: few jobs)
    ids = jobs.count_run.enqueue_many([() for _ in range(1000)])
    w = start_worker_on(restartable.url, "--processes", "2", "--threads", "4")
    wait_for(lambda: states_of(tf, ids).get("Succeeded", 0) > 100, 30, "some progress")
    # Redis dies without saving, then comes back on the same port from its AOF
    restartable.kill()
    # ... long enough for the workers to see it (an outage they must ride out)
    wait_for(lambda: "Redis is unavailable" in w.output(), 20, "the workers to see Redis gone")
    restartable.start()
    more = jobs.count_run.enqueue_many([() for _ in range(200)])
    all_ids = ids + more
    wait_for(lambda: states_of(tf, all_ids).get("Succeeded", 0) == len(all_ids), 90,
             "every job to succeed after the restart")
    assert "Redis is back" in w.output()
    runs = tf.storage.redis.hgetall(prefix + "test:runs")
    report(f"{restartable.binary.name} SIGKILLed and restarted under load: {len(all_ids)} jobs all Succeeded, "
           f"{sum(1 for v in runs.values() if int(v) > 1)} ran twice")


def test_a_server_that_forgot_the_scripts_is_given_them_again(restartable, prefix, start_worker_on):
    # Given a worker at work on a server that knows taskfire's functions
    tf = Taskfire(restartable.url, prefix=prefix)
    r = redis.Redis.from_url(restartable.url)
    before = jobs.count_run.enqueue_many([() for _ in range(50)])
    start_worker_on(restartable.url, "--threads", "4")
    wait_for(lambda: states_of(tf, before).get("Succeeded", 0) == 50, 30, "the first jobs")
    assert r.function_list()
    # When the server forgets them (a restart without persistence does that)
    r.function_flush()
    # Then a single enqueue, a batch (one MULTI: all of it or nothing) and the worker's
    # next calls load them again, and nothing runs twice
    one = jobs.count_run.enqueue()
    with tf.batch() as b:
        batched = [b.enqueue(jobs.count_run) for _ in range(20)]
    wait_for(lambda: states_of(tf, [one, *batched]).get("Succeeded", 0) == 21, 30, "the jobs made after the flush")
    libraries = [dict(zip(lib[::2], lib[1::2]))[b"library_name"] for lib in r.function_list()]
    assert libraries == [f"taskfire_{LIBRARY_VERSION}".encode()]
    assert tf.get_batch(b.id).succeeded == 20
    runs = tf.storage.redis.hgetall(prefix + "test:runs")
    assert len(runs) == 71 and set(runs.values()) == {b"1"}


def succeeded_despite_drops(tf: Taskfire, ids: list[str]) -> bool:
    try:
        return states_of(tf, ids).get("Succeeded", 0) == len(ids)
    except redis.ConnectionError:
        return False  # the test's own connection was dropped too


def test_dropped_connections_do_not_stop_a_worker(tf, server, start_worker):
    ids = jobs.count_run.enqueue_many([(0.005,) for _ in range(2000)])
    start_worker("--processes", "2", "--threads", "4")
    admin = redis.Redis.from_url(server.url)
    stop = threading.Event()
    kills = []

    def drop_connections() -> None:
        while not stop.wait(0.2):
            kills.append(admin.client_kill_filter(_type="normal", skipme=True))

    dropper = threading.Thread(target=drop_connections)
    dropper.start()
    try:
        wait_for(lambda: succeeded_despite_drops(tf, ids), 90, "all jobs despite dropped connections")
    finally:
        stop.set()
        dropper.join()
    assert sum(kills) > 0


def test_a_stopping_worker_takes_no_new_job(tf, start_worker):
    # Given a single-threaded worker busy with one job and more jobs waiting
    w = start_worker("--threads", "1", "--shutdown-timeout", "20")
    busy = jobs.long_running.enqueue(1.5)
    running(tf, busy)
    waiting = jobs.add.enqueue_many([(i, i) for i in range(5)])
    # When it is told to stop
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    # Then it finished its job and left the others untouched in their queue
    assert tf.get_job(busy).state == "Succeeded"
    for jid in waiting:
        assert [e.state for e in tf.get_job(jid).history] == ["Enqueued"]
