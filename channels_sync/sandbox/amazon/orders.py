"""The Amazon sandbox's Orders API v0 and its order machinery (no HTTP notifications).

- `GET /orders/v0/orders`: `MarketplaceIds` (required); `LastUpdatedAfter` (or
  `CreatedAfter`) required, `LastUpdatedBefore` / `CreatedBefore` at least two minutes before
  the request (400 `InvalidInput` otherwise, as getOrders documents); `FulfillmentChannels`
  (`MFN`, `AFN`), `OrderStatuses`, `MaxResultsPerPage` (1..100). Both bounds are inclusive.
  Answers `payload.Orders[]` (oldest update first), `payload.NextToken` while more remain
  (`orders_page_size` caps a page), `payload.LastUpdatedBefore`. A `NextToken` call carries
  only `MarketplaceIds` and the token.
- `GET /orders/v0/orders/{id}` -> `payload` (the order); 404 `NotFound` for an unknown id.
- `GET /orders/v0/orders/{id}/orderItems` -> `payload.OrderItems[]` with `NextToken` paging
  (`items_page_size`). The items of a `Canceled` order show `QuantityOrdered` 0, as Amazon's.

`notify` sends nothing: Amazon delivers order notifications to SQS or EventBridge only. A
delivery is still recorded (`http_status` None, "no HTTP notifications"), and
`order_change_notification` builds the ORDER_CHANGE envelope an SQS queue would receive.
"""

import re
import secrets
import time
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from django.utils.dateparse import parse_datetime

from channels_sync.sandbox.amazon.common import iso
from channels_sync.sandbox.base import Delivery, NotifyFaults, SandboxOrder
from core.sandbox import SandboxRequest, SandboxResponse

ORDERS = "/orders/v0/orders"
ORDER = re.compile(rf"^{ORDERS}/(?P<id>[^/]+)$")
ITEMS = re.compile(rf"^{ORDERS}/(?P<id>[^/]+)/orderItems$")
LAG_SECONDS = 120
MAX_PAGE = 100


