"""examples/operations end to end: the catalogue synced per environment, the invoice
chain, the monthly batch and the reminders, with a real `taskfire worker` on the
critical, default and low-priority queues."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from examples.operations import jobs
from examples.operations.store import OPEN, OVERDUE, PAID, Books, Invoice
from tests.conftest import ROOT, report, wait_for, wait_state

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)

CATALOGUE = ROOT / "examples" / "operations" / "operations.toml"
IDS = ["backup", "daily-report", "monthly-invoices", "overdue-check", "weekly-cleanup"]
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def worker(start_worker, backups):
    return start_worker("--queues", "critical,default,low-priority", "--threads", "4",
                        modules=("examples.operations.jobs",), env={"OPS_BACKUP_DIR": str(backups)})


def without_time(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in e.items() if k != "at"} for e in entries]


def test_the_catalogue_syncs_each_environments_schedules(tf):
    production = tf.recurring.sync(CATALOGUE)
    assert sorted(production.added) == IDS
    jobs_by_id = {r.id: r for r in tf.recurring.list()}
    assert {i: (r.cron, r.tz, r.queue) for i, r in jobs_by_id.items()} == {
        "daily-report": ("0 2 * * *", "America/Chicago", "low-priority"),
        "monthly-invoices": ("0 6 1 * *", "America/Chicago", "critical"),
        "overdue-check": ("0 * * * *", "UTC", "default"),
        "weekly-cleanup": ("0 0 * * 0", "America/Chicago", "low-priority"),
        "backup": ("0 */6 * * *", "UTC", "default"),
    }
    nxt = {i: r.next_run for i, r in jobs_by_id.items()}
    assert all(n is not None for n in nxt.values())
    report_at = nxt["daily-report"].astimezone(CHICAGO)  # type: ignore[union-attr]
    invoices_at = nxt["monthly-invoices"].astimezone(CHICAGO)  # type: ignore[union-attr]
    cleanup_at = nxt["weekly-cleanup"].astimezone(CHICAGO)  # type: ignore[union-attr]
    assert (report_at.hour, report_at.minute) == (2, 0)
    assert (invoices_at.day, invoices_at.hour, invoices_at.minute) == (1, 6, 0)
    assert (cleanup_at.strftime("%A"), cleanup_at.hour, cleanup_at.minute) == ("Sunday", 0, 0)
    assert nxt["backup"].hour % 6 == 0 and nxt["backup"].minute == 0  # type: ignore[union-attr]
    assert nxt["overdue-check"].minute == 0  # type: ignore[union-attr]

    dev = tf.recurring.sync(CATALOGUE, "dev")
    assert sorted(dev.updated) == IDS and dev.added == dev.removed == []
    dev_jobs = {r.id: r for r in tf.recurring.list()}
    assert {i: r.cron for i, r in dev_jobs.items()} == {
        "daily-report": "*/10 * * * *", "monthly-invoices": "*/30 * * * *", "overdue-check": "* * * * *",
        "weekly-cleanup": "0 * * * *", "backup": "*/15 * * * *"}
    now = datetime.now(timezone.utc)
    assert all(r.next_run is not None and r.next_run - now <= timedelta(hours=1) for r in dev_jobs.values())
    assert {r.queue for r in dev_jobs.values()} == {"critical", "default", "low-priority"}

    back = tf.recurring.sync(CATALOGUE)
    assert sorted(back.updated) == IDS
    assert tf.recurring.get("daily-report").cron == "0 2 * * *"  # type: ignore[union-attr]


def test_an_invoice_is_created_then_ledgered_then_sent_on_its_queues(tf, worker):
    due = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=3)
    ids = jobs.bill(tf, "apt-101", 120_000, due)
    wait_state(tf, ids["notify"], "Succeeded")
    create, ledger, notify = (tf.get_job(ids[k]) for k in ("create", "ledger", "notify"))
    assert create and ledger and notify
    assert create.finished_at <= ledger.started_at and ledger.finished_at <= notify.started_at  # type: ignore[operator]
    assert (create.queue, ledger.queue, notify.queue) == ("critical", "critical", "default")
    assert [e.state for e in notify.history] == ["Awaiting", "Enqueued", "Processing", "Succeeded"]
    assert notify.history[1].reason == f"Its parent job {ledger.id} succeeded"

    books = Books(tf)
    assert without_time(books.ledger()) == [{"invoice": ids["invoice"], "resident": "apt-101", "debit_cents": 120_000}]
    assert without_time(books.outbox()) == [{"kind": "invoice", "invoice": ids["invoice"], "to": "apt-101"}]
    # The reminder waits for 24 hours before the due date
    invoice = books.invoice(ids["invoice"])
    assert invoice is not None and invoice.status == OPEN and invoice.reminder_job
    reminder = tf.get_job(invoice.reminder_job)
    assert reminder is not None and reminder.state == "Scheduled" and reminder.function.endswith(":payment_reminder")
    assert reminder.due_at == due - timedelta(hours=24)


def test_the_monthly_run_is_a_batch_whose_summary_comes_after_every_invoice(tf, worker):
    books = Books(tf)
    rents = {"apt-101": 120_000, "apt-102": 95_000, "apt-201": 130_000, "apt-202": 99_000}
    for resident, rent in rents.items():
        books.set_rent(resident, rent)
    period = (datetime.now(timezone.utc) + timedelta(days=45)).strftime("%Y-%m")
    batch_id = jobs.invoice_all(tf, period)
    members = tf.batch_members(batch_id)
    assert len(members) == 4
    summary = wait_for(lambda: [r for r in books.reports() if r.get("period") == period], 30, "the summary")[0]
    assert without_time([summary]) == [{"kind": "invoice-run", "period": period, "invoices": 4,
                                        "total_cents": sum(rents.values()), "failed": 0, "job_id": summary["job_id"]}]
    batch = tf.get_batch(batch_id)
    assert batch is not None and (batch.state, batch.outcome, batch.succeeded) == ("Finished", "succeeded", 4)
    member_jobs = [tf.get_job(m) for m in members]
    summary_job = tf.get_job(summary["job_id"])
    assert summary_job is not None and summary_job.parent_id == batch_id and summary_job.parent_kind == "batch"
    assert all(m and m.queue == "critical" and m.finished_at <= summary_job.started_at for m in member_jobs)  # type: ignore[operator]
    assert sorted(i.id for i in books.invoices() if i.period == period) == sorted(f"{period}-{r}" for r in rents)


def test_a_reminder_skips_a_paid_invoice_and_reminds_of_an_unpaid_one(tf, worker):
    # Given two invoices due in 24 hours and 1.5 seconds, one of them paid already
    books = Books(tf)
    due = datetime.now(timezone.utc) + timedelta(hours=24, seconds=1.5)
    books.add_invoice(Invoice("inv-paid", "apt-101", 120_000, due, OPEN))
    books.add_invoice(Invoice("inv-unpaid", "apt-102", 95_000, due, OPEN))
    books.pay("inv-paid")
    # When their reminders are scheduled, they wait for 24 hours before the due date
    paid, unpaid = (jobs.schedule_reminder(tf, i, due) for i in ("inv-paid", "inv-unpaid"))
    for job_id in (paid, unpaid):
        waiting = tf.get_job(job_id)
        assert waiting is not None and waiting.state == "Scheduled"
        assert abs(waiting.due_at - (due - timedelta(hours=24))) < timedelta(milliseconds=1)  # type: ignore[operator]
    # Then the paid one skips itself and the unpaid one reminds its resident
    wait_state(tf, paid, "Succeeded")
    wait_state(tf, unpaid, "Succeeded")
    skipped, reminded = tf.get_job(paid), tf.get_job(unpaid)
    assert skipped is not None and skipped.result == "skipped: invoice inv-paid is paid"
    assert [line.line for line in skipped.log] == ["no reminder for invoice inv-paid: it is paid"]
    assert reminded is not None and reminded.result == "reminded apt-102 of invoice inv-unpaid"
    assert without_time(books.outbox()) == [{"kind": "reminder", "invoice": "inv-unpaid", "to": "apt-102"}]
    assert reminded.started_at >= due - timedelta(hours=24)  # type: ignore[operator]
    report(f"operations: reminder due at T-24h started {(reminded.started_at - (due - timedelta(hours=24))).total_seconds() * 1000:.0f} ms "  # type: ignore[operator]
           f"after its time")


def test_the_catalogue_jobs_do_their_work_when_triggered(tf, worker, backups):
    tf.recurring.sync(CATALOGUE)
    for rid in IDS:
        tf.recurring.disable(rid)  # only the runs this test triggers, whatever the hour
    books = Books(tf)
    books.set_rent("apt-101", 120_000)
    now = datetime.now(timezone.utc)
    books.add_invoice(Invoice("late", "apt-101", 50_000, now - timedelta(days=1), OPEN))
    books.add_invoice(Invoice("old-paid", "apt-101", 40_000, now - timedelta(days=100), PAID))
    books.add_invoice(Invoice("recent-paid", "apt-101", 30_000, now - timedelta(days=10), PAID))

    def run(recurring_id: str) -> object:
        job_id = tf.recurring.trigger(recurring_id)
        assert job_id is not None
        wait_state(tf, job_id, "Succeeded")
        return tf.get_job(job_id).result  # type: ignore[union-attr]

    assert run("overdue-check") == ["late"]
    assert books.invoice("late").status == OVERDUE  # type: ignore[union-attr]
    assert without_time(books.outbox()) == [{"kind": "overdue", "invoice": "late", "to": "apt-101"}]
    daily = run("daily-report")
    assert isinstance(daily, dict) and (daily["open"], daily["overdue"], daily["paid"], daily["owed_cents"]) == (0, 1, 2, 50_000)
    saved = Path(str(run("backup")))
    assert saved.parent == backups and {row["id"] for row in json.loads(saved.read_text())} == {"late", "old-paid", "recent-paid"}
    assert run("weekly-cleanup") == {"invoices_removed": 1}
    assert books.invoice("old-paid") is None and books.invoice("recent-paid") is not None
    batch_id = run("monthly-invoices")
    period = datetime.now(timezone.utc).strftime("%Y-%m")
    wait_for(lambda: any(r.get("period") == period for r in books.reports()), 30, "the monthly summary")
    assert tf.get_batch(str(batch_id)).succeeded == 1  # type: ignore[union-attr]
    assert books.invoice(f"{period}-apt-101") is not None
    queues = {r.id: tf.get_job(r.last_job_id).queue for r in tf.recurring.list()}  # type: ignore[arg-type,union-attr]
    assert queues == {"daily-report": "low-priority", "weekly-cleanup": "low-priority", "monthly-invoices": "critical",
                      "overdue-check": "default", "backup": "default"}
