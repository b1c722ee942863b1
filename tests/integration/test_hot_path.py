"""A worker's hot path on real servers: its threads' outcomes stored together (group
commit: finisher.py, finish.lua), and an idle worker's wait with its next fetch behind it."""

from __future__ import annotations

import logging
import threading

import msgspec
import pytest
import redis

from taskfire import EnqueueError
from taskfire.client import transition_for
from taskfire.creation import build
from taskfire.server.config import WorkerConfig
from taskfire.server.finisher import Finished, Finisher
from taskfire.states import PROCESSING, Enqueued, Scheduled, Succeeded
from taskfire.storage import FetchedJob
from taskfire.server.worker import WorkerProcess
from tests import jobs
from tests.conftest import wait_for


@pytest.fixture
def worker(tf):
    """A worker process's parts, in this process: nothing runs until a test calls them."""
    w = WorkerProcess(WorkerConfig(redis_url=tf.url, prefix=tf.prefix), "w1")
    yield w
    w.client.close()


def outcome_for(name: str, wants_next: bool = True) -> Finished:
    job = FetchedJob(name, "token", "fn", b"", "default", b"", 0, 0, 0)
    return Finished(job, transition_for(name, Succeeded()), wants_next)


def test_outcomes_that_finish_while_a_call_is_on_its_way_go_together_in_the_next():
    sent: list[list[str]] = []
    first_sending, release_first = threading.Event(), threading.Event()

    def send(group: list[Finished]) -> None:
        sent.append([o.job.id for o in group])
        if len(sent) == 1:
            first_sending.set()
            assert release_first.wait(10)
        for o in group:
            o.code = 1

    finisher = Finisher(send)
    outcomes = {name: outcome_for(name) for name in "abc"}
    first = threading.Thread(target=finisher.store, args=(outcomes["a"],))
    first.start()
    assert first_sending.wait(10)
    # b and c finish while a's call is on its way
    others = [threading.Thread(target=finisher.store, args=(outcomes[n],)) for n in "bc"]
    for t in others:
        t.start()
    wait_for(lambda: len(finisher._lanes[0].pending) == 2, 10, "b and c to wait for a's call")
    release_first.set()
    for t in (first, *others):
        t.join(10)
    assert sent == [["a"], ["b", "c"]]
    assert all(o.stored and o.code == 1 for o in outcomes.values())


def test_a_thread_alone_sends_its_outcome_at_once():
    sent: list[list[str]] = []
    finisher = Finisher(lambda group: sent.append([o.job.id for o in group]))
    finisher.store(outcome_for("a"))
    finisher.store(outcome_for("b"))
    assert sent == [["a"], ["b"]]


def test_a_shard_whose_call_hangs_holds_back_only_its_own_outcomes():
    # A shard's primary failing over: its call waits; another shard's outcome goes on
    sent: list[list[str]] = []
    a_sending, release_a = threading.Event(), threading.Event()

    def send(group: list[Finished]) -> None:
        sent.append([o.job.id for o in group])
        if group[0].job.id.startswith("a"):
            a_sending.set()
            assert release_a.wait(10)
        for o in group:
            o.code = 1

    finisher = Finisher(send, lane_of=lambda f: f.job.id[0])
    a1, a2, b1 = outcome_for("a1"), outcome_for("a2"), outcome_for("b1")
    first = threading.Thread(target=finisher.store, args=(a1,))
    first.start()
    assert a_sending.wait(10)
    second = threading.Thread(target=finisher.store, args=(a2,))
    second.start()
    wait_for(lambda: len(finisher._lanes["a"].pending) == 1, 10, "a2 to wait for a1's call")
    finisher.store(b1)  # returns while a1's call is still on its way
    assert b1.stored and b1.code == 1 and not a1.stored
    release_a.set()
    for t in (first, second):
        t.join(10)
    assert sent == [["a1"], ["b1"], ["a2"]]
    assert a1.code == a2.code == 1


def test_one_call_stores_several_outcomes_and_fetches_the_next_jobs(tf, worker):
    ids = [jobs.add.enqueue(i, i) for i in range(5)]
    running = worker.storage.fetch(worker.request(3)).jobs
    assert [j.id for j in running] == ids[:3]
    changes = [transition_for(j.id, Succeeded(), (PROCESSING,), token=j.token) for j in running]
    changes[1] = transition_for(running[1].id, Succeeded(), (PROCESSING,), token="not-its-lease")
    results, fetched = worker.storage.finish(changes, worker.request(2))
    assert results == [(1, "Processing"), (-2, "Processing"), (1, "Processing")]
    assert [j.id for j in fetched.jobs] == ids[3:]
    assert [tf.get_job(i).state for i in ids] == ["Succeeded", "Processing", "Succeeded",
                                                  "Processing", "Processing"]


