"""Continuations, batches, filters, custom states and job parameters, on real servers
with real worker processes."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from examples import waiting_ack
from taskfire import ConfigError, Failed, Succeeded
from taskfire.filters import CreationCancelled, JobFilter, global_filters
from tests import jobs
from tests.conftest import report, state_of, traces, wait_for, wait_state


# -- continuations ---------------------------------------------------------------------


def test_a_chain_runs_in_order_and_each_link_says_what_it_waits_for(tf, start_worker):
    a = jobs.record_order.enqueue("a")
    b = jobs.record_order.continue_with(a, "b")
    c = jobs.record_order.continue_with(b, "c")
    d = tf.continue_with(a, jobs.record_order, "d", on="finished")
    waiting = tf.get_job(c)
    assert waiting is not None and waiting.state == "Awaiting"
    assert waiting.parent_id == b and waiting.parent_kind == "job" and waiting.continue_on == "succeeded"
    assert waiting.reason == f"Waiting for job {b} to succeed"
    assert tf.get_job(a).continuations == [b, d]  # type: ignore[union-attr]
    assert c in tf.job_ids_in_state("Awaiting")
    start_worker()
    wait_state(tf, c, "Succeeded")
    wait_state(tf, d, "Succeeded")
    seen = traces(tf, "order")
    assert seen.index("a") < seen.index("b") < seen.index("c") and seen.index("a") < seen.index("d")
    done = tf.get_job(c)
    assert done is not None and [e.state for e in done.history] == ["Awaiting", "Enqueued", "Processing", "Succeeded"]
    assert done.history[1].reason == f"Its parent job {b} succeeded"
    assert tf.get_job(a).continuations == []  # type: ignore[union-attr]
    assert c not in tf.job_ids_in_state("Awaiting")


def test_a_failed_parent_holds_its_only_on_success_continuation_until_it_succeeds(tf, start_worker):
    start_worker()
    parent = jobs.fails_until_fixed.enqueue("parent")
    on_success = jobs.record_order.continue_with(parent, "on-success")
    on_finish = tf.continue_with(parent, jobs.record_order, "on-finish", on="finished")
    wait_state(tf, parent, "Failed")
    wait_state(tf, on_finish, "Succeeded")  # Failed for good counts as finished
    held = tf.get_job(on_success)
    assert held is not None and held.state == "Awaiting" and held.parent_id == parent
    assert held.reason == f"Waiting for job {parent} to succeed"
    assert "on-success" not in traces(tf, "order")
    # The operator fixes the cause and requeues the parent: now the continuation runs.
    tf.storage.redis.set(tf.prefix + "test:fixed", 1)
    assert tf.requeue(parent)
    wait_state(tf, parent, "Succeeded")
    wait_state(tf, on_success, "Succeeded")
    assert traces(tf, "order").count("on-finish") == 1  # not released a second time


def test_a_deleted_parent_deletes_only_on_success_continuations_and_releases_the_others(tf):
    parent = tf.enqueue(jobs.record_order.options(queue="nobody-listens"), "parent")
    on_success = jobs.record_order.continue_with(parent, "x")
    grandchild = jobs.record_order.continue_with(on_success, "y")
    on_finish = tf.continue_with(parent, jobs.record_order, "z", on="finished")
    assert tf.delete(parent)
    for jid in (on_success, grandchild):
        gone = tf.get_job(jid)
        assert gone is not None and gone.state == "Deleted"
        assert "did not succeed (deleted), so it will not run" in (gone.reason or "")
    assert state_of(tf, on_finish) == "Enqueued"
    assert tf.get_job(on_finish).reason == f"Its parent job {parent} deleted"  # type: ignore[union-attr]


def test_continuing_a_finished_parent_enqueues_at_once_and_a_missing_parent_is_refused(tf):
    parent = tf.enqueue(jobs.record_order.options(queue="nobody-listens"), "p")
    assert tf.change_state(parent, Succeeded())
    child = jobs.record_order.continue_with(parent, "late")
    assert state_of(tf, child) == "Enqueued"
    assert [e.state for e in tf.get_job(child).history] == ["Awaiting", "Enqueued"]  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no such job"):
        jobs.record_order.continue_with("0" * 24, "orphan")
    with pytest.raises(ConfigError, match="on must be 'succeeded' or 'finished'"):
        tf.continue_with(parent, jobs.record_order, "x", on="whenever")


def test_a_chain_of_500_is_settled_without_deep_recursion(tf):
    root = tf.enqueue(jobs.record_order.options(queue="nobody-listens"), "root")
    chain = [root]
    for i in range(500):
        chain.append(jobs.record_order.continue_with(chain[-1], f"link-{i}"))
    assert tf.delete(root)  # one script settles all 500 links
    assert all(state_of(tf, j) == "Deleted" for j in chain[1:])


def test_continuations_added_while_parents_finish_are_never_lost(tf, start_worker):
    start_worker("--threads", "8")
    parents = [jobs.count_run.enqueue(random.random() / 50) for _ in range(300)]  # runs of 0-20 ms
    children: list[str] = []
    lock = threading.Lock()

    def attach(share: list[str]) -> None:
        for p in share:
            time.sleep(random.random() / 250)  # land before, during and after the parent's finish
            cid = tf.continue_with(p, jobs.count_run, on="finished")
            with lock:
                children.append(cid)

    threads = [threading.Thread(target=attach, args=(parents[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = tf.prefix + "test:runs"
    wait_for(lambda: all(tf.storage.redis.hexists(runs, c) for c in children), 60, "every continuation to run")
    states = {state_of(tf, c) for c in children}
    assert states == {"Succeeded"}
    histories = [tf.get_job(c).history for c in children]  # type: ignore[union-attr]
    at_once = sum(1 for h in histories if h[1].at == h[0].at)  # released by the script that created it
    report(f"continuation race: 300 parents finishing while 300 continuations were attached: all ran "
           f"once ({300 - at_once} released by their parent's finish, {at_once} created after it)")


# -- batches ---------------------------------------------------------------------------


def test_a_block_that_raises_creates_nothing(tf):
    with pytest.raises(RuntimeError):
        with tf.batch() as b:
            ids = [b.enqueue(jobs.record_order, str(i)) for i in range(5)]
            raise RuntimeError("changed my mind")
    assert tf.get_batch(b.id) is None
    assert all(tf.get_job(i) is None for i in ids)
    assert sum(tf.queue_lengths().values()) == 0


def test_nested_batches_finish_bottom_up_then_their_continuations_run(tf, start_worker):
    with tf.batch() as outer:
        outer_ids = [outer.enqueue(jobs.record_order, f"outer-{i}") for i in range(3)]
        with outer.batch() as inner:
            inner_ids = [inner.enqueue(jobs.record_order, f"inner-{i}") for i in range(3)]
        inner.continue_with(jobs.record_order, "inner-done")
        outer.continue_with(jobs.record_order, "outer-done")
    started = tf.get_batch(outer.id)
    assert started is not None and (started.total, started.pending, started.state) == (4, 4, "Started")
    assert set(tf.batch_members(outer.id)) == {*outer_ids, inner.id}
    assert tf.get_job(inner_ids[0]).batch_id == inner.id  # type: ignore[union-attr]
    start_worker()
    # (both continuations may be released by one call and run side by side: wait for both)
    wait_for(lambda: {"inner-done", "outer-done"} <= set(traces(tf, "order")), what="both continuations")
    seen = traces(tf, "order")
    # Each continuation ran after every job of its batch, the outer one after the inner
    # batch's jobs too (the two continuations are released together and may run in any order).
    assert max(seen.index(f"inner-{i}") for i in range(3)) < seen.index("inner-done")
    assert max(seen.index(f"{b}-{i}") for b in ("inner", "outer") for i in range(3)) < seen.index("outer-done")
    inner_done, outer_done = tf.get_batch(inner.id), tf.get_batch(outer.id)
    assert inner_done is not None and outer_done is not None
    assert (outer_done.state, outer_done.outcome, outer_done.succeeded, outer_done.pending) == ("Finished", "succeeded", 4, 0)
    assert inner_done.parent_batch_id == outer.id and inner_done.finished_at <= outer_done.finished_at  # type: ignore[operator]


def test_a_batch_with_a_failed_job_holds_its_only_on_success_continuation(tf, start_worker):
    with tf.batch() as b:
        b.enqueue(jobs.record_order, "ok")
        bad = b.enqueue(jobs.fails_until_fixed, "bad")
    on_success = tf.continue_batch_with(b.id, jobs.record_order, "all-good")
    on_finish = tf.continue_batch_with(b.id, jobs.record_order, "all-done", on="finished")
    start_worker()
    wait_state(tf, on_finish, "Succeeded")
    failed = tf.get_batch(b.id)
    assert failed is not None and (failed.outcome, failed.succeeded, failed.failed) == ("failed", 1, 1)
    assert state_of(tf, on_success) == "Awaiting"
    tf.storage.redis.set(tf.prefix + "test:fixed", 1)
    tf.requeue(bad)
    wait_state(tf, on_success, "Succeeded")
    assert tf.get_batch(b.id).outcome == "succeeded"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="no such batch"):
        tf.continue_batch_with("f" * 24, jobs.record_order, "nothing")


def test_a_10000_job_batch_finishes_under_worker_kills_and_its_continuation_runs_once(tf, start_worker):
    t0 = time.perf_counter()
    with tf.batch() as b:
        for _ in range(10_000):
            b.enqueue(jobs.count_run)
    created_s = time.perf_counter() - t0
    summary = tf.continue_batch_with(b.id, jobs.count_run, on="finished")
    worker = start_worker("--processes", "2", "--threads", "4")
    runs = tf.prefix + "test:runs"
    kills = 0
    deadline = time.monotonic() + 120
    while tf.storage.redis.hlen(runs) < 9_000 and time.monotonic() < deadline:
        wait_for(lambda: tf.storage.redis.hlen(runs) >= 2_000 * (kills + 1) or time.monotonic() > deadline,
                 60, "progress between kills")
        if kills < 4:
            children = worker.children()
            if children:
                os.kill(random.choice(children), signal.SIGKILL)
                kills += 1
        else:
            break
    wait_for(lambda: tf.storage.redis.hexists(runs, summary), 120, "the batch continuation")
    done = tf.get_batch(b.id)
    assert done is not None and (done.succeeded, done.total, done.outcome) == (10_000, 10_000, "succeeded")
    members = tf.batch_members(b.id)
    assert len(members) == 10_000
    counts = tf.storage.redis.hgetall(runs)
    assert all(counts.get(m.encode()) for m in members)  # every member ran
    assert int(counts[summary.encode()]) == 1
    repeats = sum(int(v) - 1 for v in counts.values())
    report(f"batch: 10,000 jobs created in {created_s * 1000:.0f} ms (one MULTI); "
           f"finished under {kills} SIGKILLs of worker processes, continuation ran once, {repeats} job re-runs")


# -- filters, custom states, parameters ---------------------------------------------------


def test_filters_run_in_order_around_the_run_and_its_state_changes(tf, start_worker):
    start_worker()
    jid = jobs.filtered_job.enqueue("work")
    assert tf.get_job(jid).params == {"tenant": "acme"}  # type: ignore[union-attr]  # set by on_creating
    wait_state(tf, jid, "Succeeded")
    assert tf.get_job(jid).result == "ran for acme"  # type: ignore[union-attr]
    hooks = wait_for(lambda: (h := [v.decode() for v in tf.storage.redis.lrange(tf.prefix + "test:hooks", 0, -1)])
                     and len(h) >= 15 and h, what="every hook")
    assert hooks == [
        "global.performing", "first.performing", "second.performing",
        "second.performed", "first.performed", "global.performed",
        "global.election", "first.election", "second.election",
        "second.unapplied", "first.unapplied", "global.unapplied",
        "second.applied", "first.applied", "global.applied",
    ]


def test_a_filter_can_cancel_a_run_handle_an_exception_or_cancel_a_creation(tf, start_worker):
    start_worker()
    blocked = jobs.filtered_job.enqueue("blocked")
    handled = jobs.filtered_job.enqueue("raise")
    failing = jobs.filtered_job.enqueue("fail")
    wait_state(tf, blocked, "Deleted")
    assert "Gatekeeper cancelled it: blocked by policy" in (tf.get_job(blocked).reason or "")  # type: ignore[union-attr]
    wait_state(tf, handled, "Succeeded")
    assert tf.get_job(handled).result == "handled"  # type: ignore[union-attr]
    wait_state(tf, failing, "Failed")

    class NoWeekendImports(JobFilter):
        def on_creating(self, ctx):
            if ctx.job_name.endswith("record_order"):
                ctx.cancel("imports are closed")

    refuse = global_filters.add(NoWeekendImports())
    try:
        with pytest.raises(CreationCancelled, match="cancelled by NoWeekendImports: imports are closed"):
            jobs.record_order.enqueue("nope")
    finally:
        global_filters.remove(refuse)
    assert sum(tf.queue_lengths().values()) == 0


def test_waiting_ack_end_to_end(tf, start_worker):
    start_worker(modules=("examples.waiting_ack",))
    ids = [waiting_ack.send_notification.enqueue(i, f"message {i}") for i in range(3)]
    for jid in ids:
        wait_state(tf, jid, "WaitingAck")
    assert set(tf.job_ids_in_state("WaitingAck")) == set(ids)
    job = tf.get_job(ids[0])
    assert job is not None and job.result == {"user_id": 0, "queued": True}
    assert [e.state for e in job.history][-2:] == ["Succeeded", "WaitingAck"]  # the candidate it replaced
    assert job.history[-1].data == {"sent_to": "notifications"}

    acked, rejected, dropped = ids
    assert tf.change_state(acked, Succeeded(reason="Acknowledged", latency_ms=840), "WaitingAck",
                           result={"receipt": "r-42"})
    assert tf.change_state(rejected, Failed(reason="Rejected by the service", exception_type="Rejected",
                                            exception_message="bad address"), "WaitingAck")
    assert tf.delete(dropped)
    assert not tf.change_state(acked, Succeeded(), "WaitingAck")  # no longer waiting
    done = tf.get_job(acked)
    assert done is not None and done.state == "Succeeded" and done.result == {"receipt": "r-42"}
    assert done.history[-1].data["latency_ms"] == 840
    failed = tf.get_job(rejected)
    assert failed is not None and failed.exception is not None and failed.exception.message == "bad address"
    assert tf.job_ids_in_state("WaitingAck") == []
    counted = int(tf.storage.redis.get(tf.storage.keys.stat("Succeeded")) or 0)
    assert counted == 1  # the replaced candidates were not counted as successes


def test_job_parameters_survive_retries_and_are_readable_by_clients(tf, start_worker):
    start_worker()
    jid = jobs.remembers_across_retries.enqueue()
    wait_state(tf, jid, "Succeeded")
    job = tf.get_job(jid)
    assert job is not None and job.result == "resumed from 40" and job.params == {"progress": {"done": 40}}
    tf.set_job_param(jid, "note", "checked by ops")
    assert tf.get_job_param(jid, "note") == "checked by ops"
    assert tf.get_job_param(jid, "missing", "default") == "default"
    with pytest.raises(ConfigError, match="job parameter name"):
        tf.set_job_param(jid, "bad name!", 1)
    with pytest.raises(TypeError, match="job parameter 'obj'"):
        tf.set_job_param(jid, "obj", object())
