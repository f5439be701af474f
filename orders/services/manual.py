"""Orders entered through the API, and what staff do to orders (cancel, ship, map, restock).

API orders are ours, not marketplace facts: they are refused whole when a line lacks stock,
and staff or the API cancel and ship them. A marketplace order's state is the marketplace's:
cancelling or shipping it here would make its real state, when it comes back, look like a
step backward and be ignored, so it is refused (`marketplace_order`). Mapping, restocking and
reprocessing apply to every order.
"""

import contextlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_sync.adapters import OrderStatus
from core.cache import CACHE_ERRORS, cache_degraded
from core.errors import DomainError
from inventory.models import Product, Vendor, Warehouse
from inventory.services import Origin, stock_adjust
from inventory.services.stock import quantity_clean, warehouse_check
from orders.errors import (
    InvalidTransition,
    LineAlreadyMapped,
    LineNotReturned,
    MarketplaceOrder,
    OrderExists,
    UnknownSku,
    UnknownWarehouse,
)
from orders.models import Order, OrderEvent, OrderLine
from orders.services.lifecycle import (
    SHIPPED,
    Actor,
    confirm_if_due,
    event_record,
    line_reference,
    line_warehouse,
    lines_stock_sync,
    order_lock,
    status_set,
    transition_allowed,
)
from orders.services.market import order_reprocess_lines

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OrderLineInput:
    """One line of an API order, as validated at the edge."""

    sku: str
    quantity: Decimal
    warehouse: str | None = None  # a warehouse code; the vendor's default when None
    unit_price: Decimal | None = None
    discount: Decimal | None = None
    vat_rate: Decimal | None = None
    vat_amount: Decimal | None = None
    name: str = ""


def order_create(
    *,
    vendor: Vendor,
    order_number: str,
    lines: list[OrderLineInput],
    actor: Actor,
    customer: dict[str, Any] | None = None,
    address: dict[str, Any] | None = None,
    notes: str = "",
    amount: Decimal | None = None,
    currency: str = "",
    payment_method: str = "",
    placed_at: datetime | None = None,
) -> Order:
    """Create a confirmed (paid) order and reserve each line; all or nothing.

    Refuses an unknown SKU (`unknown_sku`, 400) or warehouse (`unknown_warehouse`, 400)
    naming the line, a taken number (`order_exists`, 409), and any line short of available
    stock (`insufficient_stock`, 409, every short line in `details.lines`), reserving
    nothing. Reservations are keyed by the line and never expire. Announces "order
    confirmed" after commit. Idempotency is the API's (`Idempotency-Key`).
    """
    products, warehouses = _lines_resolve(vendor, lines)
    now = timezone.now()
    with transaction.atomic():
        try:
            with transaction.atomic():
                order = Order.objects.create(
                    vendor=vendor,
                    order_number=order_number,
                    status=OrderStatus.PAID,
                    placed_at=placed_at or now,
                    paid_at=now,
                    customer=customer or {},
                    address=address or {},
                    notes=notes,
                    amount=amount,
                    currency=currency,
                    payment_method=payment_method,
                )
        except IntegrityError as exc:
            raise OrderExists(
                f"Order {order_number} already exists.",
                details={"field": "order_number", "order_number": order_number},
            ) from exc
        event_record(order, kind=OrderEvent.Kind.CREATED, actor=actor, to_status=order.status)
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                line_number=index + 1,
                sku=line.sku,
                name=line.name or products[index].name[:300],
                product=products[index],
                warehouse=warehouses[index],
                quantity=line.quantity,
                unit_price=line.unit_price,
                discount=line.discount,
                vat_rate=line.vat_rate,
                vat_amount=line.vat_amount,
                status=OrderLine.Status.NEEDS_MAPPING,  # until its stock is reserved
            )
            for index, line in enumerate(lines)
        )
        lines_stock_sync(order, actor=actor, allow_short=False)
        confirm_if_due(order)
        order.save()
    logger.info("order.created", order_id=order.pk, order_number=order_number, lines=len(lines))
    return order


def _lines_resolve(
    vendor: Vendor, lines: list[OrderLineInput]
) -> tuple[list[Product], list[Warehouse]]:
    skus = {line.sku for line in lines}
    by_sku = {p.sku: p for p in Product.objects.filter(vendor=vendor, sku__in=skus)}
    by_code = {w.code: w for w in Warehouse.objects.filter(vendor=vendor)}
    default = next((w for w in by_code.values() if w.is_default), None)
    products, warehouses = [], []
    for index, line in enumerate(lines):
        product = by_sku.get(line.sku)
        if product is None:
            raise UnknownSku(
                f"Line {index + 1}: no product {line.sku}.",
                details={"field": f"lines.{index}.sku", "line": index + 1, "sku": line.sku},
            )
        warehouse = by_code.get(line.warehouse) if line.warehouse else default
        if warehouse is None:
            raise UnknownWarehouse(
                f"Line {index + 1}: no warehouse {line.warehouse or '(default)'}.",
                details={
                    "field": f"lines.{index}.warehouse",
                    "line": index + 1,
                    "warehouse": line.warehouse,
                },
            )
        warehouse_check(product, warehouse)
        products.append(product)
        warehouses.append(warehouse)
    return products, warehouses


