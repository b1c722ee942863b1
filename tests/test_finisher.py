"""Group commit: a worker process stores its threads' outcomes together (finisher.py and
finish.lua), on real servers."""

from __future__ import annotations

import logging
import threading

import msgspec

from taskfire.client import transition_for
from taskfire.config import WorkerConfig
from taskfire.finisher import Finisher, Outcome
from taskfire.states import PROCESSING, Scheduled, Succeeded
from taskfire.storage import FetchedJob
from taskfire.worker import WorkerProcess
from tests import jobs
from tests.conftest import wait_for


def outcome_for(name: str, wants_next: bool = True) -> Outcome:
    job = FetchedJob(name, "token", "fn", b"", "default", b"", 0, 0, 0)
    return Outcome(job, transition_for(name, Succeeded()), wants_next)


def test_outcomes_that_finish_while_a_call_is_on_its_way_go_together_in_the_next():
    sent: list[list[str]] = []
    first_sending, release_first = threading.Event(), threading.Event()

    def send(group: list[Outcome]) -> None:
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
    wait_for(lambda: len(finisher._pending) == 2, 10, "b and c to wait for a's call")
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


def test_one_call_stores_several_outcomes_and_fetches_the_next_jobs(tf):
    ids = [jobs.add.enqueue(i, i) for i in range(5)]
    worker = WorkerProcess(WorkerConfig(redis_url=tf.url, prefix=tf.prefix), "w1")
    try:
        running = worker.storage.fetch(worker.request(3)).jobs
        assert [j.id for j in running] == ids[:3]
        changes = [transition_for(j.id, Succeeded(), (PROCESSING,), token=j.token) for j in running]
        changes[1] = transition_for(running[1].id, Succeeded(), (PROCESSING,), token="not-its-lease")
        results, fetched = worker.storage.finish(changes, worker.request(2))
        assert results == [(1, "Processing"), (-2, "Processing"), (1, "Processing")]
        assert [j.id for j in fetched.jobs] == ids[3:]
        assert [tf.get_job(i).state for i in ids] == ["Succeeded", "Processing", "Succeeded",
                                                      "Processing", "Processing"]
    finally:
        worker.client.close()


def test_a_change_redis_refuses_harms_no_other_outcome_of_its_group(tf, caplog):
    good_id, bad_id = jobs.add.enqueue(1, 1), jobs.add.enqueue(2, 2)
    worker = WorkerProcess(WorkerConfig(redis_url=tf.url, prefix=tf.prefix), "w1")
    try:
        running = worker.storage.fetch(worker.request(2)).jobs
        worker._hold(running)
        good, bad = running
        # A due time the script cannot read makes the whole call fail
        refused = msgspec.structs.replace(
            transition_for(bad.id, Scheduled(delay=1), (PROCESSING,), token=bad.token), due="+not-a-number")
        group = [Outcome(good, transition_for(good.id, Succeeded(), (PROCESSING,), token=good.token), False),
                 Outcome(bad, refused, False)]
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
    finally:
        worker.client.close()
