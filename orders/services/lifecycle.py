"""The order lifecycle shared by every order service: states, events, and the lines' stock.

A line's stock follows its order's state: open (pending payment, paid, ready to ship) holds a
reservation; shipped, delivered, completed and returned have committed it (on_hand down);
cancelled has released it. `lines_stock_sync` brings every mapped line to where its order's
state says it should be, so applying a state twice, or mapping a line late, does exactly the
missing steps. Callers hold the order's row lock (`order_lock`) and run inside a transaction.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from channels_sync.adapters.base import OrderStatus
from channels_sync.selectors import channel_sales_source
from core.correlation import get_correlation_id
from core.services import alert_send
from inventory.errors import InsufficientStock
from inventory.hooks import stock_changes_collected
from inventory.locks import stock_levels_lock
from inventory.models import Product, Reservation, StockLevel, Warehouse
from inventory.services import Origin, stock_commit, stock_release, stock_reserve
from orders import hooks
from orders.errors import OrderInsufficientStock
from orders.models import Order, OrderEvent, OrderLine
from orders.services.conflicts import oversell_conflict_open

logger = structlog.get_logger(__name__)

S = OrderStatus
OPEN = frozenset({S.PENDING_PAYMENT, S.PAID, S.READY_TO_SHIP})
SHIPPED = frozenset({S.SHIPPED, S.DELIVERED, S.COMPLETED})
CONFIRMED = frozenset({S.PAID, S.READY_TO_SHIP, S.SHIPPED, S.DELIVERED, S.COMPLETED})
ENDED = frozenset({S.CANCELLED, S.RETURNED})
_FORWARD = [S.PENDING_PAYMENT, S.PAID, S.READY_TO_SHIP, S.SHIPPED, S.DELIVERED, S.COMPLETED]
RANK = {state: rank for rank, state in enumerate(_FORWARD)}


@dataclass(frozen=True)
class Actor:
    """Who changes an order: the event's source, the actor, and what triggered it."""

    source: str  # an `OrderEvent.Source`
    actor: str
    event_ref: str = ""


def transition_allowed(current: str, new: str) -> bool:
    """Whether an order in `current` may move to `new` (a different state).

    Forward only along pending payment < paid < ready to ship < shipped < delivered <
    completed; cancelled ends an order that has not shipped, returned ends any order that
    is not cancelled; nothing follows cancelled or returned.
    """
    if current == new or current in ENDED:
        return False
    if new == S.CANCELLED:
        return current in OPEN
    if new == S.RETURNED:
        return True
    return RANK[S(new)] > RANK[S(current)]


def order_lock(order_id: int) -> Order:
    """Lock an order's row (inside a transaction) and return it fresh."""
    return Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)


def event_record(
    order: Order,
    *,
    kind: str,
    actor: Actor,
    from_status: str = "",
    to_status: str = "",
    raw_status: str = "",
    source_updated_at: Any = None,
    message: str = "",
    details: dict | None = None,
) -> OrderEvent:
    """Write one event of the order (in the caller's transaction)."""
    event = OrderEvent.objects.create(
        order=order,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        raw_status=raw_status[:100],
        source=actor.source,
        actor=actor.actor[:150],
        event_ref=actor.event_ref[:200],
        source_updated_at=source_updated_at,
        message=message[:500],
        details=details or {},
        correlation_id=get_correlation_id() or "",
    )
    logger.info(
        "order.event",
        order_id=order.pk,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        source=actor.source,
        event_ref=actor.event_ref,
    )
    return event


def status_set(order: Order, new: str, *, actor: Actor, raw_status: str = "", when: Any = None):
    """Move the order to `new` and record it (the caller checked `transition_allowed`).

    Moving to cancelled announces "order cancelled" after commit (every path that cancels
    an order comes through here: the marketplace's, the API's and the console's).
    """
    if new == S.CANCELLED and order.status != S.CANCELLED:
        hooks.order_cancelled(order.pk)
    event_record(
        order,
        kind=OrderEvent.Kind.STATUS,
        actor=actor,
        from_status=order.status,
        to_status=new,
        raw_status=raw_status,
        source_updated_at=when,
    )
    order.status = new


