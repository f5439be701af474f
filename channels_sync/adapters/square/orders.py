"""Square orders and notifications, read into the product's shapes.

Order model (https://developer.squareup.com/reference/square/objects/Order, `OrderState`):
`state` is OPEN, COMPLETED, CANCELED or DRAFT; `line_items[]` carry `uid`,
`catalog_object_id` (the item variation), `quantity` (a decimal string) and money as
`{amount, currency}` in the currency's smallest unit. There is no SKU on a line: lines
match listings by their keys (catalog object and the order's location).

The mapping to `OrderStatus`:

- DRAFT: `pending_payment`. A draft (an invoice not yet published, an order being
  assembled) cannot be paid or fulfilled yet; it holds stock like an unpaid order so that
  publishing it cannot find the stock sold elsewhere, and its cancellation releases it.
- OPEN: `paid` once nothing is due (`net_amount_due_money` 0, or, where that is absent,
  tenders covering `total_money`), else `pending_payment`; a paid order whose every
  fulfillment is PREPARED is `ready_to_ship`, and one whose every fulfillment is COMPLETED
  (handed over or shipped, the order not yet closed) is `shipped`.
- COMPLETED: `completed` (paid and fulfilled). CANCELED: `cancelled`.

Notifications (https://developer.squareup.com/reference/square/webhooks/order.updated,
`order.created`, `order.fulfillment.updated`, `inventory.count.updated`): the envelope is
`{merchant_id, type, event_id, created_at, data: {type, id, object: {...}}}`; Square may
deliver an event more than once, with the same `event_id`.
"""

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from channels_sync.adapters.base import (
    ChannelEvent,
    MarketOrder,
    MarketOrderLine,
    OrderStatus,
    StockReport,
    answer_digest,
    answer_int,
    answer_list,
    answer_money,
    answer_name,
    answer_object,
    answer_quantity,
    answer_text,
    stock_observed,
    unreadable,
)
from channels_sync.adapters.square.wire import count_quantity, when

ORDER_STATUSES: dict[str, OrderStatus | None] = {
    "DRAFT": OrderStatus.PENDING_PAYMENT,
    # Paid or not: the order's money decides (`market_order`).
    "OPEN": None,
    "COMPLETED": OrderStatus.COMPLETED,
    "CANCELED": OrderStatus.CANCELLED,
}
# Event types about an order, and the key of their object in `data.object`.
ORDER_EVENTS = {
    "order.created": "order_created",
    "order.updated": "order_updated",
    "order.fulfillment.updated": "order_fulfillment_updated",
}
INVENTORY_EVENT = "inventory.count.updated"
# ISO 4217 currencies without minor units among those Square takes payments in, and a few
# more; every other currency has two decimal places.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "XAF", "XOF"})


def order_status(raw_status: str) -> OrderStatus | None:
    return ORDER_STATUSES.get(str(raw_status or "").strip().upper())


def money(value: Any) -> tuple[Decimal | None, str]:
    """(amount in currency units, currency) of a Money object; (None, '') if unreadable."""
    if not isinstance(value, dict):
        return None, ""
    currency = answer_text(value.get("currency"), limit=3).upper()
    cents = answer_int(value.get("amount"))
    if cents is None:
        return None, currency
    places = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    return answer_money(Decimal(cents).scaleb(-places)), currency


def _paid(raw: dict[str, Any]) -> bool:
    due, _ = money(raw.get("net_amount_due_money"))
    total, _ = money(raw.get("total_money"))
    tenders = [t for t in answer_list(raw.get("tenders")) if isinstance(t, dict)]
    if due is not None:
        return due <= 0 and (bool(tenders) or total == 0)
    paid = sum((money(t.get("amount_money"))[0] or Decimal(0)) for t in tenders)
    return total is not None and bool(tenders) and paid >= total


def _paid_at(raw: dict[str, Any]) -> datetime | None:
    moments = [
        when(t.get("created_at")) for t in answer_list(raw.get("tenders")) if isinstance(t, dict)
    ]
    moments = [m for m in moments if m is not None]
    return max(moments) if moments else when(raw.get("closed_at")) or when(raw.get("updated_at"))


def _open_status(raw: dict[str, Any]) -> OrderStatus:
    if not _paid(raw):
        return OrderStatus.PENDING_PAYMENT
    states = {
        answer_text(f.get("state")).upper()
        for f in answer_list(raw.get("fulfillments"))
        if isinstance(f, dict)
    }
    if states == {"PREPARED"}:
        return OrderStatus.READY_TO_SHIP
    if states == {"COMPLETED"}:
        return OrderStatus.SHIPPED
    return OrderStatus.PAID


