"""Creating jobs (the order hooks) and queueing their sends; the payloads."""

import structlog
from django.db import IntegrityError, transaction

from channels_sync.adapters import OrderStatus
from core.cache import QUEUE_ERRORS
from core.correlation import get_correlation_id
from erp_mapping.models import ErpAgent
from erp_mapping.services.erp_sync.base import (
    Job,
    Kind,
    Op,
    _event,
    _json,
)
from erp_mapping.tasks.sync import erp_sync_send as erp_sync_send_task
from orders.models import Order

logger = structlog.get_logger(__name__)


def order_payload(order: Order) -> dict:
    """What the agent receives for an order: the order, its customer, address and lines."""
    channel = order.channel
    lines = order.lines.select_related("product", "warehouse").order_by("line_number")
    return _json(
        {
            "order_id": order.pk,
            "order_number": order.order_number,
            "external_id": order.external_id,
            "channel": None
            if channel is None
            else {"id": channel.pk, "type": channel.type, "name": channel.name},
            "vendor_id": order.vendor_id,
            "status": order.status,
            "placed_at": order.placed_at,
            "paid_at": order.paid_at,
            "confirmed_at": order.confirmed_at,
            "customer": order.customer,
            "address": order.address,
            "amount": order.amount,
            "currency": order.currency,
            "payment_method": order.payment_method,
            "lines": [
                {
                    "line_number": line.line_number,
                    "sku": line.product.sku if line.product_id else line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "discount": line.discount,
                    "vat_rate": line.vat_rate,
                    "vat_amount": line.vat_amount,
                    "warehouse_code": line.warehouse.code if line.warehouse_id else None,
                }
                for line in lines
            ],
        }
    )


def _cancel_payload(order: Order, create: Job) -> dict:
    return _json(
        {
            "order_id": order.pk,
            "order_number": order.order_number,
            "external_id": order.external_id,
            "vendor_id": order.vendor_id,
            "status": order.status,
            "cancelled_at": order.updated_at if order.status == OrderStatus.CANCELLED else None,
            "erp_reference": create.erp_reference,
            "erp_document_id": create.erp_document_id,
        }
    )


def erp_sync_job_create(*, order_id: int, operation: str) -> Job | None:
    """Create the order's job for `operation` unless it exists, and queue its send on commit.

    Idempotent: the unique (order, operation) settles two creations at once (the loser
    returns the winner's job). An `order.cancel` job is made only for an order that has
    an `order.create` job (an order never sent has nothing to cancel in the ERP). Returns
    None when there is nothing to create (no such order, nothing to cancel). The payload
    is not built here but at the first send (an order may still be mapped meanwhile).
    """
    existing = Job.objects.filter(order_id=order_id, operation=operation).first()
    if existing is not None:
        return existing
    order = Order.objects.filter(pk=order_id).only("pk", "vendor_id").first()
    if order is None:
        return None
    if (
        operation == Op.ORDER_CANCEL
        and not Job.objects.filter(order_id=order_id, operation=Op.ORDER_CREATE).exists()
    ):
        return None
    try:
        with transaction.atomic():
            job = Job.objects.create(
                order_id=order.pk,
                vendor_id=order.vendor_id,
                operation=operation,
                correlation_id=get_correlation_id() or "",
            )
            _event(job, Kind.CREATED, to_status=job.status)
            # A vendor without an agent has nowhere to send it: the job waits (pending, no
            # attempt used) and the sweep sends it once an agent is registered.
            if ErpAgent.objects.filter(vendor_id=order.vendor_id).exists():
                transaction.on_commit(lambda: send_enqueue(job.pk), robust=True)
    except IntegrityError:
        return Job.objects.get(order_id=order_id, operation=operation)
    logger.info("erp_sync.job_created", job_id=job.pk, order_id=order_id, operation=operation)
    return job


def order_confirmed_listener(order_id: int) -> None:
    """The "order confirmed" hook: the order's create job."""
    erp_sync_job_create(order_id=order_id, operation=Op.ORDER_CREATE)


def order_cancelled_listener(order_id: int) -> None:
    """The "order cancelled" hook: the order's cancel job, if it was sent (or is to be)."""
    erp_sync_job_create(order_id=order_id, operation=Op.ORDER_CANCEL)


def send_enqueue(job_id: int) -> bool:
    """Queue the job's send; a queue that is down is logged (the sweep queues it later)."""
    try:
        erp_sync_send_task.apply_async(kwargs={"job_id": job_id})
    except QUEUE_ERRORS:
        logger.exception("erp_sync.enqueue_failed", job_id=job_id)
        return False
    return True