class OrderRoutes:
    """Routes and order machinery of the Orders API (mixed into `AmazonSandbox`)."""

    # --- orders as the seller's buyers place them -------------------------------------------

    def order_id_new(self) -> str:
        """An id in Amazon's 3-7-7 digit form (`113-1234567-1234567`)."""
        with self._lock:
            self._order_seq += 1
            seq = self._order_seq
        return f"11{seq % 10}-{secrets.randbelow(10**7):07d}-{seq % 10**7:07d}"

    def order_create(self, *, fulfillment_channel: str = "MFN", **kwargs: Any) -> SandboxOrder:
        """Place an order (see `MarketplaceSandbox.order_create`), merchant-fulfilled unless
        `fulfillment_channel` is `AFN`; stamped `order_age` seconds in the past."""
        if fulfillment_channel not in ("MFN", "AFN"):
            raise ValueError("fulfillment_channel must be MFN or AFN")
        order = super().order_create(**kwargs)
        age = float(self.extra["order_age"])
        with self._lock:
            self.fulfillment[order.order_id] = fulfillment_channel
            order.created -= age
            order.updated -= age
            if order.paid is not None:
                order.paid -= age
        return order

    def order_update(
        self, order_id: str, *, status: str, faults: NotifyFaults | None = None
    ) -> SandboxOrder:
        """Move an order to `status`; its update time moves strictly forward."""
        with self._lock:
            order = self.orders[order_id]
            order.status = status
            order.updated = max(time.time() - float(self.extra["order_age"]), order.updated + 1.0)
            if order.paid is None and self.status_is_paid(status):
                order.paid = order.updated
            order.history.append(status)
        self.notify(order, faults or NotifyFaults())
        return order

    def notify(self, order: SandboxOrder, faults: NotifyFaults) -> list[Delivery]:
        """Send nothing: Amazon has no HTTP notifications (SQS and EventBridge only)."""
        delivery = Delivery(order.order_id, order.status, None, error="no HTTP notifications")
        with self._lock:
            self.deliveries.append(delivery)
        return []

    def order_change_notification(self, order: SandboxOrder) -> dict[str, Any]:
        """The ORDER_CHANGE notification an SQS queue would receive for the order's state."""
        with self._lock:
            status, updated = order.status, order.updated
            lines = [asdict(line) for line in order.lines]
        return {
            "NotificationVersion": "1.0",
            "NotificationType": "ORDER_CHANGE",
            "PayloadVersion": "1.0",
            "EventTime": iso(updated),
            "Payload": {
                "OrderChangeNotification": {
                    "NotificationLevel": "OrderLevel",
                    "SellerId": self.seller_id,
                    "AmazonOrderId": order.order_id,
                    "OrderChangeType": "OrderStatusChange",
                    "OrderChangeTrigger": {
                        "TimeOfOrderChange": iso(updated),
                        "ChangeReason": "OrderStatusChange",
                    },
                    "Summary": {
                        "MarketplaceId": self.marketplace_id,
                        "OrderStatus": status,
                        "FulfillmentType": self.fulfillment.get(order.order_id, "MFN"),
                        "OrderItems": [
                            {
                                "OrderItemId": line["line_id"],
                                "SellerSKU": line["sku"],
                                "Quantity": line["quantity"],
                            }
                            for line in lines
                        ],
                    },
                }
            },
            "NotificationMetadata": {
                "ApplicationId": self.client_id,
                "SubscriptionId": f"sandbox-{self.seller_id}",
                "PublishTime": iso(updated),
                "NotificationId": f"{order.order_id}-{status}-{int(updated)}",
            },
        }

    # --- routes -------------------------------------------------------------------------------

    def order_route(self, request: SandboxRequest) -> SandboxResponse | None:
        if request.method != "GET" or not request.path.startswith(ORDERS):
            return None
        if request.path == ORDERS:
            return self.checked(request, "getOrders") or self._orders_list(request)
        if match := ITEMS.match(request.path):
            return self.checked(request, "getOrderItems") or self._order_items(
                request, unquote(match["id"])
            )
        if match := ORDER.match(request.path):
            return self.checked(request, "getOrder") or self._order_get(unquote(match["id"]))
        return None

    def _orders_list(self, request: SandboxRequest) -> SandboxResponse:
        refused = self.marketplace_refused(request, "MarketplaceIds")
        if refused is not None:
            return refused
        query = {key: values[-1] for key, values in request.query.items()}
        token = query.get("NextToken")
        if token:
            with self._lock:
                state = self.page_tokens.pop(token, None)
            if state is None:
                return self.error(400, "InvalidInput", "Invalid NextToken.")
            filters, offset = state
        else:
            filters = self._order_filters(query)
            if isinstance(filters, SandboxResponse):
                return filters
            offset = 0
        with self._lock:
            matched = sorted(
                (o for o in self.orders.values() if self._order_matches(o, filters)),
                key=lambda o: (o.updated, o.order_id),
            )
            size = min(filters["page_size"], self.extra["orders_page_size"] or MAX_PAGE)
            page = [self._order_json(o) for o in matched[offset : offset + size]]
        payload: dict[str, Any] = {"Orders": page}
        if offset + size < len(matched):
            next_token = secrets.token_urlsafe(24)
            with self._lock:
                self.page_tokens[next_token] = (filters, offset + size)
            payload["NextToken"] = next_token
        if filters.get("LastUpdatedBefore"):
            payload["LastUpdatedBefore"] = iso(filters["LastUpdatedBefore"])
        return self.answer(200, {"payload": payload}, "getOrders")

    def _order_filters(self, query: dict[str, str]) -> dict[str, Any] | SandboxResponse:
        filters: dict[str, Any] = {}
        latest = time.time() - LAG_SECONDS
        for name in ("LastUpdatedAfter", "LastUpdatedBefore", "CreatedAfter", "CreatedBefore"):
            if name not in query:
                continue
            moment = _epoch(query[name])
            if moment is None:
                return self.error(400, "InvalidInput", f"{name} must be an ISO 8601 date.")
            if name.endswith("Before") and moment > latest:
                return self.error(
                    400,
                    "InvalidInput",
                    f"{name} must be no later than two minutes before the request.",
                )
            filters[name] = moment
        if "LastUpdatedAfter" not in filters and "CreatedAfter" not in filters:
            return self.error(400, "InvalidInput", "CreatedAfter or LastUpdatedAfter is required.")
        size = query.get("MaxResultsPerPage", str(MAX_PAGE))
        if not size.isdigit() or not 1 <= int(size) <= MAX_PAGE:
            return self.error(400, "InvalidInput", "MaxResultsPerPage must be 1 to 100.")
        filters["page_size"] = int(size)
        for name in ("FulfillmentChannels", "OrderStatuses"):
            if query.get(name):
                filters[name] = set(query[name].split(","))
        return filters

    def _order_matches(self, order: SandboxOrder, filters: dict[str, Any]) -> bool:
        bounds = {
            "LastUpdatedAfter": order.updated >= filters.get("LastUpdatedAfter", -1),
            "LastUpdatedBefore": order.updated <= filters.get("LastUpdatedBefore", float("inf")),
            "CreatedAfter": order.created >= filters.get("CreatedAfter", -1),
            "CreatedBefore": order.created <= filters.get("CreatedBefore", float("inf")),
        }
        if not all(bounds.values()):
            return False
        channels = filters.get("FulfillmentChannels")
        if channels and self.fulfillment.get(order.order_id, "MFN") not in channels:
            return False
        statuses = filters.get("OrderStatuses")
        return not statuses or order.status in statuses

    def _order_get(self, order_id: str) -> SandboxResponse:
        with self._lock:
            order = self.orders.get(order_id)
            data = self._order_json(order) if order is not None else None
        if data is None:
            return self.error(404, "NotFound", f"Order {order_id[:40]} was not found.")
        return self.answer(200, {"payload": data}, "getOrder")

    def _order_items(self, request: SandboxRequest, order_id: str) -> SandboxResponse:
        token = (request.query.get("NextToken") or [""])[-1]
        offset = 0
        if token:
            with self._lock:
                state = self.page_tokens.pop(token, None)
            if state is None or state[0].get("order_id") != order_id:
                return self.error(400, "InvalidInput", "Invalid NextToken.")
            offset = state[1]
        with self._lock:
            order = self.orders.get(order_id)
            items = self._items_json(order) if order is not None else None
        if items is None:
            return self.error(404, "NotFound", f"Order {order_id[:40]} was not found.")
        size = self.extra["items_page_size"] or len(items) or 1
        payload: dict[str, Any] = {
            "AmazonOrderId": order_id,
            "OrderItems": items[offset : offset + size],
        }
        if offset + size < len(items):
            next_token = secrets.token_urlsafe(24)
            with self._lock:
                self.page_tokens[next_token] = ({"order_id": order_id}, offset + size)
            payload["NextToken"] = next_token
        return self.answer(200, {"payload": payload}, "getOrderItems")

    # --- shapes (called with the lock held) ---------------------------------------------------

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        total = sum((Decimal(line.price) * line.quantity for line in order.lines), Decimal(0))
        shipped = order.status in ("Shipped", "InvoiceUnconfirmed")
        units = sum(line.quantity for line in order.lines)
        data = {
            "AmazonOrderId": order.order_id,
            "PurchaseDate": iso(order.created),
            "LastUpdateDate": iso(order.updated),
            "OrderStatus": order.status,
            "FulfillmentChannel": self.fulfillment.get(order.order_id, "MFN"),
            "SalesChannel": "Amazon.com",
            "ShipServiceLevel": "Std US D2D Dom",
            "NumberOfItemsShipped": units if shipped else 0,
            "NumberOfItemsUnshipped": 0 if shipped else units,
            "PaymentMethod": "Other",
            "PaymentMethodDetails": ["Standard"],
            "MarketplaceId": self.marketplace_id,
            "ShipmentServiceLevelCategory": "Standard",
            "OrderType": "StandardOrder",
            "EarliestShipDate": iso(order.created + 86400),
            "LatestShipDate": iso(order.created + 3 * 86400),
            "IsBusinessOrder": False,
            "IsPrime": False,
            "IsPremiumOrder": False,
            "IsGlobalExpressEnabled": False,
            "IsReplacementOrder": False,
            "IsSoldByAB": False,
            "IsISPU": False,
            "IsAccessPointOrder": False,
            "HasRegulatedItems": False,
            "ShippingAddress": {
                "City": "SEATTLE",
                "StateOrRegion": "WA",
                "PostalCode": "98109-5210",
                "CountryCode": "US",
            },
            "BuyerInfo": {"BuyerEmail": f"{order.order_id}@marketplace.amazon.com"},
        }
        if order.status != "Pending":
            # Amazon leaves the total out while an order is Pending.
            data["OrderTotal"] = {"CurrencyCode": self.currency, "Amount": f"{total:.2f}"}
        return data

    def _items_json(self, order: SandboxOrder) -> list[dict[str, Any]]:
        cancelled = order.status == "Canceled"
        shipped = order.status in ("Shipped", "InvoiceUnconfirmed")
        items = []
        for line in order.lines:
            quantity = 0 if cancelled else line.quantity
            money = Decimal(line.price) * quantity
            items.append(
                {
                    "ASIN": "B0" + line.line_id[-8:].rjust(8, "0"),
                    "SellerSKU": line.sku or line.keys.get("seller_sku", ""),
                    "OrderItemId": line.line_id.rjust(14, "0"),
                    "Title": f"Sandbox item {line.sku}",
                    "QuantityOrdered": quantity,
                    "QuantityShipped": quantity if shipped else 0,
                    "ItemPrice": {"CurrencyCode": self.currency, "Amount": f"{money:.2f}"},
                    "ItemTax": {"CurrencyCode": self.currency, "Amount": "0.00"},
                    "PromotionDiscount": {"CurrencyCode": self.currency, "Amount": "0.00"},
                    "IsGift": "false",
                    "ConditionId": "New",
                    "ConditionSubtypeId": "New",
                    "ProductInfo": {"NumberOfItems": "1"},
                }
            )
        return items


def _epoch(text: str) -> float | None:
    try:
        moment = parse_datetime(text)
    except ValueError:
        return None
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        return None
    return moment.timestamp()
