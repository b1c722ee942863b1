"""Jobs of a small shop, for the dashboard's screenshots (benchmarks/screenshots.py):
outcomes of every kind, with realistic arguments, results and exceptions."""

from __future__ import annotations

import time

from taskfire import job


class CardDeclined(Exception):
    """The payment provider refused the card."""


@job(retries=0)
def charge_card(order_id: int, amount: float, currency: str = "EUR") -> dict[str, object]:
    time.sleep(0.02)
    if order_id % 7 == 3:
        raise CardDeclined(f"order {order_id}: card ending 4242 declined (insufficient funds)")
    return {"order_id": order_id, "charged": amount, "currency": currency, "provider_ref": f"ch_{order_id:08d}"}


@job(retries=3, retry_delays=[3600])
def send_receipt(order_id: int, email: str) -> str:
    time.sleep(0.01)
    if order_id % 5 == 1:
        raise TimeoutError(f"SMTP server mail.example.com did not answer within 30 s (order {order_id})")
    return f"receipt for order {order_id} sent to {email}"


@job(retries=2, retry_delays=[5400])
def sync_inventory(warehouse: str) -> int:
    raise ConnectionError(f"warehouse {warehouse}: connection refused by inventory.internal:443")


@job(retries=0)
def import_prices(path: str, rows: list[dict[str, object]]) -> int:
    raise ValueError(f"{path}, line 3: 'abc' is not a number")


@job
def build_report(day: str) -> str:
    time.sleep(120)  # still running when the screenshots are taken
    return f"report for {day}: 3 pages"