def confirm_if_due(order: Order) -> bool:
    """Mark the order confirmed the first time it is paid or further; announce after commit."""
    if order.confirmed_at is not None or order.status not in CONFIRMED:
        return False
    order.confirmed_at = timezone.now()
    hooks.order_confirmed(order.pk)
    return True


def stock_origin(order: Order, actor: Actor, line: OrderLine) -> Origin:
    """The ledger origin of a line's stock change.

    A channel's orders write `channel:<id>` (what demand-weighted allocation reads as the
    channel's sales, see `channels_sync.selectors.sales_last_30_days`), whoever acts.
    """
    if order.channel_id is not None:
        source = channel_sales_source(order.channel_id)
    else:
        source = {OrderEvent.Source.API: "api", OrderEvent.Source.STAFF: "admin"}.get(
            actor.source, "system"
        )
    return Origin(
        source=source,
        actor=actor.actor,
        reason=f"order {order.order_number} {order.status}",
        reference=line_reference(line),
    )


# What holds an order line's reservation: only the order's services release or commit it.
RESERVATION_OWNER = "order_line"


def line_reference(line: OrderLine) -> str:
    return f"order_line:{line.pk}"


def line_reservation_key(line: OrderLine) -> str:
    """The idempotency key of the line's current hold: `order_line:<id>`, then `:r<n>`.

    A line whose quantity changes is held anew (the old reservation released, a new one
    made) under its next revision, since a key stands for one quantity.
    """
    base = line_reference(line)
    return base if line.revision == 0 else f"{base}:r{line.revision}"


def line_target(order: Order, line: OrderLine) -> set[str]:
    """The statuses a line may have when its stock matches its order's state."""
    if line.quantity <= 0:
        return {OrderLine.Status.RELEASED}  # nothing to hold (a line the marketplace zeroed)
    if line.product_id is None or line.warehouse_id is None:
        return {OrderLine.Status.NEEDS_MAPPING}
    if order.status in OPEN:
        return {OrderLine.Status.RESERVED, OrderLine.Status.SHORT}
    if order.status in SHIPPED:
        return {OrderLine.Status.COMMITTED}
    if order.status == S.RETURNED:
        return {OrderLine.Status.RETURNED}
    return {OrderLine.Status.RELEASED}


def line_in_step(order: Order, line: OrderLine) -> bool:
    """Whether the line's status and its reservation are where the order's state says."""
    if line.status not in line_target(order, line):
        return False
    reservation = line.reservation
    if line.status in (OrderLine.Status.RESERVED, OrderLine.Status.SHORT):
        return (
            reservation is not None
            and reservation.status == Reservation.Status.ACTIVE
            and reservation.quantity == line.quantity
        )
    if line.status in (OrderLine.Status.COMMITTED, OrderLine.Status.RETURNED):
        return reservation is not None and reservation.status == Reservation.Status.COMMITTED
    return reservation is None or reservation.status != Reservation.Status.ACTIVE


def line_warehouse(order: Order, product: Product, quantity: Decimal) -> Warehouse | None:
    """Where a marketplace line takes its stock from (an unlocked read; a choice only).

    The channel's first active warehouse (primary-key order) that has the quantity
    available, else its default one, else its first; a channel without warehouses (and an
    API order naming none) takes the vendor's default warehouse. None: nowhere to take it.
    """
    candidates: list[Warehouse] = []
    if order.channel_id is not None:
        candidates = list(
            Warehouse.objects.filter(
                channels=order.channel_id, vendor_id=product.vendor_id, active=True
            ).order_by("pk")
        )
    if not candidates:
        return Warehouse.objects.filter(
            vendor_id=product.vendor_id, is_default=True, active=True
        ).first()
    if len(candidates) > 1:
        available = {
            level.warehouse_id: level.available
            for level in StockLevel.objects.filter(product=product, warehouse__in=candidates)
        }
        for warehouse in candidates:
            if available.get(warehouse.pk, Decimal("0")) >= quantity:
                return warehouse
    return next((w for w in candidates if w.is_default), candidates[0])


