"""Amazon Orders API v0: orders updated in a range, and an order's detail and items.

- `GET /orders/v0/orders?MarketplaceIds&LastUpdatedAfter&LastUpdatedBefore&FulfillmentChannels
  &MaxResultsPerPage` answers `payload.Orders[]` and `payload.NextToken` (the next page is
  asked with `NextToken` and `MarketplaceIds` alone). `LastUpdatedBefore` must be at least two
  minutes before the request ("Orders API v0 reference", getOrders): the newest two minutes
  and `ORDERS_LAG_MARGIN` more (our clock may run a little ahead of Amazon's) are listed by
  a later poll (`ORDERS_LAG`). A 400 that names the time anyway is `retryable`: the next
  poll asks with a later clock. getOrders allows 0.0167 calls a second (burst 20), so it is
  called only by the order poll, one page per token, over windows of an hour
  (`ORDERS_MAX_WINDOW`: the poll walks a longer one in slices, moving its cursor after each;
  slices grow past the hour when a catch-up would need more than a burst of them).
- `GET /orders/v0/orders/{orderId}` (getOrder) answers `payload` (the order);
  `GET /orders/v0/orders/{orderId}/orderItems` (getOrderItems) answers
  `payload.OrderItems[]` (`OrderItemId`, `SellerSKU`, `QuantityOrdered`, `ItemPrice`, ...)
  with `NextToken` paging. Both 0.5 calls a second (burst 30).

Only merchant-fulfilled orders (`FulfillmentChannels=MFN`) are listed: orders Amazon fulfils
(FBA, `AFN`) ship from Amazon's stock, never the seller's warehouses this product keeps.
Amazon sends order notifications only to SQS or EventBridge, never to an HTTP endpoint, so
this poll is how Amazon orders arrive.
"""

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_sync.adapters.amazon.client import SpApiClient, iso_z
from channels_sync.adapters.base import (
    ANSWER_SKU_MAX,
    QUANTITY_MAX,
    AdapterError,
    MarketOrder,
    MarketOrderLine,
    OrderRef,
    OrderStatus,
    Outcome,
    answer_int,
    answer_money,
    answer_name,
    answer_rows,
    answer_text,
)

ORDERS_PATH = "/orders/v0/orders"
# getOrders refuses a `LastUpdatedBefore` later than two minutes before the request; the
# margin covers a clock of ours a little ahead of Amazon's.
ORDERS_LAG = timedelta(minutes=2)
ORDERS_LAG_MARGIN = timedelta(seconds=10)
# The window one listing covers: at most ~20 pages (getOrders' burst) of a busy hour, so a
# throttle loses little and the poll's cursor moves slice by slice. (A long catch-up is cut
# into fewer, longer slices: `webhooks.services.polling.MAX_SLICES_PER_POLL`.)
ORDERS_MAX_WINDOW = timedelta(hours=1)
# A getOrders refusal (400) about the time range: our clock against Amazon's, not our request.
_TIME_REFUSAL = re.compile(r"LastUpdated|CreatedBefore|\bdate\b|\btime\b", re.IGNORECASE)
ORDERS_PAGE_SIZE = 100  # the documented maximum of `MaxResultsPerPage`
# A guard against a list that never ends (a server minting a new NextToken every time).
ORDER_PAGES_MAX = 1000
ITEM_PAGES_MAX = 100

# Orders API v0 `OrderStatus` ("Orders API v0 reference", Order object).
ORDER_STATUSES: dict[str, OrderStatus | None] = {
    # Placed, payment not yet authorised (Pending), or a pre-order not yet available
    # (PendingAvailability): the buyer has not paid, as with other marketplaces' UNPAID.
    "Pending": OrderStatus.PENDING_PAYMENT,
    "PendingAvailability": OrderStatus.PENDING_PAYMENT,
    # Paid and not shipped: the stock is spoken for.
    "Unshipped": OrderStatus.PAID,
    # Some items shipped, some not: not shipped as a whole, so the rest stays reserved, as
    # TikTok's PARTIALLY_SHIPPING (ready to ship) until Shipped.
    "PartiallyShipped": OrderStatus.READY_TO_SHIP,
    "Shipped": OrderStatus.SHIPPED,
    # Every item shipped; only the seller's invoice confirmation (BR, IN) is missing.
    "InvoiceUnconfirmed": OrderStatus.SHIPPED,
    "Canceled": OrderStatus.CANCELLED,
    # "No items in the order can be fulfilled" (multi-channel fulfilment): nothing will ship,
    # so whatever it held is released, as a cancellation.
    "Unfulfillable": OrderStatus.CANCELLED,
}