def test_one_call_counts_indexes_and_registers_queues_once_for_all_its_jobs(tf, worker):
    r, keys = tf.storage.redis, tf.storage.keys
    # 1,500 jobs in one call, to two queues
    jobs.record_low.enqueue_many([(str(i),) for i in range(500)])
    default = jobs.add.enqueue_many([(i, i) for i in range(1000)])
    assert r.smembers(keys.queues) == {b"low", b"default"}
    assert r.hgetall(keys.prefix + "queue-stats") == {b"low:in": b"500", b"default:in": b"1000"}
    assert (r.lrange(keys.wake("low"), 0, -1), r.lrange(keys.wake("default"), 0, -1)) == ([b"1"], [b"1"])
    assert r.lrange(keys.queue("default"), -2, -1) == [default[1].encode(), default[0].encode()]  # FIFO
    # three outcomes stored in one call: counted and indexed as three
    running = worker.storage.fetch(worker.request(3)).jobs
    worker.storage.finish([transition_for(j.id, Succeeded(), (PROCESSING,), token=j.token) for j in running],
                          worker.request(0))
    hour = int(r.time()[0]) // 3600
    counts = [r.get(keys.prefix + "stats:succeeded"), r.get(keys.prefix + f"stats:succeeded:{hour}"),
              r.get(keys.prefix + f"stats:succeeded:{hour - 1}")]  # (the hour may have turned meanwhile)
    assert counts[0] == b"3" and b"3" in counts[1:]
    assert r.lrange(keys.state("Succeeded"), 0, -1) == [j.id.encode() for j in reversed(running)]
    assert r.hget(keys.prefix + "queue-stats", "default:out") == b"3"


def test_a_change_redis_refuses_harms_no_other_outcome_of_its_group(tf, worker, caplog):
    good_id, bad_id = jobs.add.enqueue(1, 1), jobs.add.enqueue(2, 2)
    running = worker.storage.fetch(worker.request(2)).jobs
    worker._hold(running)
    good, bad = running
    # A due time the script cannot read makes the whole call fail
    refused = msgspec.structs.replace(
        transition_for(bad.id, Scheduled(delay=1), (PROCESSING,), token=bad.token), due="+not-a-number")
    group = [Finished(good, transition_for(good.id, Succeeded(), (PROCESSING,), token=good.token), False),
             Finished(bad, refused, False)]
    with caplog.at_level(logging.ERROR, logger="taskfire.worker"):
        worker._store_outcomes(group)
    # (a script's writes before its error stay, so the failed group call may have
    # stored the good outcome already: its own call then finds it so)
    assert (group[0].code, group[0].old) in ((1, "Processing"), (-1, "Succeeded"))
    assert group[1].code is None
    assert tf.get_job(good_id).state == "Succeeded"
    assert tf.get_job(bad_id).state == "Processing"  # its lease lapses and it runs again
    assert worker.held == {}
    assert f"job {bad_id} (tests.jobs:add): Redis refused its outcome" in caplog.text


def test_the_fetch_sent_behind_an_idle_wait_takes_the_job_that_ended_the_wait(tf, worker):
    results: list = []
    waiting = threading.Thread(target=lambda: results.append(
        worker.storage.wait_then_fetch(worker.wake_keys, 8, worker.request(2))))
    waiting.start()
    wait_for(lambda: tf.storage.redis.info("clients")["blocked_clients"] == 1, 10, "the worker to block")
    job_id = jobs.add.enqueue(1, 2)
    waiting.join(10)
    assert [j.id for j in results[0].jobs] == [job_id]
    assert tf.get_job(job_id).state == "Processing"


def test_an_idle_wait_that_times_out_still_fetches_what_became_due(tf, worker):
    due = jobs.add.schedule(0.3, 1, 2)
    tf.storage.redis.delete(tf.storage.keys.wake("default"))  # the wake-up its scheduling left
    empty = worker.storage.fetch(worker.request(1))
    assert empty.jobs == [] and empty.next_wake_ms is not None
    wait = (empty.next_wake_ms - empty.now_ms) / 1000
    fetched = worker.storage.wait_then_fetch(worker.wake_keys, wait, worker.request(1))
    assert [j.id for j in fetched.jobs] == [due]