def lines_stock_sync(order: Order, *, actor: Actor, allow_short: bool) -> list[OrderLine]:
    """Reserve, commit or release each mapped line's stock as the order's state says.

    The caller holds the order's lock. The stock levels of every line to change are locked
    first, in one primary-key ordered statement, and the listings are marked dirty once at
    the end (`stock_changes_collected`), so two orders sharing products cannot deadlock.
    Reservations are keyed by the line (`order_line:<line id>`, then `:r<n>` once its
    quantity changed), owned by it (the API and the console cannot close them), and never
    expire. A line whose quantity differs from its reservation's is held anew.
    `allow_short` (a marketplace's sale, a fact) reserves past the available stock and marks
    the line `short` (an "oversold" alert per product and hour, and an `oversell` conflict
    for the console, opened after the dirty marks); otherwise every line short
    of stock is named in one `insufficient_stock` refusal and nothing is kept. Returns the
    lines changed.
    """
    lines = list(
        order.lines.select_related("product", "warehouse", "reservation").order_by("line_number")
    )
    todo = [line for line in lines if not line_in_step(order, line)]
    if not todo:
        return []
    pairs = [
        (line.product, line.warehouse) for line in todo if line.product_id and line.warehouse_id
    ]
    short: list[dict] = []
    oversold: list[tuple[OrderLine, Decimal]] = []
    with stock_changes_collected():
        if pairs:
            stock_levels_lock(pairs)
        for line in todo:
            try:
                _line_stock_sync(
                    order, line, actor=actor, allow_short=allow_short, oversold=oversold
                )
            except InsufficientStock as exc:
                short.append({"line": line.line_number, **exc.details})
        if short:
            raise OrderInsufficientStock(details={"lines": short})
        OrderLine.objects.bulk_update(todo, ["status", "reservation", "revision", "updated_at"])
    # After the dirty marks (the end of the block above): a conflict row is locked after the
    # listings, as a conflict's resolution locks them.
    for line, available in oversold:
        oversell_conflict_open(order=order, line=line, available=available)
    return todo


def _line_stock_sync(
    order: Order,
    line: OrderLine,
    *,
    actor: Actor,
    allow_short: bool,
    oversold: list[tuple[OrderLine, Decimal]],
) -> None:
    line.updated_at = timezone.now()
    if line.product_id is None or line.warehouse_id is None:
        # Unmapped, it holds nothing; zeroed, it has nothing left to map.
        unmapped = line.quantity > 0
        line.status = OrderLine.Status.NEEDS_MAPPING if unmapped else OrderLine.Status.RELEASED
        return
    origin = stock_origin(order, actor, line)
    reservation = line.reservation
    # What the line should hold while open (or hold until committed): nothing once the
    # order is cancelled or the line zeroed.
    wanted = line.quantity if order.status != S.CANCELLED and line.quantity > 0 else 0
    status = reservation.status if reservation is not None else None
    if status == Reservation.Status.ACTIVE and reservation.quantity != wanted:
        stock_release(reservation=reservation, origin=origin, owner=RESERVATION_OWNER)
        line.status = OrderLine.Status.RELEASED
        if not wanted:
            return
        reservation = None  # held anew below, under the line's next revision
        line.revision += 1
    elif status in (Reservation.Status.RELEASED, Reservation.Status.EXPIRED) and wanted:
        if line.status != OrderLine.Status.RELEASED:
            # Closed outside the order (before the inventory refused that): the order
            # still holds the stock, so it is held again, and the record says why.
            _stock_mismatch(order, line, reservation, actor=actor, message="held again")
        reservation = None
        line.revision += 1
    elif status == Reservation.Status.COMMITTED and order.status not in SHIPPED | {S.RETURNED}:
        # Committed outside the order: the stock has left and cannot be held or given back.
        # The line says so rather than claim a reservation it no longer has.
        _stock_mismatch(order, line, reservation, actor=actor, message="already committed")
        line.status = OrderLine.Status.COMMITTED
        return
    if not wanted:
        line.status = OrderLine.Status.RELEASED
        return
    if reservation is None:
        # A savepoint: a refused line (API orders) leaves nothing behind while the others
        # are still tried, so the refusal can name every short line.
        with transaction.atomic():
            reservation = stock_reserve(
                product=line.product,
                warehouse=line.warehouse,
                quantity=line.quantity,
                origin=origin,
                expires=False,
                idempotency_key=line_reservation_key(line),
                enforce=not allow_short,
                owner=RESERVATION_OWNER,
            )
        line.reservation = reservation
        short = line.product.stock_is_enforced and reservation.level.available < 0
        line.status = OrderLine.Status.SHORT if short else OrderLine.Status.RESERVED
        if short and not reservation.replayed:
            _oversold(order, line, reservation, actor=actor)
            oversold.append((line, reservation.level.available))
    if order.status in OPEN:
        return
    if reservation.status == Reservation.Status.ACTIVE:
        stock_commit(reservation=reservation, origin=origin, owner=RESERVATION_OWNER)
    line.status = (
        OrderLine.Status.RETURNED if order.status == S.RETURNED else OrderLine.Status.COMMITTED
    )


