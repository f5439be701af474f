"""The eBay sandbox's orders (Sell Fulfillment API) and their notifications.

Routes: `GET /sell/fulfillment/v1/order` with `filter=lastmodifieddate:[from..to]` (both
ends inclusive, ISO-8601 UTC with milliseconds), `limit` (1..1000), `offset`; answers
`{href, total, limit, offset, next?, orders[]}` in last-modified order. With `orderIds=a,b`
(1..50) it answers those orders; unknown ids come back as `warnings`. The `order_page_size`
option caps a page below `limit`, so tests can walk several pages. The error ids of the
refusals here (bad filter, bad limit, too many ids) are not confirmed with eBay: they are
the sandbox's own.

An order's status is one of `ORDER_STATES` (the sandbox's names); it is served as eBay's
three fields. Notifications: a change to `PENDING` or `PAID` sends `ORDER_CONFIRMATION`,
to `IN_PROGRESS` or `FULFILLED` sends `ITEM_MARKED_SHIPPED`, one per line item (as eBay
documents for order confirmations) with `data: {orderId, lineItemId, legacyItemId}`; other
changes (cancellations, refunds) send none: polling finds them. Each is the compact JSON the
sandbox signs with its own key; a notification's id is the same for the same change and
line (eBay keeps it across its retries).
"""

import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from channels_sync.sandbox.base import Delivery, NotifyFaults, SandboxOrder, SandboxOrderLine
from core.sandbox import SandboxRequest, SandboxResponse

ORDERS_PATH = "/sell/fulfillment/v1/order"
ORDER_IDS_MAX = 50
LIMIT_MAX = 1000
# name -> (orderFulfillmentStatus, orderPaymentStatus, cancelStatus.cancelState)
ORDER_STATES = {
    "PENDING": ("NOT_STARTED", "PENDING", "NONE_REQUESTED"),
    "PAID": ("NOT_STARTED", "PAID", "NONE_REQUESTED"),
    "IN_PROGRESS": ("IN_PROGRESS", "PAID", "NONE_REQUESTED"),
    "FULFILLED": ("FULFILLED", "PAID", "NONE_REQUESTED"),
    "CANCEL_REQUESTED": ("NOT_STARTED", "PAID", "CANCEL_REQUESTED"),
    "CANCELED": ("NOT_STARTED", "FULLY_REFUNDED", "CANCELED"),
    "FULLY_REFUNDED": ("NOT_STARTED", "FULLY_REFUNDED", "NONE_REQUESTED"),
}
TOPICS = {
    "PENDING": "ORDER_CONFIRMATION",
    "PAID": "ORDER_CONFIRMATION",
    "IN_PROGRESS": "ITEM_MARKED_SHIPPED",
    "FULFILLED": "ITEM_MARKED_SHIPPED",
}
FILTER = re.compile(r"lastmodifieddate:\[(?P<start>[^\]]*?)\.\.(?P<end>[^\]]*)\]")
NOTIFICATION_NAMESPACE = uuid.UUID("6f1d7a52-98c6-4b8e-9f57-3c1c2b0e8a11")