def order_cancel(*, order: Order, actor: Actor, reason: str = "") -> Order:
    """Cancel an API order that has not shipped and release its lines' stock.

    Locks the order. Idempotent: a cancelled order is returned as it is. Refuses a
    marketplace order (`marketplace_order`, 409) and an order that shipped or was returned
    (`invalid_transition`, 409).
    """
    with transaction.atomic():
        order = order_lock(order.pk)
        _api_order_check(order)
        if order.status == OrderStatus.CANCELLED:
            return order
        if not transition_allowed(order.status, OrderStatus.CANCELLED):
            raise InvalidTransition(
                f"A {order.status} order cannot be cancelled.",
                details={"status": order.status, "to": OrderStatus.CANCELLED},
            )
        status_set(order, OrderStatus.CANCELLED, actor=actor)
        if reason:
            order.notes = f"{order.notes}\nCancelled: {reason}".strip()
        lines_stock_sync(order, actor=actor, allow_short=False)
        order.save()
    return order


def _api_order_check(order: Order) -> None:
    if order.channel_id is not None:
        raise MarketplaceOrder(
            details={
                "order": order.pk,
                "channel": order.channel_id,
                "external_id": order.external_id,
            }
        )


def order_ship(*, order: Order, actor: Actor) -> Order:
    """Mark an open API order shipped: its lines' reservations are committed (on_hand down).

    Locks the order. Idempotent: a shipped (or delivered, completed) order is returned as
    it is. Refuses a marketplace order (`marketplace_order`, 409) and a cancelled or
    returned order (`invalid_transition`, 409).
    """
    with transaction.atomic():
        order = order_lock(order.pk)
        _api_order_check(order)
        if order.status in SHIPPED:
            return order
        if not transition_allowed(order.status, OrderStatus.SHIPPED):
            raise InvalidTransition(
                f"A {order.status} order cannot be shipped.",
                details={"status": order.status, "to": OrderStatus.SHIPPED},
            )
        status_set(order, OrderStatus.SHIPPED, actor=actor)
        lines_stock_sync(order, actor=actor, allow_short=False)
        confirm_if_due(order)
        order.save()
    return order


def order_reprocess(*, order: Order, actor: Actor) -> Order:
    """Match the order's unmapped lines again and bring every line's stock in line.

    For parked orders (a listing or product appeared) and for staff. Locks the order;
    idempotent. The `reprocessed` event is written when staff asked, or when a parked order
    came out of parking (a sweep finding nothing to map writes nothing).
    """
    with transaction.atomic():
        order = order_lock(order.pk)
        was_parked = order.needs_mapping
        order_reprocess_lines(order, actor=actor)
        if (was_parked and not order.needs_mapping) or actor.source == OrderEvent.Source.STAFF:
            event_record(
                order,
                kind=OrderEvent.Kind.REPROCESSED,
                actor=actor,
                from_status=order.status,
                details={"needs_mapping": order.needs_mapping},
            )
        order.save()
    return order


def order_line_map(
    *, line: OrderLine, product: Product, actor: Actor, warehouse: Warehouse | None = None
) -> OrderLine:
    """Map a line to a product (staff): its stock is then held as the order's state says.

    Locks the order. Refuses a product of another vendor (`vendor_mismatch`) and a line
    already holding stock (`line_already_mapped`); mapping a line to its own product again
    changes nothing. No warehouse: the channel's (or the vendor's default) is chosen.
    """
    with transaction.atomic():
        order = order_lock(line.order_id)
        line = OrderLine.objects.select_for_update().get(pk=line.pk)
        if product.vendor_id != order.vendor_id:
            raise DomainError(
                f"{product.sku} belongs to another vendor than the order.",
                code="vendor_mismatch",
                details={"field": "product"},
            )
        if line.reservation_id is not None:
            if line.product_id == product.pk:
                return line
            raise LineAlreadyMapped(details={"line": line.line_number, "sku": line.sku})
        warehouse = warehouse or line_warehouse(order, product, line.quantity)
        if warehouse is None:
            raise UnknownWarehouse(
                "No warehouse to take the stock from; name one.", details={"field": "warehouse"}
            )
        warehouse_check(product, warehouse)
        line.product, line.warehouse = product, warehouse
        line.save(update_fields=["product", "warehouse", "updated_at"])
        event_record(
            order,
            kind=OrderEvent.Kind.MAPPED,
            actor=actor,
            message=f"Line {line.line_number} ({line.sku or '-'}) mapped to {product.sku}.",
            details={"line": line.line_number, "product": product.sku},
        )
        order_reprocess_lines(order, actor=actor)
        order.save()
        line.refresh_from_db()
    return line


