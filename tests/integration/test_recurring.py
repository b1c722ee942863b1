"""Recurring jobs on real servers, fired by real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskfire import ConfigError, Cron, Taskfire
from tests import jobs
from tests.conftest import ROOT, report, traces, wait_for

HOUR = 3_600_000


def fired(tf: Taskfire, tag: str) -> list[str]:
    """Ids of the jobs `record_fired(tag)` ran, in the order they ran."""
    return [entry.split(":", 1)[1] for entry in traces(tf, "fired") if entry.split(":", 1)[0] == tag]


def pretend_missed(tf: Taskfire, recurring_id: str, due_ms: int) -> None:
    """Moves a recurring job's next run into the past, as if no scheduler ran since."""
    r, k = tf.storage.redis, tf.storage.keys
    r.hset(k.recurring_job(recurring_id), "next", due_ms)
    r.zadd(k.recurring, {recurring_id: due_ms})


def settled(tf: Taskfire) -> bool:
    """No job waiting or running: everything fired so far has run."""
    r, k = tf.storage.redis, tf.storage.keys
    return sum(tf.queue_lengths().values()) == 0 and r.zcard(k.processing) == 0


def test_add_get_list_update_and_remove(tf):
    tf.recurring.add_or_update("daily-reports", jobs.record_fired, Cron.daily(2), tz="Europe/Paris",
                               kwargs={"tag": "reports"})
    tf.recurring.add_or_update("db-backup", jobs.record_fired, "0 */6 * * *", args=("backup",), queue="low")
    r = tf.recurring.get("daily-reports")
    assert r is not None
    assert (r.function, r.cron, r.tz, r.queue, r.misfire, r.enabled) == (
        "tests.jobs:record_fired", "0 2 * * *", "Europe/Paris", "default", "relaxed", True)
    assert r.kwargs == {"tag": "reports"} and r.args == []
    assert r.next_run is not None and r.next_run.astimezone(r.next_run.tzinfo).minute == 0
    assert r.last_run is None and r.last_job_id is None and r.error is None
    listed = tf.recurring.list()
    assert sorted(x.id for x in listed) == ["daily-reports", "db-backup"]
    assert [x.next_run for x in listed] == sorted(x.next_run for x in listed)  # type: ignore[type-var]
    backup = tf.recurring.get("db-backup")
    assert backup is not None and backup.queue == "low" and backup.args == ["backup"]

    # Changing the arguments keeps the coming run; changing the schedule recomputes it.
    tf.recurring.add_or_update("daily-reports", jobs.record_fired, Cron.daily(2), tz="Europe/Paris",
                               kwargs={"tag": "reports-v2"})
    again = tf.recurring.get("daily-reports")
    assert again is not None and again.next_run == r.next_run and again.kwargs == {"tag": "reports-v2"}
    tf.recurring.add_or_update("daily-reports", jobs.record_fired, Cron.daily(2), tz="America/New_York")
    moved = tf.recurring.get("daily-reports")
    assert moved is not None and moved.next_run != r.next_run and moved.tz == "America/New_York"

    assert tf.recurring.remove("db-backup") is True
    assert tf.recurring.remove("db-backup") is False  # absent: no error
    assert tf.recurring.get("db-backup") is None
    assert [x.id for x in tf.recurring.list()] == ["daily-reports"]


@pytest.mark.parametrize("kwargs, words", [
    ({"cron": "0 25 * * *"}, "cron '0 25 \\* \\* \\*' is not a valid CRON expression"),
    ({"cron": "every day"}, "expected 5 fields"),
    ({"tz": "Mars/Olympus_Mons"}, "time zone 'Mars/Olympus_Mons' is unknown"),
    ({"misfire": "sometimes"}, "misfire must be one of relaxed, strict, ignorable"),
    ({"recurring_id": "has space"}, "recurring job id 'has space'"),
    ({"queue": "Not A Queue"}, "queue"),
])
def test_bad_definitions_raise_value_error_naming_the_problem(tf, kwargs, words):
    args = {"recurring_id": "bad", "cron": "0 2 * * *"}
    args.update(kwargs)
    rid, cron = args.pop("recurring_id"), args.pop("cron")
    with pytest.raises(ValueError, match=words):
        tf.recurring.add_or_update(rid, jobs.record_fired, cron, **args)
    assert tf.recurring.list() == []  # nothing half-written