def iso_ms(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _iso_epoch(text: str) -> float | None:
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def _sales_record(order_id: str) -> str:
    """The seller's sales record number: a sequence of the seller's own (here the order id's
    last part), so no two of the seller's orders share one."""
    tail = order_id.rsplit("-", 1)[-1]
    return str(1000 + int(tail)) if tail.isdigit() else order_id


def errors_answer(status: int, error_id: int, message: str) -> SandboxResponse:
    """An eBay error answer: `{"errors": [ErrorDetailV3]}`."""
    category = "APPLICATION" if status >= 500 else "REQUEST"
    error = {"errorId": error_id, "domain": "API_FULFILLMENT", "category": category}
    return SandboxResponse.json(status, {"errors": [{**error, "message": message}]})


@dataclass(frozen=True)
class _Notice:
    line_id: str
    body: bytes
    headers: dict[str, str]


class EbayOrdersMixin:
    """Fulfillment API orders and order notifications for `EbaySandbox`."""

    order_page_size: int | None = None

    def order_id_new(self) -> str:
        """An order id as eBay's (`12-34567-89012`)."""
        with self._lock:
            self._order_seq += 1
            seq = self._order_seq
        return f"{10 + seq % 90:02d}-{int(time.time()) % 100000:05d}-{seq % 100000:05d}"

    def status_is_paid(self, status: str) -> bool:
        return ORDER_STATES.get(status, ("", "PENDING", ""))[1] != "PENDING"

    def order_create(self, *, lines: list[dict[str, Any]], status: str, **kwargs: Any):
        if status not in ORDER_STATES:
            raise ValueError(f"status must be one of {', '.join(ORDER_STATES)}")
        return super().order_create(lines=lines, status=status, **kwargs)

    def order_update(self, order_id: str, *, status: str, faults: NotifyFaults | None = None):
        if status not in ORDER_STATES:
            raise ValueError(f"status must be one of {', '.join(ORDER_STATES)}")
        return super().order_update(order_id, status=status, faults=faults)

    # --- notifications --------------------------------------------------------------------

    def _notices(self, order: SandboxOrder, *, bad_signature: bool) -> list[_Notice]:
        """One signed notification per line item of the order's current status ([] when the
        status has no topic)."""
        with self._lock:
            status, updated = order.status, order.updated
            lines = list(order.lines)
        topic = TOPICS.get(status)
        if topic is None:
            return []
        notices = []
        for line in lines:
            notification_id = str(
                uuid.uuid5(NOTIFICATION_NAMESPACE, f"{order.order_id}|{status}|{line.line_id}")
            )
            message = {
                "metadata": {"topic": topic, "schemaVersion": "1.0", "deprecated": False},
                "notification": {
                    "notificationId": notification_id,
                    "eventDate": iso_ms(updated),
                    "publishDate": iso_ms(time.time()),
                    "publishAttemptCount": 1,
                    "data": {
                        "orderId": order.order_id,
                        "lineItemId": line.line_id,
                        "legacyItemId": self.listing_id_of(line.keys),
                    },
                },
            }
            body, headers = self.signed_notification(message, bad_signature=bad_signature)
            notices.append(_Notice(line.line_id, body, headers))
        return notices

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """The first line item's notification of the order's current status."""
        notices = self._notices(order, bad_signature=bad_signature)
        if not notices:
            raise ValueError(f"eBay sends no notification for status {order.status}")
        return notices[0].body, notices[0].headers

    def notify(self, order: SandboxOrder, faults: NotifyFaults) -> list[Delivery]:
        """Send (or drop, or hold) one notification per line item; nothing for a status
        eBay sends none for."""
        notices = self._notices(order, bad_signature=faults.bad_signature)
        deliveries = []
        for notice in notices:
            if faults.drop:
                delivery = Delivery(order.order_id, order.status, None, error="dropped")
                with self._lock:
                    self.deliveries.append(delivery)
                deliveries.append(delivery)
            elif faults.hold:
                with self._lock:
                    self.held.append((order.order_id, order.status, notice.body, notice.headers))
            else:
                deliveries.extend(
                    self._deliver(
                        order.order_id,
                        order.status,
                        notice.body,
                        notice.headers,
                        bad=faults.bad_signature,
                    )
                    for _ in range(max(1, faults.copies))
                )
        return deliveries

    # --- orders -----------------------------------------------------------------------------

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        """An order as getOrders describes it (call with the lock held)."""
        fulfillment, payment, cancel = ORDER_STATES[order.status]
        items, total = [], Decimal(0)
        for line in order.lines:
            cost = Decimal(line.price) * line.quantity
            total += cost
            items.append(self._line_json(line, cost, fulfillment))
        money = {"value": str(total), "currency": self.currency}
        ship_to = {
            "fullName": str(order.buyer.get("name", "")),
            "contactAddress": {
                "addressLine1": "1 Sandbox Way",
                "city": "San Jose",
                "stateOrProvince": "CA",
                "postalCode": "95125",
                "countryCode": "US",
            },
            "primaryPhone": {"phoneNumber": str(order.buyer.get("phone", ""))},
            "email": "buyer@sandbox.example",
        }
        payments = [
            {
                "paymentMethod": "EBAY",
                "paymentStatus": "PAID" if order.paid else "PENDING",
                **({"paymentDate": iso_ms(order.paid)} if order.paid else {}),
                "amount": money,
            }
        ]
        return {
            "orderId": order.order_id,
            "legacyOrderId": f"1100{order.order_id.replace('-', '')}",
            "creationDate": iso_ms(order.created),
            "lastModifiedDate": iso_ms(order.updated),
            "orderFulfillmentStatus": fulfillment,
            "orderPaymentStatus": payment,
            "cancelStatus": {"cancelState": cancel, "cancelRequests": []},
            "salesRecordReference": _sales_record(order.order_id),
            "buyer": {
                "username": "sandbox_buyer",
                "buyerRegistrationAddress": {
                    "fullName": str(order.buyer.get("name", "")),
                    "email": "buyer@sandbox.example",
                    "primaryPhone": {"phoneNumber": str(order.buyer.get("phone", ""))},
                },
            },
            "pricingSummary": {"priceSubtotal": money, "total": money},
            "paymentSummary": {"payments": payments, "totalDueSeller": money},
            "fulfillmentStartInstructions": [
                {"fulfillmentInstructionsType": "SHIP_TO", "shippingStep": {"shipTo": ship_to}}
            ],
            "lineItems": items,
        }

    def _line_json(self, line: SandboxOrderLine, cost: Decimal, fulfillment: str) -> dict:
        return {
            "lineItemId": line.line_id,
            "legacyItemId": self.listing_id_of(line.keys),
            "sku": line.sku or line.keys.get("sku", ""),
            "title": f"Sandbox item {line.keys.get('sku', '')}",
            "quantity": line.quantity,
            "lineItemCost": {"value": str(cost), "currency": self.currency},
            "total": {"value": str(cost), "currency": self.currency},
            "lineItemFulfillmentStatus": fulfillment,
        }

    def _orders(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        if "orderIds" in query:
            ids = [i for i in query["orderIds"].split(",") if i]
            if not 1 <= len(ids) <= ORDER_IDS_MAX:
                return errors_answer(400, 32100, "orderIds must name 1 to 50 orders.")
            with self._lock:
                orders = [self._order_json(self.orders[i]) for i in ids if i in self.orders]
                unknown = [i for i in ids if i not in self.orders]
            answer: dict[str, Any] = {"total": len(orders), "orders": orders}
            if unknown:
                answer["warnings"] = [
                    {"errorId": 32100, "message": f"Invalid order ID: {order_id}"}
                    for order_id in unknown
                ]
            return SandboxResponse.json(200, answer)
        return self._orders_list(query)

    def _orders_list(self, query: dict[str, str]) -> SandboxResponse:
        match = FILTER.fullmatch(query.get("filter", ""))
        start = _iso_epoch(match["start"]) if match else None
        end = _iso_epoch(match["end"]) if match and match["end"] else float("inf")
        if match is None or start is None or end is None:
            return errors_answer(400, 30800, "Invalid filter: lastmodifieddate:[from..to].")
        try:
            limit = int(query.get("limit", "50"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            return errors_answer(400, 30820, "limit and offset must be integers.")
        if not 1 <= limit <= LIMIT_MAX or offset < 0:
            return errors_answer(400, 30820, "limit must be 1 to 1000, offset at least 0.")
        # eBay stamps in milliseconds: compare as it would.
        with self._lock:
            matching = sorted(
                (o for o in self.orders.values() if start <= round(o.updated, 3) <= end),
                key=lambda o: (o.updated, o.order_id),
            )
            size = min(limit, self.order_page_size or limit)
            page = [self._order_json(o) for o in matching[offset : offset + size]]
        answer = {
            "href": f"{ORDERS_PATH}?limit={limit}&offset={offset}",
            "total": len(matching),
            "limit": limit,
            "offset": offset,
            "orders": page,
        }
        if offset + len(page) < len(matching):
            answer["next"] = f"{ORDERS_PATH}?limit={limit}&offset={offset + len(page)}"
        return SandboxResponse.json(200, answer)

    def signed_notification(
        self, message: dict[str, Any], *, bad_signature: bool = False
    ) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError

    def listing_id_of(self, keys: dict[str, Any]) -> str:
        raise NotImplementedError


def compact(message: Any) -> bytes:
    """The compact JSON eBay sends and signs (no spaces, key order kept)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
