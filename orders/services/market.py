"""Marketplace orders: apply an order's current detail, whichever path (webhook, poll) saw it.

The marketplace's status is authoritative, but events arrive late, twice and out of order:
an update older than the one applied, or a lower state after a higher one, is recorded and
changes nothing; the first update seen may be any state, and the order is brought straight
to it. While the order is open its lines follow the marketplace's quantities (units the buyer
or the seller cancelled leave the detail); once it ships they are final. Lines are matched to
products through the channel's listings; a line that matches nothing parks the order
(`needs_mapping`), it never drops it.
"""

from decimal import Decimal

import structlog
from django.db import IntegrityError, transaction

from channels_sync.adapters import MarketOrder, MarketOrderLine, OrderStatus, adapter_class
from channels_sync.models import Channel, ChannelListing
from inventory.models import Product
from orders.models import Order, OrderEvent, OrderLine
from orders.services.clean import market_order_clean
from orders.services.conflicts import duplicate_order_conflict_open
from orders.services.lifecycle import (
    ENDED,
    OPEN,
    Actor,
    confirm_if_due,
    event_record,
    line_warehouse,
    lines_stock_sync,
    needs_mapping_update,
    status_set,
    transition_allowed,
)

logger = structlog.get_logger(__name__)

MARKET_SOURCES = (OrderEvent.Source.WEBHOOK, OrderEvent.Source.POLL, OrderEvent.Source.SYSTEM)

# What `_state_apply` made of an update.
APPLIED, STALE, BACKWARD = "applied", "stale", "backward"


def order_apply_market(
    *, channel: Channel, order: MarketOrder, source: str, event_ref: str = ""
) -> Order:
    """Apply a marketplace order's current detail to our order; return the order.

    `source` is `webhook` or `poll` (`system` for reprocessing); `event_ref` (e.g.
    `webhook_event:123`) is recorded on the events written. Locks the order's row for the
    whole transaction, so a webhook and a poll applying the same order at once run one
    after the other; a first sighting inserts the order, and the unique (channel, external
    id) constraint settles two first sightings at once (the loser waits, then applies to
    the winner's row). Idempotent: applying the same detail again changes nothing and writes
    no event. Never drops an order: unmatched lines park it as `needs_mapping`.

    A status of None (a raw status that says nothing about stock) records the raw status
    and keeps the state; a new order then opens as paid (with `paid_at`) or pending payment.
    Stock follows the state through `lines_stock_sync` (reservations past zero are kept and
    marked short: the sale happened). An order that was open takes each line's current
    quantity (a line gone from the detail: 0), unless the update cancels, returns or is a
    lower state; each change is a `quantity` event and the line is held anew. Announces
    "order confirmed" after commit, once. A first sighting of a marketplace id another
    channel of the vendor has already opens a `duplicate_order` conflict.

    The detail is cleaned first (`market_order_clean`): refuses with `unstorable_order`
    (permanent) an order id, a quantity or an amount that cannot be stored as sent.
    """
    actor = Actor(source=source, actor=f"system:orders:{source}", event_ref=event_ref)
    market = market_order_clean(order)
    with transaction.atomic():
        row, created = _order_lock_or_create(channel, market)
        follow_quantities = False
        if created:
            event_record(
                row,
                kind=OrderEvent.Kind.CREATED,
                actor=actor,
                to_status=row.status,
                raw_status=market.raw_status,
                source_updated_at=market.updated_at,
            )
            duplicate_order_conflict_open(order=row)
        else:
            was_open = row.status in OPEN
            outcome = _state_apply(row, market, actor=actor)
            if outcome == STALE:
                return row  # an older update: recorded, nothing else changes
            # Cancelled: the quantities no longer matter (all is released) and a marketplace
            # may empty a cancelled order's lines; shipped: what was committed is final.
            follow_quantities = was_open and outcome == APPLIED and row.status not in ENDED
            _details_update(row, market)
        lines = _lines_merge(row, market, actor=actor, follow_quantities=follow_quantities)
        cls = adapter_class(channel.type)
        for line in lines:
            if line.product_id is None:
                _line_match(row, line, cls=cls)
        lines_stock_sync(row, actor=actor, allow_short=True)
        needs_mapping_update(row, lines, actor=actor)
        confirm_if_due(row)
        row.save()
    return row


def _order_locked(channel: Channel, external_id: str) -> Order | None:
    """The channel's order with this external id, its row locked (None: not there)."""
    return (
        Order.objects.select_for_update(of=("self",))
        .filter(channel=channel, external_id=external_id)
        .first()
    )