def test_a_function_that_is_not_a_job_or_arguments_that_do_not_fit_are_refused(tf):
    with pytest.raises(ConfigError, match="not a job"):
        tf.recurring.add_or_update("x", print, Cron.daily())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add"):
        tf.recurring.add_or_update("x", jobs.add, Cron.daily(), args=(1, 2, 3))
    assert tf.recurring.list() == []


def test_a_schedule_that_never_fires_is_taken_and_says_so(tf):
    tf.recurring.add_or_update("leap", jobs.record_fired, "0 0 30 2 *")
    tf.recurring.add_or_update("never", jobs.record_fired, Cron.never())
    for rid in ("leap", "never"):
        r = tf.recurring.get(rid)
        assert r is not None and r.next_run is None
        assert r.error is not None and "never fires" in r.error and "triggered" in r.error
    # a schedule that fires again clears it
    tf.recurring.add_or_update("leap", jobs.record_fired, Cron.daily())
    fixed = tf.recurring.get("leap")
    assert fixed is not None and fixed.error is None and fixed.next_run is not None


def test_trigger_runs_the_job_now_and_leaves_the_schedule_alone(tf, start_worker):
    tf.recurring.add_or_update("reports", jobs.record_fired, Cron.yearly(), args=("reports",))
    before = tf.recurring.get("reports")
    assert tf.recurring.trigger("no-such-thing") is None
    start_worker()
    job_id = tf.recurring.trigger("reports")
    assert job_id is not None
    wait_for(lambda: fired(tf, "reports") == [job_id], what="the triggered job to run")
    job = wait_for(lambda: (j := tf.get_job(job_id)) and j.state == "Succeeded" and j, what="Succeeded")
    assert job.recurring_id == "reports"
    assert "Triggered by hand" in (job.history[0].reason or "")
    after = tf.recurring.get("reports")
    assert after is not None and before is not None
    assert after.next_run == before.next_run
    assert after.last_job_id == job_id and after.last_job_state == "Succeeded" and after.last_run is not None


def test_every_second_for_60_s_with_four_schedulers_fires_each_tick_exactly_once(tf, start_worker):
    start_worker("--processes", "2")
    start_worker("--processes", "2")
    start = tf.storage.server_time_ms()
    tf.recurring.add_or_update("tick", jobs.record_fired, Cron.every_second(), args=("tick",))
    wait_for(lambda: tf.storage.server_time_ms() >= start + 60_000, 70, "60 s of ticks", interval=0.5)
    assert tf.recurring.disable("tick")
    end = tf.storage.server_time_ms()
    wait_for(lambda: settled(tf), 20, "every fired job to run")

    ids = fired(tf, "tick")
    assert len(set(ids)) == len(ids)
    found = [tf.get_job(i) for i in ids]
    assert all(j is not None and j.recurring_id == "tick" for j in found)
    ticks = sorted(j.recurring_tick for j in found)  # type: ignore[union-attr]
    assert len(set(ticks)) == len(ticks), "a tick fired twice"
    expected = end // 1000 - start // 1000  # whole seconds in (start, end]
    assert expected - 1 <= len(ticks) <= expected + 1, (len(ticks), expected)
    late = sorted((j.created_at - j.recurring_tick).total_seconds() * 1000 for j in found)  # type: ignore[union-attr,operator]
    report(f"recurring exactly-once: every-second job, 4 schedulers (2 servers x 2 processes), "
           f"{(end - start) / 1000:.1f} s: {len(ticks)} jobs for {expected} ticks, 0 duplicates; "
           f"created after its tick p50 {late[len(late) // 2]:.0f} ms, max {late[-1]:.0f} ms")