def order_status(raw_status: str) -> OrderStatus | None:
    return ORDER_STATUSES.get(str(raw_status or "").strip())


def when(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 answer field (None: absent or unreadable)."""
    text = answer_text(value)
    try:
        moment = parse_datetime(text) if text else None
    except ValueError:
        return None
    if moment is not None and timezone.is_naive(moment):
        return None
    return moment


class OrdersReader:
    """The order calls of one Amazon channel. Orders listed by `updated` are kept, so that
    `fetch` (in the same poll) asks Amazon only for their items."""

    def __init__(self, adapter: Any, client: SpApiClient) -> None:
        self.adapter = adapter
        self.client = client
        self.listed: dict[str, dict[str, Any]] = {}

    def updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Merchant-fulfilled orders updated in [since, until), every page.

        `until` is cut to two minutes and a margin before now (`ORDERS_LAG`,
        `ORDERS_LAG_MARGIN`); a range that ends before it begins lists nothing. Raises
        `AdapterError` (throttled with the wait for a token; retryable for a 400 about the
        time range, which only a clock ahead of Amazon's causes).
        """
        until = min(until, timezone.now() - ORDERS_LAG - ORDERS_LAG_MARGIN)
        if until <= since:
            return []
        marketplace = str(self.adapter.credentials.get("marketplace_id", ""))
        params: dict[str, str] = {
            "MarketplaceIds": marketplace,
            "LastUpdatedAfter": iso_z(since),
            "LastUpdatedBefore": iso_z(until),
            "FulfillmentChannels": "MFN",
            "MaxResultsPerPage": str(ORDERS_PAGE_SIZE),
        }
        refs: dict[str, OrderRef] = {}
        seen_tokens: set[str] = set()
        for _page in range(ORDER_PAGES_MAX):
            try:
                answer = self.client.call_or_raise(
                    "GET", ORDERS_PATH, operation="getOrders", what="getOrders", params=params
                )
            except AdapterError as exc:
                text = str(exc)
                _head, refused, detail = text.partition("HTTP 400")
                if exc.outcome == Outcome.PERMANENT and refused and _TIME_REFUSAL.search(detail):
                    raise AdapterError(text, outcome=Outcome.RETRYABLE) from None
                raise
            payload = _payload(answer.body, "getOrders")
            orders = answer_rows(payload, "Orders", what="getOrders")
            for order in orders:
                order_id = (
                    answer_text(order.get("AmazonOrderId")) if isinstance(order, dict) else ""
                )
                if not order_id:
                    continue
                self.listed[order_id] = order
                refs[order_id] = OrderRef(
                    external_id=order_id,
                    raw_status=answer_text(order.get("OrderStatus")),
                    updated_at=when(order.get("LastUpdateDate")),
                )
            token = answer_text(payload.get("NextToken"), limit=10_000)
            if not token or not orders:
                return list(refs.values())
            if token in seen_tokens:
                raise AdapterError("getOrders: the same NextToken came back twice")
            seen_tokens.add(token)
            params = {"MarketplaceIds": marketplace, "NextToken": token}
        raise AdapterError(f"getOrders: more than {ORDER_PAGES_MAX} pages in one range")

    def fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The detail of these orders: the order (as just listed, else getOrder) and all its
        items (getOrderItems). Unknown orders (404) are left out, and so are orders without
        items or with an item that cannot be read. Raises `AdapterError`."""
        orders = []
        for order_id in dict.fromkeys(str(i).strip() for i in external_ids if str(i).strip()):
            path = f"{ORDERS_PATH}/{quote(order_id, safe='')}"
            order = self.listed.pop(order_id, None)
            if order is None:
                order = self._known("GET", path, "getOrder")
                if order is None:
                    continue
            items = self._items(path)
            if items is None:
                continue
            market = market_order(order, items)
            if market is not None:
                orders.append(market)
        return orders

    def _known(self, method: str, path: str, operation: str, **kwargs: Any) -> dict | None:
        """The payload of a call about one order; None when Amazon does not know it (404)."""
        try:
            answer = self.client.call_or_raise(
                method, path, operation=operation, what=operation, **kwargs
            )
        except AdapterError as exc:
            if exc.outcome == Outcome.PERMANENT and "HTTP 404" in str(exc):
                return None
            raise
        return _payload(answer.body, operation)

    def _items(self, order_path: str) -> list[Any] | None:
        items: list[Any] = []
        params: dict[str, str] | None = None
        for _page in range(ITEM_PAGES_MAX):
            payload = self._known("GET", f"{order_path}/orderItems", "getOrderItems", params=params)
            if payload is None:
                return None
            items.extend(answer_rows(payload, "OrderItems", what="getOrderItems"))
            token = answer_text(payload.get("NextToken"), limit=10_000)
            if not token:
                return items
            params = {"NextToken": token}
        raise AdapterError(f"getOrderItems: more than {ITEM_PAGES_MAX} pages")


def _payload(body: dict | None, what: str) -> dict[str, Any]:
    payload = (body or {}).get("payload")
    if not isinstance(payload, dict):
        raise AdapterError(f"{what}: the answer has no payload object", outcome=Outcome.RETRYABLE)
    return payload


def market_order(order: dict[str, Any], items: list[Any]) -> MarketOrder | None:
    """A `MarketOrder` from an Orders API order and its items; None without an order id,
    without items, or with an item that cannot be read (no SKU or item id fit to store, a
    quantity that is no whole number of 0 or more).

    `QuantityOrdered` is taken as it is, 0 included: Amazon shows 0 for the items of a
    cancelled order and for an item cancelled out of an open one (its units are no longer
    sold). `ItemPrice` is the line's total, so the unit price is it divided by the quantity.
    """
    order_id = answer_text(order.get("AmazonOrderId"))
    if not order_id or not items:
        return None
    lines = []
    for item in items:
        if not isinstance(item, dict):
            return None
        item_id = answer_text(item.get("OrderItemId"))
        sku = answer_text(item.get("SellerSKU"), limit=ANSWER_SKU_MAX)
        quantity = answer_int(item.get("QuantityOrdered"))
        if not item_id or not sku or quantity is None or not 0 <= quantity <= QUANTITY_MAX:
            return None
        total = _money(item.get("ItemPrice"))
        discount = _money(item.get("PromotionDiscount"))
        lines.append(
            MarketOrderLine(
                line_key=item_id,
                sku=sku,
                keys={"seller_sku": sku} if len(sku) <= 100 else {},
                quantity=Decimal(quantity),
                unit_price=(total / quantity).quantize(Decimal("0.0001"))
                if total is not None and quantity
                else None,
                discount=discount,
                name=answer_name(item.get("Title"), limit=255),
            )
        )
    raw_status = answer_text(order.get("OrderStatus"))
    status = order_status(raw_status)
    placed = when(order.get("PurchaseDate"))
    total = order.get("OrderTotal") if isinstance(order.get("OrderTotal"), dict) else {}
    buyer = order.get("BuyerInfo") if isinstance(order.get("BuyerInfo"), dict) else {}
    address = order.get("ShippingAddress") if isinstance(order.get("ShippingAddress"), dict) else {}
    return MarketOrder(
        external_id=order_id,
        raw_status=raw_status,
        status=status,
        lines=tuple(lines),
        placed_at=placed,
        # Amazon names no payment time: an order past Pending was paid when it was placed.
        paid_at=placed if status not in (None, OrderStatus.PENDING_PAYMENT) else None,
        updated_at=when(order.get("LastUpdateDate")),
        customer={
            key: value
            for key, value in (
                ("email", answer_name(buyer.get("BuyerEmail"))),
                ("name", answer_name(buyer.get("BuyerName"))),
            )
            if value
        },
        address={
            key: answer_name(address[key])
            for key in (
                "Name",
                "AddressLine1",
                "AddressLine2",
                "AddressLine3",
                "City",
                "County",
                "District",
                "StateOrRegion",
                "PostalCode",
                "CountryCode",
                "Phone",
            )
            if answer_name(address.get(key))
        },
        amount=answer_money(total.get("Amount")),
        currency=answer_text(total.get("CurrencyCode"), limit=3),
        payment_method=answer_name(order.get("PaymentMethod"), limit=100),
        raw={**order, "OrderItems": items},
    )


def _money(value: Any) -> Decimal | None:
    return answer_money(value.get("Amount")) if isinstance(value, dict) else None