def order_line_restock(
    *, line: OrderLine, reason: str, actor: Actor, quantity: Decimal | None = None
) -> OrderLine:
    """Put a returned line's goods back on hand (staff): an `adjust` movement with a reason.

    Locks the order. Once per line: the movement is keyed by the line, so a repeat returns
    the line as it is. Refuses a line that is not returned (`line_not_returned`), a blank
    reason, or more than the line's quantity (`invalid_quantity`).
    """
    reason = reason.strip()
    if not reason:
        raise DomainError("A restock needs a reason.", code="reason_required")
    with transaction.atomic():
        order = order_lock(line.order_id)
        line = OrderLine.objects.select_related("product", "warehouse").get(pk=line.pk)
        if line.restocked_at is not None:
            return line
        if line.status != OrderLine.Status.RETURNED:
            raise LineNotReturned(details={"line": line.line_number, "status": line.status})
        quantity = line.quantity if quantity is None else quantity_clean(quantity)
        if not 0 < quantity <= line.quantity:
            raise DomainError(
                f"Restock between 0 and {line.quantity}.",
                code="invalid_quantity",
                details={"field": "quantity"},
            )
        stock_adjust(
            product=line.product,
            warehouse=line.warehouse,
            delta=quantity,
            origin=Origin(
                source="admin",
                actor=actor.actor,
                reason=f"return of order {order.order_number}: {reason}",
                reference=line_reference(line),
            ),
            idempotency_key=f"restock:{line_reference(line)}",
        )
        line.restocked_quantity, line.restocked_at = quantity, timezone.now()
        line.save(update_fields=["restocked_quantity", "restocked_at", "updated_at"])
        event_record(
            order,
            kind=OrderEvent.Kind.RESTOCKED,
            actor=actor,
            message=reason,
            details={"line": line.line_number, "quantity": str(quantity)},
        )
    return line


def orders_reprocess_parked(*, channel_id: int, actor: Actor) -> int:
    """Reprocess the channel's parked orders (one transaction each); return how many mapped.

    Run after listings of the channel were created (see `OrdersConfig.ready`). An order
    that fails is logged and skipped (it stays parked for the next run); the others go on.
    """
    ids = list(
        Order.objects.filter(channel_id=channel_id, needs_mapping=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    mapped, failed = _reprocess_each(ids, actor=actor)
    if ids:
        logger.info(
            "orders.parked_reprocessed",
            channel_id=channel_id,
            orders=len(ids),
            mapped=mapped,
            failed=failed,
        )
    return mapped


# Parked orders reprocessed per run of the periodic sweep; the rest wait for the next run.
PARKED_SWEEP_BATCH = 200


PARKED_SWEEP_CURSOR = "orders:parked_sweep:after"


def orders_reprocess_parked_all(*, actor: Actor, limit: int = PARKED_SWEEP_BATCH) -> int:
    """Reprocess parked orders of every channel, up to `limit` a run; return how many mapped.

    The periodic catch-all behind the listing hook: an order parked while a listing for it
    was being created (each missed the other's uncommitted rows), or whose reprocess could
    not be queued, is mapped here. Each run goes on after the last order the previous run
    took (a cursor in the shared cache, by id, wrapping around at the end), so orders that
    can never be mapped do not hold the others back. One transaction per order; a failing
    order is logged and skipped. Safe to run twice (a mapped order is no longer parked).
    """
    parked = Order.objects.filter(needs_mapping=True, channel__isnull=False).order_by("pk")
    try:
        after = int(cache.get(PARKED_SWEEP_CURSOR) or 0)
    except CACHE_ERRORS as exc:
        cache_degraded("parked_sweep_cursor", exc)
        after = 0
    ids = list(parked.filter(pk__gt=after).values_list("pk", flat=True)[:limit])
    if len(ids) < limit:
        # The end of the parked orders: go on from the start.
        ids += [pk for pk in parked.values_list("pk", flat=True)[: limit - len(ids)] if pk <= after]
    with contextlib.suppress(*CACHE_ERRORS):
        cache.set(PARKED_SWEEP_CURSOR, ids[-1] if ids else 0, timeout=None)
    mapped, failed = _reprocess_each(ids, actor=actor)
    if ids:
        logger.info("orders.parked_swept", orders=len(ids), mapped=mapped, failed=failed)
    return mapped


def _reprocess_each(ids: list[int], *, actor: Actor) -> tuple[int, int]:
    """Reprocess each order in its own transaction; return (mapped, failed)."""
    mapped = failed = 0
    for order_id in ids:
        try:
            order = order_reprocess(order=Order(pk=order_id), actor=actor)
        except Order.DoesNotExist:
            continue  # deleted meanwhile
        except Exception:
            # One order's failure (a bad row, a refused reservation) must not keep the
            # others parked; it stays parked and is tried again on the next run.
            failed += 1
            logger.exception("orders.reprocess_failed", order_id=order_id)
            continue
        mapped += not order.needs_mapping
    return mapped, failed