def test_misfire_modes_after_three_hours_without_a_scheduler(tf, start_worker):
    for mode in ("relaxed", "strict", "ignorable"):
        tf.recurring.add_or_update(mode, jobs.record_fired, Cron.hourly(), args=(mode,), misfire=mode)
    now = tf.storage.server_time_ms()
    due = now - now % HOUR - 3 * HOUR  # the hourly tick three hours before this hour's
    for mode in ("relaxed", "strict", "ignorable"):
        pretend_missed(tf, mode, due)
    start_worker()
    wait_for(lambda: all((r := tf.recurring.get(m)) and r.next_run and r.last_run is not None
                         for m in ("relaxed", "strict")), what="the missed runs to fire")
    wait_for(lambda: len(fired(tf, "strict")) >= 4 and settled(tf), what="the strict catch-up to run")
    # Ticks from the next hour on are on time, not missed: they fire if the hour turns
    # while the test runs, in every mode.
    next_hour = now - now % HOUR + HOUR

    def missed_ticks(mode: str) -> list[int]:
        found = (tf.get_job(i) for i in fired(tf, mode))
        return [t for j in found if j and (t := int(j.recurring_tick.timestamp() * 1000)) < next_hour]  # type: ignore[union-attr]

    assert len(missed_ticks("relaxed")) == 1
    strict = sorted((j for j in map(tf.get_job, fired(tf, "strict")) if j), key=lambda j: j.recurring_tick)
    ticks = [int(j.recurring_tick.timestamp() * 1000) for j in strict]  # type: ignore[union-attr]
    # One job per missed tick: 09:00, 10:00, 11:00 and 12:00 when the run is at 12:xx
    # (five if the hour turned while the test ran).
    assert ticks == [due + i * HOUR for i in range(len(ticks))] and len(ticks) in (4, 5)
    assert ticks[-1] <= strict[-1].created_at.timestamp() * 1000 < ticks[-1] + HOUR  # type: ignore[union-attr]
    ignorable = wait_for(lambda: (r := tf.recurring.get("ignorable")) and r.next_run and
                         r.next_run.timestamp() * 1000 > now and r, what="the ignorable job to move on")
    assert missed_ticks("ignorable") == []
    for mode in ("relaxed", "strict", "ignorable"):
        r = tf.recurring.get(mode)
        assert r is not None and r.error is None
        assert r.next_run is not None
        next_ms = r.next_run.timestamp() * 1000
        assert next_ms % HOUR == 0 and now < next_ms <= now + 2 * HOUR


def test_a_strict_catch_up_past_1000_ticks_fires_1000_and_records_the_rest_as_its_error(tf, start_worker):
    # Given a strict every-minute job that missed a day of ticks (1,440), firing into a
    # queue no worker reads
    tf.recurring.add_or_update("catch-up", jobs.record_fired, Cron.minutely(), args=("catch-up",),
                               misfire="strict", queue="parked")
    now = tf.storage.server_time_ms()
    due = now - now % 60_000 - 24 * HOUR
    pretend_missed(tf, "catch-up", due)
    # When a scheduler sees it
    start_worker()
    caught_up = wait_for(lambda: (r := tf.recurring.get("catch-up")) and r.error and r, what="the catch-up")
    # Then the first 1,000 ticks fired, oldest first, and the skip is the job's error
    # until its next run (within a minute)
    assert caught_up.error.startswith("more than 1000 ticks were missed since "), caught_up.error
    assert "the first 1000 fired, the rest until" in caught_up.error
    assert tf.queue_lengths()["parked"] == 1000
    fired = tf.get_jobs(tf.job_ids_in_state("Enqueued", 0, 1000, queue="parked"))
    ticks = [int(j.recurring_tick.timestamp() * 1000) for j in fired]  # type: ignore[union-attr]
    assert ticks == [due + i * 60_000 for i in range(1000)]
    assert caught_up.next_run is not None and caught_up.next_run.timestamp() * 1000 > now


