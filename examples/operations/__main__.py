"""`python -m examples.operations`: the catalogue on a worker, an invoice chain, a
monthly run and two reminders (one for an invoice paid in time), reported as they end."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from examples.launcher import running
from taskfire import Taskfire

from . import jobs
from .store import Books

CATALOGUE = Path(__file__).with_name("operations.toml")


def report_when_done(tf: Taskfire, labels: dict[str, str]) -> None:
    """Prints each job's outcome as it comes (or that it is still waiting, after 30 s)."""
    deadline = time.monotonic() + 30
    while labels and time.monotonic() < deadline:
        for job_id, label in list(labels.items()):
            job = tf.get_job(job_id)
            if job is not None and job.state in ("Succeeded", "Failed", "Deleted"):
                print(f"  {label:<34} {job.queue:<13} {job.state}: {job.result if job.result is not None else job.reason}")
                del labels[job_id]
        time.sleep(0.2)
    for label in labels.values():
        print(f"  {label:<34} still waiting")


def main() -> None:
    environment = os.environ.get("OPS_ENV", "dev")
    with running(["examples.operations.jobs"], queues="critical,default,low-priority",
                 recurring_file=str(CATALOGUE), environment=None if environment == "production" else environment,
                 env={"OPS_BACKUP_DIR": os.environ.get("OPS_BACKUP_DIR") or "ops-backups"}) as tf:
        books = Books(tf)
        for resident, rent in (("apt-101", 120_000), ("apt-102", 95_000), ("apt-201", 130_000)):
            books.set_rent(resident, rent)

        now = datetime.now(timezone.utc)
        print("an invoice chain, due in 24 h 5 s (so its reminder comes in 5 s):", flush=True)
        chain = jobs.bill(tf, "apt-101", 120_000, now + timedelta(hours=24, seconds=5))
        report_when_done(tf, {chain["create"]: "create_invoice", chain["ledger"]: "update_ledger",
                              chain["notify"]: "notify_resident"})
        print("an invoice paid at once, and its reminder:", flush=True)
        paid = jobs.bill(tf, "apt-102", 95_000, now + timedelta(hours=24, seconds=5))
        report_when_done(tf, {paid["create"]: "create_invoice (to be paid)"})
        books.pay(paid["invoice"])
        reminders = {books.invoice(chain["invoice"]).reminder_job: "payment_reminder (unpaid)",  # type: ignore[union-attr]
                     books.invoice(paid["invoice"]).reminder_job: "payment_reminder (paid)"}  # type: ignore[union-attr]
        report_when_done(tf, {k: v for k, v in reminders.items() if k})
        print("this month's invoice run (a batch, then its summary):", flush=True)
        batch = jobs.invoice_all(tf, now.strftime("%Y-%m"))
        report_when_done(tf, {j: f"resident_invoice {i}" for i, j in enumerate(tf.batch_members(batch))})
        for _ in range(100):  # the summary follows the last invoice
            summary = [r for r in books.reports() if r.get("kind") == "invoice-run"]
            if summary:
                break
            time.sleep(0.1)
        print(f"  summary: {summary[-1] if summary else 'not yet'}")
        print(f"the catalogue ({environment}):")
        for r in tf.recurring.list():
            print(f"  {r.id:<17} {r.cron:<14} {r.tz:<16} {r.queue:<13} next {r.next_run:%Y-%m-%d %H:%M} UTC")
        print("running; Ctrl-C stops", flush=True)
        while True:
            time.sleep(1)


if __name__ == "__main__":
    main()
