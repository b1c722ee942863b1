"""Sample jobs for `taskfire up --demo`: one of each outcome, reported as it happens."""

from __future__ import annotations

import time
from typing import Callable

from .client import Taskfire
from .context import current_job
from .job import job


@job(queue="critical")
def charge_invoice(invoice_id: int, amount: float) -> str:
    return f"charged invoice {invoice_id}: {amount:.2f} EUR"


@job
def send_welcome_email(user_id: int, address: str) -> str:
    return f"welcome email for user {user_id} sent to {address}"


@job(retries=3, retry_delays=[1.0])
def sync_inventory(warehouse: str) -> int:
    ctx = current_job()
    if ctx is not None and ctx.attempt == 1:
        raise ConnectionError(f"warehouse {warehouse} did not answer (the retry will succeed)")
    return 1234


@job(queue="low")
def nightly_report(day: str) -> str:
    return f"report for {day}: 3 pages"


@job(retries=0)
def import_file(path: str) -> None:
    raise ValueError(f"{path}, line 3: 'abc' is not a number")


def run_demo(tf: Taskfire, should_stop: Callable[[], bool], timeout: float = 60.0) -> None:
    """Enqueues the sample jobs and prints each state they reach until all settle."""
    jobs = {
        tf.enqueue(charge_invoice, 42, 99.5): "charge_invoice(42, 99.5)",
        tf.enqueue(send_welcome_email, 7, "ada@example.com"): "send_welcome_email(7, ...)",
        tf.enqueue(sync_inventory, "north"): "sync_inventory('north')",
        tf.schedule(nightly_report, 3.0, "2026-11-23"): "nightly_report(...) in 3 s",
        tf.enqueue(import_file, "prices.csv"): "import_file('prices.csv')",
    }
    print(f"demo: enqueued {len(jobs)} jobs", flush=True)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while jobs and not should_stop() and time.monotonic() < deadline:
        for job_id, label in list(jobs.items()):
            record = tf.get_job(job_id)
            if record is None:
                continue
            for entry in record.history[seen.get(job_id, 0):]:
                note = f" ({entry.reason})" if entry.reason else ""
                print(f"demo: {label:<30} {entry.state}{note}", flush=True)
            seen[job_id] = len(record.history)
            if record.state in ("Succeeded", "Failed", "Deleted"):
                outcome = repr(record.result) if record.state == "Succeeded" else record.reason
                print(f"demo: {label:<30} => {outcome}   [taskfire job show {job_id}]", flush=True)
                del jobs[job_id]
        time.sleep(0.2)
