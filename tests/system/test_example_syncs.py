"""examples/syncs end to end: the fake partner service in this process (real sockets),
the schedules synced by real `taskfire worker` instances as they start, and runs
triggered by hand while others are going."""

from __future__ import annotations

from typing import Iterator

import pytest

from examples.syncs import jobs
from examples.syncs.fake_service import FakeService
from tests.conftest import ROOT, report, wait_state

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)

SCHEDULES = ROOT / "examples" / "syncs" / "syncs.toml"
SYNCS = ["ads-creatives", "authenticom", "campaign", "cdk", "ctm", "dealertrend", "google-ads", "meta-ads",
         "salesforce"]


@pytest.fixture
def service() -> Iterator[FakeService]:
    s = FakeService().start()
    yield s
    s.stop()


@pytest.fixture
def instances(tf, start_worker, service):
    """Two worker instances (as on two hosts) started as in production, syncing the dev
    schedules; an operator disabled them first (a disable survives the sync), so only the
    runs a test triggers happen."""
    tf.recurring.sync(SCHEDULES, "dev")
    for rid in SYNCS:
        assert tf.recurring.disable(rid)
    for _ in range(2):
        worker = start_worker("--queues", "integrations", "--threads", "4", "--recurring-file", str(SCHEDULES),
                              "--environment", "dev", modules=("examples.syncs.jobs",),
                              env={"SYNC_SERVICE_URL": service.url})
        assert "0 added, 0 updated, 0 removed" in worker.output()
    assert not any(r.enabled for r in tf.recurring.list())


def test_each_sync_has_its_own_cron_in_each_environment(tf):
    crons = {}
    for environment in (None, "staging", "dev"):
        tf.recurring.sync(SCHEDULES, environment)
        syncs = {r.id: r for r in tf.recurring.list()}
        assert sorted(syncs) == SYNCS
        assert len({r.cron for r in syncs.values()}) == 9  # its own schedule each
        # Queue and function come from the jobs' @job declarations, by name
        assert {r.queue for r in syncs.values()} == {"integrations"}
        assert syncs["google-ads"].function == "examples.syncs.jobs:sync_google_ads"
        crons[environment] = {i: r.cron for i, r in syncs.items()}
    assert crons[None]["salesforce"] == "*/15 * * * *" and crons[None]["ads-creatives"] == "0 3 * * *"
    assert crons["staging"]["salesforce"] == "0 * * * *" and crons["dev"]["salesforce"] == "*/2 * * * *"
    assert all(crons[None][i] != crons["dev"][i] != crons["staging"][i] for i in SYNCS)
    assert tf.recurring.get("ads-creatives").tz == "America/New_York"  # type: ignore[union-attr]


def test_a_sync_triggered_while_it_runs_waits_and_never_overlaps_across_instances(tf, service, instances):
    # Given a slow partner, and three runs of its sync asked for at once
    service.slow("salesforce", 0.6)
    runs = [tf.recurring.trigger("salesforce") for _ in range(3)]
    other = tf.recurring.trigger("ctm")  # another sync: it need not wait
    assert all(runs) and other
    for job_id in [*runs, other]:
        wait_state(tf, job_id, "Succeeded", 30)  # type: ignore[arg-type]
    # Then the partner saw them one after the other, each picking up the last one's cursor
    seen = sorted(service.seen("salesforce"), key=lambda r: r.started)
    assert len(seen) == 3
    assert all(a.ended <= b.started for a, b in zip(seen, seen[1:])), seen
    assert sorted(tf.get_job(j).result["cursor"] for j in runs) == [3, 6, 9]  # type: ignore[union-attr,index]
    waited = [j for j in runs if any("Waiting for mutex:sync-salesforce" in (e.reason or "")
                                     for e in tf.get_job(j).history)]  # type: ignore[union-attr]
    assert waited, "the runs never contended for the mutex"
    r = tf.storage.redis
    assert r.hget(jobs.state_key(tf, "salesforce"), "runs") == b"3"
    assert r.hlen(jobs.state_key(tf, "salesforce") + ":records") == 9
    ctm = service.seen("ctm")[0]
    alongside = any(s.started < ctm.ended and ctm.started < s.ended for s in seen)
    report(f"syncs: 3 salesforce runs of 0.6 s triggered at once on 2 instances: 0 overlaps, {len(waited)} "
           f"waited for the mutex; ctm {'ran alongside them' if alongside else 'did not overlap them'}")


def test_a_failing_partner_is_retried_with_backoff_until_the_sync_succeeds(tf, service, instances):
    service.fail_next("cdk", 503, 502)
    job_id = tf.recurring.trigger("cdk")
    assert job_id
    wait_state(tf, job_id, "Succeeded", 30)
    done = tf.get_job(job_id)
    assert done is not None and done.result == {"integration": "cdk", "records": 3, "cursor": 3}
    failures = [e for e in done.history if e.state == "Failed"]
    assert [f.data["exception_message"].split(" answered ")[-1] for f in failures] == ["503", "502"]
    assert all(f.data["exception_type"] == "examples.syncs.jobs.SyncError" for f in failures)
    retries = [e.reason for e in done.history if e.state == "Scheduled"]
    assert [r.split(":")[0] for r in retries] == ["Retry attempt 1 of 6", "Retry attempt 2 of 6"]  # type: ignore[union-attr]
    attempts = service.seen("cdk")
    assert [a.status for a in attempts] == [503, 502, 200]
    gaps = [b.started - a.ended for a, b in zip(attempts, attempts[1:])]
    assert gaps[0] >= jobs.RETRY_DELAYS[0] and gaps[1] >= jobs.RETRY_DELAYS[1], gaps  # backoff: 1 s, then 3 s
    report(f"syncs: partner failing twice: retried after {gaps[0]:.2f} s and {gaps[1]:.2f} s (delays 1 s, 3 s), "
           f"then succeeded")
