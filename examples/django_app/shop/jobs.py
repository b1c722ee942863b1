"""The shop's jobs: `manage.py taskfire_worker` finds this module (the app's `jobs`)."""

from __future__ import annotations

from taskfire import job

from .models import Order


@job(retries=3)
def send_receipt(order_id: int) -> str:
    """Reads the order the view committed, and records its receipt."""
    order = Order.objects.get(pk=order_id)
    order.receipt = f"receipt for order {order.pk} sent to {order.email}"
    order.save(update_fields=["receipt"])
    return order.receipt
