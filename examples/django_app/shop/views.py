from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from taskfire.contrib.django import client, enqueue_on_commit

from .jobs import send_receipt
from .models import Order


@csrf_exempt  # an API: no browser form posts here
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    email = request.POST.get("email")
    if not email:
        return JsonResponse({"error": "email is required"}, status=400)
    with transaction.atomic():
        order = Order.objects.create(email=email)
        # Stored when the transaction commits: the worker never looks for an order that
        # is not there yet, and a rollback leaves no job behind.
        order.receipt_job = enqueue_on_commit(send_receipt, order.pk)
        order.save(update_fields=["receipt_job"])
    return JsonResponse({"order_id": order.pk, "job_id": order.receipt_job}, status=202)


@require_GET
def order_status(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    wait = float(request.GET.get("wait") or 0)
    if wait and not order.receipt:
        try:
            client().wait(order.receipt_job, timeout=min(wait, 30))
        except TimeoutError:
            pass
        order.refresh_from_db()
    return JsonResponse({"email": order.email, "receipt": order.receipt})