def test_a_job_a_call_puts_back_in_its_queue_is_there_for_the_same_calls_fetch(tf, worker):
    # Pushes to queue lists are gathered during a call; a fetch in the same call must see them
    job_id = jobs.add.enqueue(1, 2)
    [running] = worker.storage.fetch(worker.request(1)).jobs
    back = transition_for(job_id, Enqueued(front=True, reason="given back"), (PROCESSING,), token=running.token)
    results, fetched = worker.storage.finish([back], worker.request(1))
    assert results == [(1, "Processing")]
    assert [j.id for j in fetched.jobs] == [job_id]
    assert tf.storage.redis.llen(tf.storage.keys.queue("default")) == 0


def test_a_repeated_bulk_call_creates_only_the_jobs_it_lacks(tf):
    # A call retried after a dropped connection repeats its ids; here the first attempt
    # reached Redis for two of three jobs
    made = [build(jobs.add, (i, i), {})[0] for i in range(3)]
    tf.storage.create(made[:2])
    assert tf.storage.create(made, repeated=True) == {}
    assert tf.queue_lengths() == {"default": 3}
    assert [len(tf.get_job(j.id).history) for j in made] == [1, 1, 1]
    assert tf.storage.redis.hget(tf.storage.keys.prefix + "queue-stats", "default:in") == b"3"


def test_a_call_that_fails_half_way_leaves_what_it_created_whole(tf):
    # Redis keeps a script's writes up to its error: the jobs created before it must be
    # in their queue, counted and announced, not records no worker will ever find
    good = build(jobs.add, (1, 1), {})[0]
    bad = msgspec.structs.replace(build(jobs.add, (2, 2), {})[0], due="+not-a-number")
    with pytest.raises(EnqueueError) as failed:
        tf.storage.create([good, bad])
    # (both ids: which of the call's jobs were made before the error, Redis does not say)
    assert failed.value.maybe_stored == [good.id, bad.id] and isinstance(failed.value.__cause__, redis.ResponseError)
    r, keys = tf.storage.redis, tf.storage.keys
    assert r.lrange(keys.queue("default"), 0, -1) == [good.id.encode()]
    assert r.hget(keys.prefix + "queue-stats", "default:in") == b"1"
    assert r.lrange(keys.wake("default"), 0, -1) == [b"1"]
    assert tf.get_job(good.id).state == "Enqueued"


def run_to(worker, tf, state) -> str:
    """Enqueues a job, fetches it as `worker` and stores `state` as its outcome."""
    jid = jobs.echo.enqueue(1)
    [running] = worker.storage.fetch(worker.request(1)).jobs
    assert running.id == jid
    worker.storage.finish([transition_for(jid, state, (PROCESSING,), token=running.token)], worker.request(0))
    return jid


def test_a_job_on_the_happy_path_keeps_its_history_in_its_record(tf, worker):
    # Given a job that ran once and succeeded
    jid = run_to(worker, tf, Succeeded(duration_ms=1.5, latency_ms=3))
    r, k = tf.storage.redis, tf.storage.keys
    # Then it has no history list, its record stays a small hash, and its history reads
    # as if it had one
    assert not r.exists(k.history(jid))
    assert r.object("encoding", k.job(jid)) == b"listpack"
    done = tf.get_job(jid)
    assert [(e.state, e.reason, e.data) for e in done.history] == [
        ("Enqueued", None, {"queue": "default"}), ("Processing", None, {"worker": "w1"}),
        ("Succeeded", None, {"duration_ms": 1.5, "latency_ms": 3})]
    assert done.started_at == done.history[1].at and done.finished_at == done.history[2].at
    # When it leaves the happy path (an operator requeues it), its list is written out:
    # the same entries, then the new one
    assert tf.requeue(jid, reason="again")
    again = tf.get_job(jid)
    assert r.llen(k.history(jid)) == 4
    assert [(e.state, e.at, e.data) for e in again.history[:3]] == [(e.state, e.at, e.data) for e in done.history]
    assert (again.history[3].state, again.history[3].reason) == ("Enqueued", "again")


def test_a_final_state_with_a_reason_reads_the_same_from_the_record(tf, worker):
    from taskfire import Deleted
    jid = run_to(worker, tf, Deleted(reason="Cancelled by request: the job stopped"))
    job = tf.get_job(jid)
    assert not tf.storage.redis.exists(tf.storage.keys.history(jid))
    assert [(e.state, e.reason) for e in job.history] == [
        ("Enqueued", None), ("Processing", None), ("Deleted", "Cancelled by request: the job stopped")]
    assert job.reason == "Cancelled by request: the job stopped"
