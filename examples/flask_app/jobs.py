"""The Flask example's job: what a shop sends once an order is placed."""

from __future__ import annotations

from taskfire import job


@job(retries=3)
def send_receipt(order_id: int, email: str) -> str:
    return f"receipt for order {order_id} sent to {email}"
