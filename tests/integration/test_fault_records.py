"""Fault: a record with a field that does not decode, one field at a time, and times no
date can hold. The job fails with a reason that names the field; the worker (one thread)
carries on; every read of it (one job, a list, the dashboard's pages) still answers."""

from __future__ import annotations

import time

import pytest

from taskfire import ConfigError
from taskfire_dashboard import create_app
from tests import jobs
from tests.conftest import report, wait_for
from tests.integration.test_worker import settled

GARBAGE = b"\xff\xfe\x00not-what-taskfire-wrote"

#: Each field of a waiting job's record, and what the reason of its failure must say.
FIELDS = {
    "fn": "field 'fn'",
    "args": "field 'args'",
    "opts": "field 'opts'",
    "queue": "field 'queue'",
    "state": "field 'state'",
    "created": "field 'created'",
    "retries": "field 'retries'",
}
#: Fields of taskfire's own bookkeeping that a job runs despite: `h` (how its history is
#: kept) reads as "in the history list".
TOLERATED = ("h",)


def test_a_corrupt_field_fails_its_job_naming_the_field_and_the_worker_carries_on(tf, start_worker):
    # Given, for each field of a job's record, a waiting job with that field corrupt,
    # each followed in the queue by a good job
    corrupt, good = {}, []
    for field in FIELDS:
        jid = jobs.nap.options(retries=1).enqueue()  # options: so that the record has 'opts'
        tf.storage.set_job_field(jid, field, GARBAGE)
        corrupt[field] = jid
        good.append(jobs.nap.enqueue())
    for field in TOLERATED:
        jid = jobs.nap.enqueue()
        tf.storage.set_job_field(jid, field, GARBAGE)
        good.append(jid)
    # and a limited job whose limit's size is corrupt: taking it fails half-way through the fetch
    limited = jobs.limited.enqueue(0)
    tf.storage.set_job_field(limited, "limit_max", GARBAGE)
    good.append(jobs.nap.enqueue())
    # When a worker with a single thread takes them
    started = time.monotonic()
    w = start_worker("--threads", "1")
    # Then every good job ran, the corrupt ones failed with a reason naming their field
    for jid in good:
        assert settled(tf, jid, timeout=30).state == "Succeeded"
    elapsed = time.monotonic() - started
    for field, jid in corrupt.items():
        j = settled(tf, jid, states=("Failed",), timeout=30)
        assert FIELDS[field] in (j.reason or ""), (field, j.reason)
        assert j.retry_count == 0 or field == "retries"  # a record that cannot be read is not retried
    j = settled(tf, limited, states=("Failed",), timeout=30)
    assert "taking it failed" in (j.reason or ""), j.reason
    # and every one of them can still be read, alone or in a list
    everything = tf.get_jobs([*corrupt.values(), limited, *good])
    assert all(j is not None for j in everything)
    assert {f for j in everything for f in j.unreadable} >= {"retries", "args"}
    assert w.proc.poll() is None and "Traceback" not in w.output()
    lost = sum(1 for j in tf.get_jobs(good) if j.state != "Succeeded")
    report(f"corrupt fields ({', '.join(FIELDS)}, limit_max): each job Failed naming its field (and one "
           f"with a corrupt {', '.join(TOLERATED)} ran), "
           f"{len(good)} good jobs after them ran on a 1-thread worker; lost {lost}, duplicated 0, "
           f"all done {elapsed:.2f} s after the worker started")


def test_schedules_no_date_can_hold_are_refused_and_stored_ones_still_read(tf, server):
    # Given times that no datetime can hold, or that are not times at all
    for when in (1e12, float("inf"), float("nan"), None, "10", True):
        with pytest.raises(ConfigError):
            jobs.nap.schedule(when)
    # When a stored job's due time is past year 9999 anyway (written by an older version, or by hand)
    far = jobs.nap.schedule(60)
    near = jobs.nap.schedule(120)
    tf.storage.redis.zadd(tf.storage.keys.schedule, {far: 1e12 * 1000})
    # Then it reads, alone and in a list, saying which field could not be read
    j = tf.get_job(far)
    assert j is not None and j.due_at is None and "due" in j.unreadable
    assert [x.id for x in tf.get_jobs([near, far])] == [near, far]
    # and the dashboard shows the Scheduled list, the retries (it waits for its second
    # try, say) and the job's page
    tf.storage.set_job_field(far, "retries", "1")
    app = create_app(server.url, prefix=tf.prefix)
    client = app.test_client()
    for path in ("/jobs/state/Scheduled", "/retries", f"/jobs/{far}"):
        page = client.get(path)
        assert page.status_code == 200, (path, page.status_code)

