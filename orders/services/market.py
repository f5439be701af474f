"""Marketplace orders: apply an order's current detail, whichever path (webhook, poll) saw it.

The marketplace's status is authoritative, but events arrive late, twice and out of order:
an update older than the one applied, or a lower state after a higher one, is recorded and
changes nothing; the first update seen may be any state, and the order is brought straight
to it. Lines are matched to products through the channel's listings; a line that matches
nothing parks the order (`needs_mapping`), it never drops it.
"""

from decimal import Decimal

import structlog
from django.db import IntegrityError, transaction

from channels_sync.adapters import MarketOrder, MarketOrderLine, OrderStatus, adapter_class
from channels_sync.models import Channel, ChannelListing
from inventory.models import Product
from orders.models import Order, OrderEvent, OrderLine
from orders.services.lifecycle import (
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
    marked short: the sale happened). Announces "order confirmed" after commit, once.
    """
    actor = Actor(source=source, actor=f"system:orders:{source}", event_ref=event_ref)
    market = order
    with transaction.atomic():
        row, created = _order_lock_or_create(channel, market)
        if created:
            event_record(
                row,
                kind=OrderEvent.Kind.CREATED,
                actor=actor,
                to_status=row.status,
                raw_status=market.raw_status,
                source_updated_at=market.updated_at,
            )
        elif not _state_apply(row, market, actor=actor):
            return row  # an older update: recorded, nothing else changes
        if not created:
            _details_update(row, market)
        lines = _lines_merge(row, market.lines)
        cls = adapter_class(channel.type)
        for line in lines:
            if line.product_id is None:
                _line_match(row, line, cls=cls)
        lines_stock_sync(row, actor=actor, allow_short=True)
        needs_mapping_update(row, lines, actor=actor)
        confirm_if_due(row)
        row.save()
    return row


def _order_lock_or_create(channel: Channel, market: MarketOrder) -> tuple[Order, bool]:
    """The channel's order with this external id, locked; inserted when first seen."""
    external_id = market.external_id
    found = (
        Order.objects.select_for_update(of=("self",))
        .filter(channel=channel, external_id=external_id)
        .first()
    )
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
            found = (
                Order.objects.select_for_update(of=("self",))
                .filter(channel=channel, external_id=external_id)
                .first()
            )
            if found is not None:
                return found, False
    raise IntegrityError(f"no free order number for {external_id} on channel {channel.pk}")


def _state_apply(row: Order, market: MarketOrder, *, actor: Actor) -> bool:
    """Apply the update's state to an existing order; False when it is older (ignored)."""
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
        return False
    new = market.status
    if new is not None and new != row.status:
        if transition_allowed(row.status, new):
            status_set(row, new, actor=actor, raw_status=market.raw_status, when=when)
        else:
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
    elif market.raw_status and market.raw_status[:100] != row.raw_status:
        event_record(
            row,
            kind=OrderEvent.Kind.RAW_STATUS,
            actor=actor,
            from_status=row.status,
            raw_status=market.raw_status,
            source_updated_at=when,
        )
    if market.raw_status:
        row.raw_status = market.raw_status[:100]
    if when is not None and (row.source_updated_at is None or when > row.source_updated_at):
        row.source_updated_at = when
    return True


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


def _lines_merge(row: Order, market_lines: tuple[MarketOrderLine, ...]) -> list[OrderLine]:
    """The order's lines, with the marketplace's new ones added (by `line_key`).

    A line once recorded keeps its quantity: its reservation is keyed by the line, and the
    marketplace's later changes to a line show up as a cancellation or a return.
    """
    lines = list(row.lines.order_by("line_number"))
    known = {line.line_key for line in lines}
    merged: dict[str, MarketOrderLine] = {}
    quantities: dict[str, Decimal] = {}
    for index, market_line in enumerate(market_lines):
        key = (market_line.line_key or f"#{index}")[:300]
        if key in known:
            continue
        merged.setdefault(key, market_line)
        # One key twice (one row per unit): the line holds them all.
        quantities[key] = quantities.get(key, Decimal("0")) + Decimal(market_line.quantity)
    number = max((line.line_number for line in lines), default=0)
    for key, market_line in merged.items():
        number += 1
        lines.append(
            OrderLine.objects.create(
                order=row,
                line_number=number,
                line_key=key,
                sku=market_line.sku[:200],
                keys=dict(market_line.keys),
                name=market_line.name[:300],
                quantity=quantities[key],
                unit_price=market_line.unit_price,
                discount=market_line.discount,
                status=OrderLine.Status.NEEDS_MAPPING,
            )
        )
    return lines


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
