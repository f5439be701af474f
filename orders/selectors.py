"""Reads of orders."""

from django.db.models import Prefetch, QuerySet

from channels_sync.hooks import OrderFacts
from orders.errors import OrderNotFound
from orders.models import Order, OrderEvent, OrderLine


def _lines() -> Prefetch:
    return Prefetch(
        "lines",
        queryset=OrderLine.objects.select_related("product", "warehouse").order_by("line_number"),
    )


def order_list() -> QuerySet[Order]:
    """Orders, newest first, with their lines (a fixed number of queries per page)."""
    return Order.objects.prefetch_related(_lines()).order_by("-created_at", "-id")


def order_get(*, order_id: int | str) -> Order:
    """One order with its lines and events, or `order_not_found`."""
    try:
        pk = int(order_id)
    except (TypeError, ValueError) as exc:
        raise OrderNotFound(details={"id": str(order_id)}) from exc
    if not 0 < pk < 2**63:
        raise OrderNotFound(details={"id": pk})
    order = (
        Order.objects.prefetch_related(
            _lines(), Prefetch("events", queryset=OrderEvent.objects.order_by("id"))
        )
        .filter(pk=pk)
        .first()
    )
    if order is None:
        raise OrderNotFound(details={"id": pk})
    return order


def order_facts(order_id: int) -> OrderFacts | None:
    """What the conflict console finds an order's conflicts by (`channels_sync.hooks`)."""
    order = (
        Order.objects.filter(pk=order_id)
        .values("pk", "vendor_id", "external_id", "order_number", "created_at")
        .first()
    )
    if order is None:
        return None
    product_ids = (
        OrderLine.objects.filter(order_id=order_id, product_id__isnull=False)
        .order_by("product_id")
        .values_list("product_id", flat=True)
        .distinct()
    )
    return OrderFacts(
        order_id=order["pk"],
        vendor_id=order["vendor_id"],
        references=tuple(ref for ref in (order["external_id"], order["order_number"]) if ref),
        product_ids=tuple(product_ids),
        created_at=order["created_at"],
    )
