"""A store written by the version before this one is read and moved on correctly: its
jobs have no `h` field, and their history list was written at their first change of
state (see storage/lua/lib/states.lua). Records are written here as that version wrote
them, then fetched, finished, requeued and read by this one."""

from __future__ import annotations

import json

import pytest

from taskfire import Succeeded
from taskfire.client import transition_for
from taskfire.payload import encode_args
from taskfire.server.config import WorkerConfig
from taskfire.server.worker import WorkerProcess
from taskfire.states import PROCESSING


@pytest.fixture
def worker(tf):
    w = WorkerProcess(WorkerConfig(redis_url=tf.url, prefix=tf.prefix), "w1")
    yield w
    w.client.close()


def legacy_job(tf, job_id: str, history: list[dict], state: str = "Enqueued", **fields: str) -> None:
    """A job as the previous version stored it: no h, the history it had written so far."""
    r, k = tf.storage.redis, tf.storage.keys
    r.hset(k.job(job_id), mapping={"fn": "tests.jobs:echo", "args": encode_args("echo", (1,), {}),
                                    "queue": "default", "created": "1700000000000", "state": state, **fields})
    if history:
        r.rpush(k.history(job_id), *(json.dumps(e) for e in history))
    if state == "Enqueued":
        r.lpush(k.queue("default"), job_id)
        r.sadd(k.queues, "default")


def run_once(worker, tf, job_id: str) -> None:
    [running] = worker.storage.fetch(worker.request(1)).jobs
    assert running.id == job_id
    results, _ = worker.storage.finish(
        [transition_for(job_id, Succeeded(duration_ms=1.0), (PROCESSING,), token=running.token)], worker.request(0))
    assert results[0].code == 1


def states(tf, job_id: str) -> list[str]:
    return [e.state for e in tf.get_job(job_id).history]


def test_a_waiting_job_of_the_previous_version_runs_with_its_whole_history(tf, worker):
    legacy_job(tf, "old-1", [])
    assert states(tf, "old-1") == ["Enqueued"]
    run_once(worker, tf, "old-1")
    assert states(tf, "old-1") == ["Enqueued", "Processing", "Succeeded"]
    assert tf.storage.redis.llen(tf.storage.keys.history("old-1")) == 3  # its list, as it used to be


def test_a_retried_job_of_the_previous_version_keeps_its_list_without_a_second_creation_entry(tf, worker):
    before = [{"at": 1700000000000, "state": "Enqueued", "data": {"queue": "default"}},
              {"at": 1700000000001, "state": "Processing", "data": {"worker": "old"}},
              {"at": 1700000000002, "state": "Failed", "reason": "boom"},
              {"at": 1700000000002, "state": "Scheduled", "reason": "Retry attempt 1 of 10: boom"},
              {"at": 1700000001000, "state": "Enqueued", "reason": "Scheduled time reached"}]
    legacy_job(tf, "old-2", before, retries="1")
    run_once(worker, tf, "old-2")
    assert states(tf, "old-2") == ["Enqueued", "Processing", "Failed", "Scheduled", "Enqueued", "Processing",
                                   "Succeeded"]


def test_a_finished_job_of_the_previous_version_can_be_requeued(tf):
    done = [{"at": 1700000000000, "state": "Enqueued", "data": {"queue": "default"}},
            {"at": 1700000000001, "state": "Processing", "data": {"worker": "old"}},
            {"at": 1700000000002, "state": "Succeeded", "data": {"duration_ms": 1.0}}]
    legacy_job(tf, "old-3", done, state="Succeeded")
    tf.storage.redis.expire(tf.storage.keys.job("old-3"), 3600)
    tf.storage.redis.expire(tf.storage.keys.history("old-3"), 3600)
    assert tf.requeue("old-3", reason="again")
    assert states(tf, "old-3") == ["Enqueued", "Processing", "Succeeded", "Enqueued"]
    assert tf.storage.redis.ttl(tf.storage.keys.job("old-3")) == -1


def test_a_limited_job_of_the_previous_version_is_still_admitted_under_its_limit(tf, worker):
    # Given two jobs of the previous version under a limit of one (no h to flag it)
    for job_id in ("old-4", "old-5"):
        legacy_job(tf, job_id, [], limit="crm", limit_max="1", limit_timeout="600000")
    # When a worker fetches both, then only one runs; the other waits for the limit
    fetched = worker.storage.fetch(worker.request(2)).jobs
    assert [j.id for j in fetched] == ["old-4"]
    assert tf.get_job("old-5").state == "Scheduled"
