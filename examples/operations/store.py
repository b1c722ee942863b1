"""The residence's books, kept in Redis beside the jobs (under the client's prefix) so
the example needs nothing else: residents and their rent, invoices, the ledger, and
what was sent or produced.

    <prefix>ops:residents          resident id -> monthly rent in cents
    <prefix>ops:invoice:<id>       resident, amount_cents, due (ISO), status, period, reminder_job
    <prefix>ops:invoices           invoice ids by due time (ms)
    <prefix>ops:ledger             entries, oldest first (JSON)
    <prefix>ops:outbox             notifications and reminders sent, oldest first (JSON)
    <prefix>ops:reports            daily reports and invoice-run summaries (JSON)
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import msgspec

from taskfire import Taskfire

OPEN, PAID, OVERDUE = "open", "paid", "overdue"


class Invoice(msgspec.Struct, frozen=True):
    id: str
    resident: str
    amount_cents: int
    due: datetime
    status: str
    period: str = ""
    reminder_job: str | None = None


class Books:
    """One client's residents, invoices, ledger and outbox."""

    def __init__(self, tf: Taskfire) -> None:
        self.redis = tf.storage.redis
        self.p = tf.prefix + "ops:"

    # -- residents and invoices -------------------------------------------------------

    def set_rent(self, resident: str, amount_cents: int) -> None:
        self.redis.hset(self.p + "residents", resident, amount_cents)

    def residents(self) -> dict[str, int]:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.p + "residents")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in sorted(raw.items())}

    def add_invoice(self, invoice: Invoice) -> bool:
        """Stores an invoice unless one with its id exists (a job run twice creates it
        once); True if stored."""
        key = self.p + "invoice:" + invoice.id
        fields = {"resident": invoice.resident, "amount_cents": invoice.amount_cents,
                  "due": invoice.due.isoformat(), "status": invoice.status, "period": invoice.period}
        if not self.redis.hsetnx(key, "id", invoice.id):
            return False
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
        pipe.zadd(self.p + "invoices", {invoice.id: int(invoice.due.timestamp() * 1000)})
        pipe.execute()
        return True

    def invoice(self, invoice_id: str) -> Invoice | None:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.p + "invoice:" + invoice_id)  # type: ignore[assignment]
        f = {k.decode(): v.decode() for k, v in raw.items()}
        if "resident" not in f:
            return None
        return Invoice(id=invoice_id, resident=f["resident"], amount_cents=int(f["amount_cents"]),
                       due=datetime.fromisoformat(f["due"]), status=f["status"], period=f.get("period", ""),
                       reminder_job=f.get("reminder_job"))

    def invoices(self, due_before: datetime | None = None) -> list[Invoice]:
        """Every invoice (or those due before a time), soonest due first."""
        top = int(due_before.timestamp() * 1000) if due_before else "+inf"
        ids = self.redis.zrangebyscore(self.p + "invoices", "-inf", top)
        return [i for i in (self.invoice(x.decode()) for x in ids) if i is not None]  # type: ignore[union-attr]

    def set_status(self, invoice_id: str, status: str) -> None:
        self.redis.hset(self.p + "invoice:" + invoice_id, "status", status)

    def set_reminder(self, invoice_id: str, job_id: str) -> None:
        self.redis.hset(self.p + "invoice:" + invoice_id, "reminder_job", job_id)

    def pay(self, invoice_id: str) -> None:
        self.set_status(invoice_id, PAID)

    def remove_invoice(self, invoice_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.p + "invoice:" + invoice_id)
        pipe.zrem(self.p + "invoices", invoice_id)
        pipe.execute()

    # -- what jobs write --------------------------------------------------------------

    def _append(self, name: str, entry: dict[str, Any]) -> None:
        entry = {"at": datetime.now(timezone.utc).isoformat(), **entry}
        self.redis.rpush(self.p + name, json.dumps(entry))

    def _read(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(v) for v in self.redis.lrange(self.p + name, 0, -1)]  # type: ignore[union-attr]

    def post_ledger(self, entry: dict[str, Any]) -> None:
        self._append("ledger", entry)

    def ledger(self) -> list[dict[str, Any]]:
        return self._read("ledger")

    def send(self, entry: dict[str, Any]) -> None:
        self._append("outbox", entry)

    def outbox(self) -> list[dict[str, Any]]:
        return self._read("outbox")

    def trim_outbox(self, keep: int) -> None:
        self.redis.ltrim(self.p + "outbox", -keep, -1)

    def file_report(self, entry: dict[str, Any]) -> None:
        self._append("reports", entry)

    def reports(self) -> list[dict[str, Any]]:
        return self._read("reports")