def test_disabled_jobs_do_not_fire_until_enabled(tf, start_worker):
    tf.recurring.add_or_update("busy", jobs.record_fired, Cron.every_second(), args=("busy",))
    tf.recurring.add_or_update("paused", jobs.record_fired, Cron.every_second(), args=("paused",))
    assert tf.recurring.disable("paused")
    paused = tf.recurring.get("paused")
    assert paused is not None and not paused.enabled and paused.next_run is None
    start_worker()
    wait_for(lambda: len(fired(tf, "busy")) >= 3, what="the enabled job to fire three times")
    assert fired(tf, "paused") == []
    # The operator's disable survives a redeploy that updates the definition.
    tf.recurring.add_or_update("paused", jobs.record_fired, Cron.every_second(), args=("paused",))
    assert not tf.recurring.get("paused").enabled  # type: ignore[union-attr]
    assert tf.recurring.enable("paused")
    wait_for(lambda: len(fired(tf, "paused")) >= 2, what="the enabled job to fire")
    assert tf.recurring.enable("no-such-job") is False and tf.recurring.disable("no-such-job") is False


def test_a_missing_function_or_corrupt_definition_is_recorded_on_its_recurring_job_and_harms_no_other(tf, start_worker):
    tf.recurring.add_or_update("healthy", jobs.record_fired, Cron.every_second(), args=("healthy",))
    tf.recurring.add_or_update("renamed", "tests.jobs:no_such_function", Cron.every_second())
    tf.recurring.add_or_update("gone", "tests.no_such_module:sync", Cron.every_second())
    tf.recurring.add_or_update("plain", "tests.jobs:_key", Cron.every_second())
    for rid, field, garbage in (("bad-cron", "cron", "every blue moon"), ("bad-next", "next", "soon")):
        tf.recurring.add_or_update(rid, jobs.record_fired, Cron.every_second(), args=(rid,))
        tf.storage.redis.hset(tf.storage.keys.recurring_job(rid), field, garbage)  # corrupt by hand
    start_worker()
    wait_for(lambda: len(fired(tf, "healthy")) >= 3, what="the healthy job to fire")
    errors = {rid: wait_for(lambda: (r := tf.recurring.get(rid)) and r.error, what=f"{rid}'s error")
              for rid in ("renamed", "gone", "plain")}
    assert "'tests.jobs:no_such_function' does not exist" in errors["renamed"]
    assert "importing 'tests.no_such_module' failed" in errors["gone"]
    assert "is not a @job" in errors["plain"]
    for rid in ("renamed", "gone", "plain"):
        r = tf.recurring.get(rid)
        assert r is not None and r.enabled and r.next_run is not None and r.last_job_id is None
    healthy = tf.recurring.get("healthy")
    assert healthy is not None and healthy.error is None
    bad_cron = wait_for(lambda: (r := tf.recurring.get("bad-cron")) and r.error and r, what="bad-cron's error")
    assert "'every blue moon'" in bad_cron.error and bad_cron.enabled and bad_cron.next_run is not None
    bad_next = wait_for(lambda: (r := tf.recurring.get("bad-next")) and r.error and r, what="bad-next's error")
    assert "is not a time" in bad_next.error and not bad_next.enabled
    assert fired(tf, "bad-cron") == [] and fired(tf, "bad-next") == []
    # Fixing the definition clears the error at its next run.
    tf.recurring.add_or_update("renamed", jobs.record_fired, Cron.every_second(), args=("renamed",))
    wait_for(lambda: fired(tf, "renamed"), what="the fixed job to fire")
    wait_for(lambda: tf.recurring.get("renamed").error is None, what="the error to clear")  # type: ignore[union-attr]