def _stock_mismatch(
    order: Order, line: OrderLine, reservation: Reservation, *, actor: Actor, message: str
) -> None:
    """Record, once per reservation, that a line's reservation was closed outside the order."""
    if order.events.filter(
        kind=OrderEvent.Kind.STOCK_MISMATCH, details__reservation=reservation.pk
    ).exists():
        return
    event_record(
        order,
        kind=OrderEvent.Kind.STOCK_MISMATCH,
        actor=actor,
        from_status=order.status,
        message=(
            f"Line {line.line_number}: its reservation {reservation.pk} was "
            f"{reservation.status} outside the order; {message}."
        ),
        details={
            "line": line.line_number,
            "reservation": reservation.pk,
            "reservation_status": reservation.status,
        },
    )
    logger.warning(
        "order.line_stock_mismatch",
        order_id=order.pk,
        line=line.line_number,
        reservation_id=reservation.pk,
        reservation_status=reservation.status,
    )


def _oversold(order: Order, line: OrderLine, reservation: Reservation, *, actor: Actor) -> None:
    level = reservation.level
    product = line.product
    event_record(
        order,
        kind=OrderEvent.Kind.OVERSOLD,
        actor=actor,
        message=f"{product.sku}: {level.available} available after this line.",
        details={"line": line.line_number, "sku": product.sku, "available": str(level.available)},
    )
    hour = timezone.now().strftime("%Y-%m-%dT%H")
    # One alert per product and hour, however many orders oversell it (the key says so;
    # alert_send suppresses repeats of a key across processes).
    alert_send(
        title="Oversold",
        text=(
            f"{product.sku} in {line.warehouse.code}: {level.available} available after "
            f"order {order.order_number}."
        ),
        key=f"oversold:{product.pk}:{hour}",
        fields={"SKU": product.sku, "Warehouse": line.warehouse.code, "Order": order.order_number},
    )


def needs_mapping_update(order: Order, lines: Iterable[OrderLine], *, actor: Actor) -> None:
    """Set the order's `needs_mapping` from its lines, recording a change as an event."""
    unmapped = [
        line.line_number
        for line in lines
        if (line.product_id is None or not line.warehouse_id) and line.quantity > 0
    ]
    parked = bool(unmapped)
    if parked == order.needs_mapping:
        return
    order.needs_mapping = parked
    event_record(
        order,
        kind=OrderEvent.Kind.PARKED if parked else OrderEvent.Kind.MAPPED,
        actor=actor,
        details={"lines": unmapped},
        message="Lines match no listing or product." if parked else "Every line is mapped.",
    )
