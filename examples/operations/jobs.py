"""The residence's operations as jobs, run by `taskfire worker examples.operations.jobs
--queues critical,default,low-priority` (strict priority: money first, reports last).

    critical       create_invoice, update_ledger, monthly_invoices, resident_invoice
    default        notify_resident, payment_reminder, invoice_run_summary,
                   overdue_check, backup
    low-priority   daily_report, weekly_cleanup

The schedules are in operations.toml. Two workflows put jobs together:

    bill(...)            create_invoice -> update_ledger -> notify_resident, each a
                         continuation of the one before; create_invoice also schedules
                         the payment reminder 24 hours before the due date
    invoice_all(...)     one resident_invoice per resident in a batch, and an
                         invoice_run_summary once all of them have finished
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timedelta, timezone
from pathlib import Path

from taskfire import Taskfire, current_job, job

from .store import OPEN, OVERDUE, PAID, Books, Invoice

#: How long before its due date a reminder is sent.
REMIND_BEFORE = timedelta(hours=24)
#: Days after its period starts that a monthly invoice is due.
PAYMENT_TERMS = timedelta(days=14)
#: Paid invoices kept after their due date; the weekly cleanup removes older ones.
KEEP_PAID = timedelta(days=90)
#: Notifications kept in the outbox.
KEEP_SENT = 1000
#: Backup files kept.
KEEP_BACKUPS = 10


def _tf() -> Taskfire:
    ctx = current_job()
    assert ctx is not None, "this runs as a job"
    client: Taskfire = ctx.client
    return client


def _books() -> Books:
    return Books(_tf())


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- the invoice chain ---------------------------------------------------------------------


@job(queue="critical", retries=5, retry_delays=[10, 60, 300])
def create_invoice(invoice_id: str, resident: str, amount_cents: int, due: datetime) -> str:
    """Records the invoice and schedules its payment reminder."""
    books = _books()
    books.add_invoice(Invoice(invoice_id, resident, amount_cents, due, OPEN))
    _remind_once(books, invoice_id, due)
    return f"invoice {invoice_id}: {amount_cents / 100:.2f} due {due:%Y-%m-%d %H:%M} UTC"


@job(queue="critical", retries=5, retry_delays=[10, 60, 300])
def update_ledger(invoice_id: str) -> str:
    invoice = _books().invoice(invoice_id)
    assert invoice is not None, f"no invoice {invoice_id}"
    _books().post_ledger({"invoice": invoice_id, "resident": invoice.resident, "debit_cents": invoice.amount_cents})
    return f"ledger: {invoice.resident} owes {invoice.amount_cents / 100:.2f} more"


@job(retries=3, retry_delays=[30, 300])
def notify_resident(invoice_id: str) -> str:
    invoice = _books().invoice(invoice_id)
    assert invoice is not None, f"no invoice {invoice_id}"
    _books().send({"kind": "invoice", "invoice": invoice_id, "to": invoice.resident})
    return f"sent invoice {invoice_id} to {invoice.resident}"


@job(retries=3, retry_delays=[60, 600])
def payment_reminder(invoice_id: str) -> str:
    """Reminds the resident of an invoice still unpaid; a paid one needs nothing."""
    ctx = current_job()
    invoice = _books().invoice(invoice_id)
    if invoice is None or invoice.status == PAID:
        why = "it no longer exists" if invoice is None else "it is paid"
        if ctx is not None:
            ctx.log(f"no reminder for invoice {invoice_id}: {why}")
        return f"skipped: invoice {invoice_id} {'is paid' if invoice else 'is gone'}"
    _books().send({"kind": "reminder", "invoice": invoice_id, "to": invoice.resident})
    return f"reminded {invoice.resident} of invoice {invoice_id}"


def schedule_reminder(tf: Taskfire, invoice_id: str, due: datetime) -> str:
    """A payment reminder 24 hours before `due` (at once if that has passed); its job id."""
    return tf.schedule(payment_reminder, max(due - REMIND_BEFORE, _now()), invoice_id)


def _remind_once(books: Books, invoice_id: str, due: datetime) -> None:
    """Schedules the invoice's reminder unless it has one (a retried job adds none)."""
    invoice = books.invoice(invoice_id)
    if invoice is not None and invoice.reminder_job is None:
        books.set_reminder(invoice_id, schedule_reminder(_tf(), invoice_id, due))


def bill(tf: Taskfire, resident: str, amount_cents: int, due: datetime) -> dict[str, str]:
    """Invoices a resident: create -> ledger -> notify, each after the previous one
    succeeded. Returns the invoice's id and the three jobs' ids."""
    invoice_id = f"inv-{secrets.token_hex(4)}"
    created = tf.enqueue(create_invoice, invoice_id, resident, amount_cents, due)
    ledger = update_ledger.continue_with(created, invoice_id)
    notified = notify_resident.continue_with(ledger, invoice_id)
    return {"invoice": invoice_id, "create": created, "ledger": ledger, "notify": notified}