def _order_lock_or_create(channel: Channel, market: MarketOrder) -> tuple[Order, bool]:
    """The channel's order with this external id, locked; inserted when first seen."""
    external_id = market.external_id
    found = _order_locked(channel, external_id)
    if found is not None:
        return found, False
    number = (market.order_number or external_id)[:100]
    status = market.status or (
        OrderStatus.PAID if market.paid_at is not None else OrderStatus.PENDING_PAYMENT
    )
    # The number is unique per vendor: another channel's order may already show it.
    for candidate in (number, f"{number[:88]}-{channel.pk}"):
        try:
            with transaction.atomic():
                created = Order.objects.create(
                    vendor_id=channel.vendor_id,
                    channel=channel,
                    external_id=external_id,
                    order_number=candidate,
                    status=status,
                    raw_status=market.raw_status[:100],
                    placed_at=market.placed_at,
                    paid_at=market.paid_at,
                    source_updated_at=market.updated_at,
                    customer=market.customer or {},
                    address=market.address or {},
                    amount=market.amount,
                    currency=market.currency[:3],
                    payment_method=market.payment_method[:100],
                )
            created.channel = channel
            return created, True
        except IntegrityError:
            # Another worker inserted this order first (the insert waited for its commit),
            # or the number is taken: find out which.
            found = _order_locked(channel, external_id)
            if found is not None:
                return found, False
    raise IntegrityError(f"no free order number for {external_id} on channel {channel.pk}")


def _state_apply(row: Order, market: MarketOrder, *, actor: Actor) -> str:
    """Apply the update's state to an existing order; say what it was.

    `STALE`: older than the update applied, recorded, nothing else changes. `BACKWARD`: a
    lower state after a higher one: recorded (once for the same state and update time, as
    the marketplace repeats itself), and the order keeps its raw status and update time,
    which stay those of the state it is in. `APPLIED`: anything else.
    """
    when = market.updated_at
    if when is not None and row.source_updated_at is not None and when < row.source_updated_at:
        event_record(
            row,
            kind=OrderEvent.Kind.STALE,
            actor=actor,
            from_status=row.status,
            to_status=market.status or "",
            raw_status=market.raw_status,
            source_updated_at=when,
            message="Older than the update already applied.",
        )
        return STALE
    new = market.status
    if new is not None and new != row.status:
        if not transition_allowed(row.status, new):
            last = row.events.order_by("-id").first()
            repeated = (
                last is not None
                and last.kind == OrderEvent.Kind.BACKWARD
                and last.to_status == new
                and last.source_updated_at == when
            )
            if not repeated:
                event_record(
                    row,
                    kind=OrderEvent.Kind.BACKWARD,
                    actor=actor,
                    from_status=row.status,
                    to_status=new,
                    raw_status=market.raw_status,
                    source_updated_at=when,
                    message="A state never follows a higher one.",
                )
            return BACKWARD
        status_set(row, new, actor=actor, raw_status=market.raw_status, when=when)
    elif market.raw_status and market.raw_status != row.raw_status:
        event_record(
            row,
            kind=OrderEvent.Kind.RAW_STATUS,
            actor=actor,
            from_status=row.status,
            raw_status=market.raw_status,
            source_updated_at=when,
        )
    if market.raw_status:
        row.raw_status = market.raw_status
    if when is not None and (row.source_updated_at is None or when > row.source_updated_at):
        row.source_updated_at = when
    return APPLIED


def _details_update(row: Order, market: MarketOrder) -> None:
    """Take what the marketplace now says about the order (never blank out what we had)."""
    row.placed_at = row.placed_at or market.placed_at
    row.paid_at = row.paid_at or market.paid_at
    if market.customer:
        row.customer = market.customer
    if market.address:
        row.address = market.address
    if market.amount is not None:
        row.amount = market.amount
    row.currency = market.currency[:3] or row.currency
    row.payment_method = market.payment_method[:100] or row.payment_method