def market_order(raw: dict[str, Any]) -> MarketOrder | None:
    """A `MarketOrder` from an Order object; None without an id or a location, or with a
    catalog line that cannot be read (a quantity that is not a whole number of units, from 1,
    as an item sold by weight; an id unfit to store): such an order is left out, and taken
    again later.

    Lines without `catalog_object_id` (custom amounts, ad hoc items) are not stock and are
    left out of the lines; an order of only such lines has no lines.
    """
    external_id = answer_text(raw.get("id"))
    location_id = answer_text(raw.get("location_id"))
    raw_status = answer_text(raw.get("state")).upper()
    if not external_id or not location_id:
        return None
    status = order_status(raw_status)
    if raw_status == "OPEN":
        status = _open_status(raw)
    lines = []
    for item in answer_list(raw.get("line_items")):
        if not isinstance(item, dict):
            return None
        if item.get("catalog_object_id") in (None, ""):
            continue
        catalog_object_id = answer_text(item.get("catalog_object_id"))
        quantity = answer_quantity(item.get("quantity"))
        if not catalog_object_id or quantity is None:
            return None
        unit_price, _ = money(item.get("base_price_money"))
        discount, _ = money(item.get("total_discount_money"))
        lines.append(
            MarketOrderLine(
                line_key=answer_text(item.get("uid")) or catalog_object_id,
                sku="",
                keys={"catalog_object_id": catalog_object_id, "location_id": location_id},
                quantity=quantity,
                unit_price=unit_price,
                discount=discount,
                name=" ".join(
                    part
                    for part in (
                        answer_name(item.get("name")),
                        answer_name(item.get("variation_name")),
                    )
                    if part
                )[:255],
            )
        )
    amount, currency = money(raw.get("total_money"))
    recipient = _recipient(raw)
    customer = {
        key: value
        for key, value in (
            ("customer_id", answer_text(raw.get("customer_id"))),
            ("name", answer_name(recipient.get("display_name"))),
            ("email", answer_name(recipient.get("email_address"))),
            ("phone", answer_name(recipient.get("phone_number"))),
        )
        if value
    }
    tenders = [t for t in answer_list(raw.get("tenders")) if isinstance(t, dict)]
    return MarketOrder(
        external_id=external_id,
        raw_status=raw_status,
        status=status,
        lines=tuple(lines),
        placed_at=when(raw.get("created_at")),
        paid_at=_paid_at(raw) if status not in (None, OrderStatus.PENDING_PAYMENT) else None,
        updated_at=when(raw.get("updated_at")),
        order_number=answer_text(raw.get("reference_id")),
        customer=customer,
        address=answer_object(recipient.get("address")),
        amount=amount,
        currency=currency,
        payment_method=answer_name(tenders[0].get("type"), limit=100) if tenders else "",
        raw=raw,
    )


def _recipient(raw: dict[str, Any]) -> dict[str, Any]:
    """The first fulfillment's recipient (shipment, pickup or delivery), or {}."""
    for fulfillment in answer_list(raw.get("fulfillments")):
        if not isinstance(fulfillment, dict):
            continue
        for name in ("shipment_details", "pickup_details", "delivery_details"):
            details = fulfillment.get(name)
            if isinstance(details, dict) and isinstance(details.get("recipient"), dict):
                return details["recipient"]
    return {}


def notification_parse(body: bytes, *, channel_type: str) -> ChannelEvent:
    """A notification's event (see `SquareAdapter.webhook_parse`)."""
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        envelope = None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        return unreadable(body)
    kind = envelope["type"]
    data = envelope.get("data") if isinstance(envelope.get("data"), dict) else {}
    content = data.get("object") if isinstance(data.get("object"), dict) else {}
    event_id = answer_text(envelope.get("event_id"))
    if not event_id and envelope.get("event_id") not in (None, ""):
        # An id we cannot store still says "one notification": the body tells it apart.
        event_id = hashlib.sha256(body).hexdigest()
    if kind in ORDER_EVENTS:
        inner = content.get(ORDER_EVENTS[kind])
        inner = inner if isinstance(inner, dict) else {}
        raw_id = inner.get("order_id") or data.get("id")
        order_id = answer_text(raw_id)
        if raw_id not in (None, "") and not order_id:
            return unreadable(body)
        if order_id:
            status = answer_text(inner.get("state")).upper()
            updated_at = (
                when(inner.get("updated_at"))
                or when(inner.get("created_at"))
                or when(envelope.get("created_at"))
            )
            key = event_id or answer_digest(
                order_id, status, inner.get("version"), updated_at.isoformat() if updated_at else ""
            )
            return ChannelEvent(
                topic="order",
                event_key=key,
                order_id=order_id,
                status=status,
                updated_at=updated_at,
            )
    key = event_id or hashlib.sha256(body).hexdigest()
    if kind == INVENTORY_EVENT:
        reports, moments = _stock_reports(content, channel_type=channel_type)
        if reports:
            return ChannelEvent(
                topic="stock",
                event_key=key,
                # The oldest count's time: a report is never taken as newer than it is.
                updated_at=min(moments) if moments else when(envelope.get("created_at")),
                stock=tuple(reports),
            )
    return ChannelEvent(topic="other", event_key=key)


def _stock_reports(
    content: dict[str, Any], *, channel_type: str
) -> tuple[list[StockReport], list[datetime]]:
    """The IN_STOCK counts of an `inventory.count.updated` object (other states, such as
    SOLD or WASTE, are not what a listing sells). A quantity out of range is no figure (the
    listing is read back instead)."""
    reports: dict[tuple[str, str], StockReport] = {}
    moments = []
    for count in answer_list(content.get("inventory_counts")):
        if not isinstance(count, dict) or answer_text(count.get("state")).upper() != "IN_STOCK":
            continue
        keys = {
            "catalog_object_id": answer_text(count.get("catalog_object_id")),
            "location_id": answer_text(count.get("location_id")),
        }
        if not all(keys.values()):
            continue
        quantity = stock_observed(
            count_quantity(count.get("quantity")), channel_type=channel_type, keys=keys
        )
        reports[(keys["catalog_object_id"], keys["location_id"])] = StockReport(
            keys=keys, quantity=quantity
        )
        moment = when(count.get("calculated_at"))
        if moment is not None:
            moments.append(moment)
    return list(reports.values()), moments