# -- the monthly run: a batch with a summary ----------------------------------------------------


@job(queue="critical", retries=5, retry_delays=[10, 60, 300])
def resident_invoice(resident: str, period: str) -> str:
    """One resident's invoice for a month ("2026-11"), created once however often this runs."""
    books = _books()
    rent = books.residents().get(resident)
    assert rent is not None, f"no resident {resident}"
    start = datetime.strptime(period, "%Y-%m").replace(tzinfo=timezone.utc)
    invoice = Invoice(f"{period}-{resident}", resident, rent, start + PAYMENT_TERMS, OPEN, period)
    if books.add_invoice(invoice):
        books.post_ledger({"invoice": invoice.id, "resident": resident, "debit_cents": rent})
    _remind_once(books, invoice.id, invoice.due)
    return invoice.id


@job
def invoice_run_summary(batch_id: str, period: str) -> dict[str, int | str]:
    """After every invoice of the run has an outcome: what was invoiced, and what failed."""
    tf = _tf()
    batch = tf.get_batch(batch_id)
    assert batch is not None, f"no batch {batch_id}"
    invoiced = [i for i in Books(tf).invoices() if i.period == period]
    ctx = current_job()
    summary: dict[str, int | str] = {
        "kind": "invoice-run", "period": period, "invoices": len(invoiced),
        "total_cents": sum(i.amount_cents for i in invoiced), "failed": batch.failed,
        "job_id": ctx.id if ctx else ""}
    Books(tf).file_report(summary)
    return summary


def invoice_all(tf: Taskfire, period: str) -> str:
    """A batch of one invoice per resident for `period`, summarised when all are done;
    returns the batch's id."""
    with tf.batch() as b:
        for resident in Books(tf).residents():
            b.enqueue(resident_invoice, resident, period)
        b.continue_with(invoice_run_summary, b.id, period, on="finished")
    return b.id


# -- the recurring catalogue (operations.toml) -------------------------------------------------


@job(queue="critical")
def monthly_invoices() -> str:
    """On the 1st: this month's invoice run."""
    return invoice_all(_tf(), _now().strftime("%Y-%m"))


@job
def overdue_check() -> list[str]:
    """Open invoices past their due date become overdue, and their residents are told."""
    books = _books()
    late = [i for i in books.invoices(due_before=_now()) if i.status == OPEN]
    for invoice in late:
        books.set_status(invoice.id, OVERDUE)
        books.send({"kind": "overdue", "invoice": invoice.id, "to": invoice.resident})
    return [i.id for i in late]


@job(queue="low-priority")
def daily_report() -> dict[str, int | str]:
    """Invoices by status and what is owed, filed for the office."""
    invoices = _books().invoices()
    report: dict[str, int | str] = {"kind": "daily", "day": _now().strftime("%Y-%m-%d")}
    for status in (OPEN, OVERDUE, PAID):
        report[status] = sum(1 for i in invoices if i.status == status)
    report["owed_cents"] = sum(i.amount_cents for i in invoices if i.status != PAID)
    _books().file_report(report)
    return report


@job(queue="low-priority")
def weekly_cleanup() -> dict[str, int]:
    """Removes paid invoices more than 90 days past due, and old notifications."""
    books = _books()
    old = [i for i in books.invoices(due_before=_now() - KEEP_PAID) if i.status == PAID]
    for invoice in old:
        books.remove_invoice(invoice.id)
    books.trim_outbox(KEEP_SENT)
    return {"invoices_removed": len(old)}


def backup_dir() -> Path:
    """OPS_BACKUP_DIR, else ./ops-backups."""
    return Path(os.environ.get("OPS_BACKUP_DIR") or "ops-backups")


@job
def backup() -> str:
    """Writes every invoice to a JSON file (the last 10 are kept); returns its path."""
    folder = backup_dir()
    folder.mkdir(parents=True, exist_ok=True)
    ctx = current_job()
    path = folder / f"invoices-{_now():%Y%m%dT%H%M%S}-{ctx.id if ctx else 'manual'}.json"
    rows = [{"id": i.id, "resident": i.resident, "amount_cents": i.amount_cents, "due": i.due.isoformat(),
             "status": i.status, "period": i.period} for i in _books().invoices()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    tmp.replace(path)  # a backup is whole or absent
    for stale in sorted(folder.glob("invoices-*.json"))[:-KEEP_BACKUPS]:
        stale.unlink()
    return str(path)