def _lines_merge(
    row: Order, market: MarketOrder, *, actor: Actor, follow_quantities: bool
) -> list[OrderLine]:
    """The order's lines, with the marketplace's new ones added (by `line_key`).

    One key sent twice (TikTok's one row per unit) is one line holding them all. With
    `follow_quantities`, each known line takes the quantity the detail now gives it (0 when
    it is gone from the detail) and the change is recorded; `lines_stock_sync` then holds
    the new quantity. A detail without lines changes no quantity: it says nothing of them.
    """
    lines = list(row.lines.order_by("line_number"))
    known = {line.line_key: line for line in lines if line.line_key}
    firsts: dict[str, MarketOrderLine] = {}
    quantities: dict[str, Decimal] = {}
    for index, market_line in enumerate(market.lines):
        key = market_line.line_key or f"#{index}"
        firsts.setdefault(key, market_line)
        quantities[key] = quantities.get(key, Decimal("0")) + Decimal(market_line.quantity)
    if follow_quantities and market.lines:
        for key, line in known.items():
            _line_quantity_set(
                row, line, quantities.get(key, Decimal("0")), actor=actor, when=market.updated_at
            )
    number = max((line.line_number for line in lines), default=0)
    for key, market_line in firsts.items():
        if key in known:
            continue
        number += 1
        lines.append(
            OrderLine.objects.create(
                order=row,
                line_number=number,
                line_key=key,
                sku=market_line.sku,
                keys=dict(market_line.keys),
                name=market_line.name,
                quantity=quantities[key],
                unit_price=market_line.unit_price,
                discount=market_line.discount,
                status=OrderLine.Status.NEEDS_MAPPING,
            )
        )
    return lines


def _line_quantity_set(
    row: Order, line: OrderLine, quantity: Decimal, *, actor: Actor, when
) -> None:
    """Give a line the marketplace's quantity and record the change (stock follows later)."""
    if quantity == line.quantity:
        return
    event_record(
        row,
        kind=OrderEvent.Kind.QUANTITY,
        actor=actor,
        from_status=row.status,
        source_updated_at=when,
        message=(
            f"Line {line.line_number} ({line.sku or line.line_key}): {line.quantity} -> {quantity}."
        ),
        details={"line": line.line_number, "from": str(line.quantity), "to": str(quantity)},
    )
    line.quantity = quantity
    line.save(update_fields=["quantity", "updated_at"])


def market_line_product(channel: Channel, *, sku: str, keys: dict, cls=None) -> Product | None:
    """The product a marketplace line stands for, or None.

    The channel's listing by the marketplace's keys (item and variant, and location when
    sent), then a listing by seller SKU, then the vendor's product with that SKU.
    """
    cls = cls or adapter_class(channel.type)
    known = {
        name: str(value).strip()
        for name, value in (keys or {}).items()
        if name in cls.key_columns and value not in (None, "")
    }
    columns = cls.keys_to_columns(known)
    listings = ChannelListing.objects.filter(channel=channel).select_related("product")
    if columns["external_item_id"]:
        by_keys = listings.filter(
            external_item_id=columns["external_item_id"],
            external_variant_id=columns["external_variant_id"],
        )
        if columns["external_location_id"]:
            by_keys = by_keys.filter(external_location_id=columns["external_location_id"])
        hit = by_keys.order_by("pk").first()
        if hit is not None:
            return hit.product
    for seller_sku in dict.fromkeys(s for s in (columns["external_sku"], sku) if s):
        hit = listings.filter(external_sku=seller_sku).order_by("pk").first()
        if hit is not None:
            return hit.product
    if sku:
        return Product.objects.filter(vendor_id=channel.vendor_id, sku=sku).first()
    return None


def _line_match(row: Order, line: OrderLine, *, cls) -> bool:
    """Map an unmapped line to its product and warehouse when it now matches; saved."""
    product = market_line_product(row.channel, sku=line.sku, keys=line.keys, cls=cls)
    if product is None:
        return False
    warehouse = line_warehouse(row, product, line.quantity)
    if warehouse is None:
        logger.warning("order.line_no_warehouse", order_id=row.pk, line=line.line_number)
        return False
    line.product, line.warehouse = product, warehouse
    line.save(update_fields=["product", "warehouse", "updated_at"])
    return True


def order_reprocess_lines(row: Order, *, actor: Actor) -> list[OrderLine]:
    """Match the locked order's unmapped lines again and bring the stock in line."""
    lines = list(row.lines.order_by("line_number"))
    if row.channel_id is not None:
        cls = adapter_class(row.channel.type)
        for line in lines:
            if line.product_id is None:
                _line_match(row, line, cls=cls)
    lines_stock_sync(row, actor=actor, allow_short=row.channel_id is not None)
    needs_mapping_update(row, lines, actor=actor)
    return lines