@pytest.mark.parametrize("skew", ["+600", "-600"])
def test_a_worker_whose_clock_is_ten_minutes_off_fires_neither_early_nor_late(tf, start_worker, skew):
    lib = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)
    assert lib is not None, "libfaketime is missing: .ci/run installs Debian's faketime package"
    worker = start_worker(env={"LD_PRELOAD": str(lib), "FAKETIME": skew, "DONT_FAKE_MONOTONIC": "1"})
    # The worker's clock really is off: a job reports it.
    tf.enqueue(jobs.record_start)
    wait_for(lambda: tf.storage.redis.llen(tf.prefix + "test:starts"), what="the clock job")
    worker_time = float(tf.storage.redis.lindex(tf.prefix + "test:starts", 0))
    offset = worker_time - tf.storage.server_time_ms() / 1000
    assert abs(offset - int(skew)) < 30, offset

    # A run at a fixed second three seconds from now (server time), once a day.
    tick_ms = (tf.storage.server_time_ms() // 1000 + 3) * 1000
    t = time.gmtime(tick_ms / 1000)
    tf.recurring.add_or_update("at-tick", jobs.record_fired, f"{t.tm_sec} {t.tm_min} {t.tm_hour} * * *",
                               args=("at-tick",))
    ids = wait_for(lambda: fired(tf, "at-tick"), 15, "the run at its tick")
    job = tf.get_job(ids[0])
    assert job is not None and job.recurring_tick is not None and job.created_at is not None
    assert int(job.recurring_tick.timestamp() * 1000) == tick_ms
    assert job.created_at >= job.recurring_tick  # not early
    assert worker.proc.poll() is None


TOML = """
source = "billing"

[recurring.daily-reports]
function = "tests.jobs:record_fired"
cron = "0 2 * * *"
tz = "Europe/Paris"
args = ["reports"]

[recurring.db-backup]
function = "tests.jobs:record_fired"
cron = "0 */6 * * *"
kwargs = { tag = "backup" }
misfire = "strict"

[recurring.monthly-invoices]
function = "tests.jobs:record_fired"
cron = "0 6 1 * *"
queue = "critical"

[env.dev.recurring.daily-reports]
cron = "*/5 * * * *"

[env.dev.recurring.dev-heartbeat]
function = "tests.jobs:record_fired"
cron = "* * * * * *"
args = ["dev-heartbeat"]
"""


def test_a_toml_file_is_synced_per_environment_and_owns_only_its_jobs(tf, tmp_path):
    path = tmp_path / "taskfire.toml"
    path.write_text(TOML)
    tf.recurring.add_or_update("from-code", jobs.record_fired, Cron.hourly())
    report1 = tf.recurring.sync(path)
    assert sorted(report1.added) == ["daily-reports", "db-backup", "monthly-invoices"]
    r = tf.recurring.get("db-backup")
    assert r is not None and r.kwargs == {"tag": "backup"} and r.misfire == "strict" and r.source == "billing"
    assert tf.recurring.get("monthly-invoices").queue == "critical"  # type: ignore[union-attr]

    dev = tf.recurring.sync(path, "dev")
    assert dev.added == ["dev-heartbeat"] and dev.updated == ["daily-reports"] and dev.removed == []
    assert tf.recurring.get("daily-reports").cron == "*/5 * * * *"  # type: ignore[union-attr]

    path.write_text(TOML.replace('[recurring.monthly-invoices]\nfunction = "tests.jobs:record_fired"\n'
                                 'cron = "0 6 1 * *"\nqueue = "critical"\n', ""))
    again = tf.recurring.sync(path)
    assert sorted(again.removed) == ["dev-heartbeat", "monthly-invoices"]
    assert again.updated == ["daily-reports"] and again.added == []
    assert sorted(x.id for x in tf.recurring.list()) == ["daily-reports", "db-backup", "from-code"]
    assert tf.recurring.sync(path) == type(again)([], [], [])  # nothing to do the second time


@pytest.mark.parametrize("text, words", [
    ('[recurring.x]\nfunction = "tests.jobs:echo"\ncron = "0 99 * * *"\n', "recurring job 'x'.*not a valid CRON"),
    ('[recurring.x]\nfunction = "tests.jobs:echo"\ncron = "0 2 * * *"\ntz = "Nowhere/City"\n', "time zone"),
    ('[recurring.x]\ncron = "0 2 * * *"\n', "'function' is missing"),
    ('[recurring.x]\nfunction = "tests.jobs:echo"\ncron = "* * * * *"\nevery = 5\n', "unknown key\\(s\\) every"),
    ('[recurring.x\n', "not valid TOML"),
    ('jobs = 1\n', "unknown top-level key"),
])
def test_a_bad_file_changes_nothing_and_says_what_is_wrong(tf, tmp_path, text, words):
    path = tmp_path / "taskfire.toml"
    path.write_text(TOML)
    tf.recurring.sync(path)
    before = tf.recurring.list()
    path.write_text(TOML + "\n" + text if not text.startswith("jobs") else text + TOML)
    with pytest.raises(ConfigError, match=words):
        tf.recurring.sync(path)
    assert tf.recurring.list() == before


def run_cli(server, prefix, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "taskfire", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_operator_cli_and_worker_start_sync(tf, server, prefix, tmp_path, start_worker):
    path = tmp_path / "taskfire.toml"
    path.write_text(TOML)
    # A worker started with the file syncs it (here, the dev environment) before it runs.
    start_worker("--recurring-file", str(path), "--environment", "dev")
    assert tf.recurring.get("dev-heartbeat") is not None
    wait_for(lambda: fired(tf, "dev-heartbeat"), what="the synced job to fire")

    out = run_cli(server, prefix, "recurring", "list")
    assert out.returncode == 0, out.stderr
    assert "dev-heartbeat  tests.jobs:record_fired  cron='* * * * * *' tz=UTC queue=default enabled" in out.stdout
    assert "daily-reports" in out.stdout and "Europe/Paris" in out.stdout

    out = run_cli(server, prefix, "recurring", "disable", "dev-heartbeat")
    assert out.returncode == 0 and "disabled dev-heartbeat" in out.stdout
    assert not tf.recurring.get("dev-heartbeat").enabled  # type: ignore[union-attr]
    out = run_cli(server, prefix, "recurring", "trigger", "db-backup")
    assert out.returncode == 0 and "enqueued job" in out.stdout
    job_id = out.stdout.split()[-1]
    wait_for(lambda: job_id in fired(tf, "backup"), what="the triggered job to run")
    out = run_cli(server, prefix, "recurring", "enable", "dev-heartbeat")
    assert out.returncode == 0 and tf.recurring.get("dev-heartbeat").enabled  # type: ignore[union-attr]
    out = run_cli(server, prefix, "recurring", "remove", "dev-heartbeat")
    assert out.returncode == 0 and tf.recurring.get("dev-heartbeat") is None
    out = run_cli(server, prefix, "recurring", "trigger", "dev-heartbeat")
    assert out.returncode == 1 and "no recurring job 'dev-heartbeat'" in out.stdout
    out = run_cli(server, prefix, "recurring", "sync", str(path))
    assert out.returncode == 0 and "0 added, 1 updated, 0 removed" in out.stdout, out.stdout
    # The command imports the jobs' modules, so a job keeps its decorator's queue.
    own = tmp_path / "own-queue.toml"
    own.write_text('[recurring.urgent]\nfunction = "tests.jobs:record_critical"\ncron = "0 3 * * *"\n'
                   'args = ["x"]\n[recurring.elsewhere]\nfunction = "not_installed_here:job"\ncron = "0 3 * * *"\n')
    out = run_cli(server, prefix, "recurring", "sync", str(own))
    assert out.returncode == 0 and "2 added" in out.stdout, out.stdout + out.stderr
    assert tf.recurring.get("urgent").queue == "critical"  # type: ignore[union-attr]
    assert tf.recurring.get("elsewhere").queue == "default"  # type: ignore[union-attr]
    bad = tmp_path / "bad.toml"
    bad.write_text('[recurring.x]\nfunction = "a:b"\ncron = "nope"\n')
    out = run_cli(server, prefix, "recurring", "sync", str(bad))
    assert out.returncode == 2 and "recurring job 'x'" in out.stderr and "cron" in out.stderr
