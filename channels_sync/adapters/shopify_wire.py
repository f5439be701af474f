"""Shopify Admin GraphQL: the documents the adapter sends, ids, the cost bucket, statuses.

The adapter (`channels_sync.adapters.shopify`) sends these documents with their inputs as
JSON `variables` (never spliced into the text), so the same text goes out every time.

Sources: Shopify Admin GraphQL reference, `inventorySetQuantities` (2026-01) and
`InventorySetQuantitiesUserErrorCode`; changelogs "Compare-and-swap redesign for
inventorySetQuantities" and "Adding idempotency for inventory adjustments and refund
mutations"; "GraphQL Admin API rate limits" (calculated query cost, `extensions.cost`);
`Order.displayFinancialStatus` / `displayFulfillmentStatus`.
"""

import re
import time
from dataclasses import dataclass
from typing import Any

from channels_sync.adapters.base import OrderStatus, answer_int

GID_PREFIX = "gid://shopify/"
_NUMERIC = re.compile(r"[0-9]{1,30}")
_GID = re.compile(r"gid://shopify/(?P<kind>[A-Za-z]+)/(?P<id>[0-9]{1,30})(?:\?.*)?")

# `changeFromQuantity` is the compare-and-set of 2026-01 (optional there, mandatory from
# 2026-04); the directive `@idempotent` sits on the mutation field (optional in 2026-01,
# required from 2026-04).
SET_QUANTITIES = """mutation SyncStoreSetQuantities($input: InventorySetQuantitiesInput!, \
$idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id reason }
    userErrors { code field message }
  }
}"""


def levels_query(count: int) -> str:
    """The read of `count` inventory levels, one alias each:
    `l<n>: inventoryItem(id: $i<n>) { id inventoryLevel(locationId: $l<n>) { quantities } }`."""
    params = ", ".join(f"$i{n}: ID!, $l{n}: ID!" for n in range(count))
    quantities = '{ quantities(names: ["available"]) { name quantity } }'
    fields = "\n".join(
        f"  l{n}: inventoryItem(id: $i{n}) {{ id inventoryLevel(locationId: $l{n}) {quantities} }}"
        for n in range(count)
    )
    return f"query SyncStoreLevels({params}) {{\n{fields}\n}}"


ORDERS_LIST = """query SyncStoreOrders($first: Int!, $after: String, $query: String!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { id legacyResourceId updatedAt cancelledAt displayFinancialStatus \
displayFulfillmentStatus }
    pageInfo { hasNextPage endCursor }
  }
}"""

ORDERS_DETAIL = """query SyncStoreOrderDetail($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Order {
      id legacyResourceId name createdAt processedAt updatedAt cancelledAt
      displayFinancialStatus displayFulfillmentStatus
      currencyCode totalPriceSet { shopMoney { amount currencyCode } }
      email phone
      shippingAddress { name address1 address2 city province zip countryCodeV2 phone }
      lineItems(first: 250) {
        nodes { id sku name quantity currentQuantity
          originalUnitPriceSet { shopMoney { amount } }
          variant { id inventoryItem { id } } }
      }
      fulfillmentOrders(first: 20) {
        nodes { assignedLocation { location { id } }
          lineItems(first: 250) { nodes { lineItem { id } } } }
      }
    }
  }
}"""


def gid(kind: str, value: str) -> str:
    """A Shopify global id (`gid://shopify/InventoryItem/30322695`) from a numeric id or a gid."""
    text = str(value).strip()
    return text if text.startswith(GID_PREFIX) else f"{GID_PREFIX}{kind}/{text}"


def numeric_id(value: Any, kind: str | None = None) -> str:
    """The numeric id of a number, a string of digits or a gid (of `kind`, if given); ''
    for anything else (a gid of another kind too)."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value) if 0 < value < 10**30 else ""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if _NUMERIC.fullmatch(text):
        return text
    match = _GID.fullmatch(text)
    if match is None or (kind is not None and match["kind"] != kind):
        return ""
    return match["id"]


@dataclass
class CostBucket:
    """The shop's GraphQL cost bucket as last reported (`extensions.cost.throttleStatus`).

    Points come back at `restore_rate` per second up to `maximum`. `wait_for(cost)` is how
    long until `cost` points are available (0: now).
    """

    available: float
    restore_rate: float
    maximum: float
    seen_at: float  # time.monotonic() of the report

    @classmethod
    def from_extensions(cls, extensions: Any) -> "CostBucket | None":
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        status = cost.get("throttleStatus") if isinstance(cost, dict) else None
        if not isinstance(status, dict):
            return None
        numbers = [
            _number(status.get(name))
            for name in ("currentlyAvailable", "restoreRate", "maximumAvailable")
        ]
        if any(number is None for number in numbers) or numbers[1] <= 0:
            return None
        return cls(numbers[0], numbers[1], numbers[2], time.monotonic())

    def available_now(self) -> float:
        restored = (time.monotonic() - self.seen_at) * self.restore_rate
        return min(self.maximum, self.available + restored)

    def wait_for(self, cost: float) -> float:
        missing = min(cost, self.maximum) - self.available_now()
        return 0.0 if missing <= 0 else missing / self.restore_rate


def requested_cost(extensions: Any) -> float | None:
    """`extensions.cost.requestedQueryCost` of an answer (None: not reported)."""
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    return _number(cost.get("requestedQueryCost")) if isinstance(cost, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value < 1e12 else None


# --- order statuses -------------------------------------------------------------------------
#
# An order's raw status is `CANCELLED` once `cancelledAt` is set, else
# `<financial>/<fulfillment>` as GraphQL spells them (`PAID/UNFULFILLED`); the REST payload
# of a webhook (`financial_status: "paid"`, `fulfillment_status: null | "partial" |
# "fulfilled" | "restocked"`) is spelled the same way (`raw_status`).

CANCELLED = "CANCELLED"
_REST_FULFILLMENT = {
    "": "UNFULFILLED",
    "NULL": "UNFULFILLED",
    "PARTIAL": "PARTIALLY_FULFILLED",
    "FULFILLED": "FULFILLED",
    "RESTOCKED": "RESTOCKED",
}
# Fulfillment states that end the order's stock story whatever the payment says.
_SHIPPED = {"FULFILLED"}
_RETURNED = {"RESTOCKED"}
_PARTLY_SHIPPED = {"PARTIALLY_FULFILLED"}
# Financial states: the buyer's money is taken or promised (an authorisation is captured
# later, but the goods are spoken for), or not yet.
_PAID = {"PAID", "PARTIALLY_PAID", "AUTHORIZED", "PARTIALLY_REFUNDED"}
_UNPAID = {"PENDING"}


def raw_status(*, cancelled: bool, financial: Any, fulfillment: Any) -> str:
    """The raw status of an order (GraphQL or REST spelling in, one spelling out)."""
    if cancelled:
        return CANCELLED
    fin = str(financial or "").strip().upper()[:40]
    ful = str(fulfillment or "").strip().upper()[:40]
    ful = _REST_FULFILLMENT.get(ful, ful)
    return f"{fin}/{ful}"


def order_status(raw: str) -> OrderStatus | None:
    """The normalized status of a raw status (see the module):

    - `CANCELLED` (cancelledAt set): cancelled;
    - fulfillment `RESTOCKED` (the goods came back to stock), or financial `REFUNDED` once
      fulfilled: returned; `REFUNDED` before anything shipped: cancelled (nothing will ship);
    - fulfillment `FULFILLED`: shipped; `PARTIALLY_FULFILLED`: ready to ship (the rest still
      holds its stock, as TikTok's partial shipping);
    - financial `PAID`, `PARTIALLY_PAID`, `AUTHORIZED`, `PARTIALLY_REFUNDED`: paid;
      `PENDING`: pending payment;
    - `VOIDED` / `EXPIRED` (an authorisation dropped) and anything unknown: None (the
      order keeps its state; a cancellation follows as `cancelledAt`).
    """
    text = str(raw or "").strip().upper()
    if text == CANCELLED:
        return OrderStatus.CANCELLED
    financial, _, fulfillment = text.partition("/")
    if fulfillment in _RETURNED:
        return OrderStatus.RETURNED
    if financial == "REFUNDED":
        return OrderStatus.RETURNED if fulfillment in _SHIPPED else OrderStatus.CANCELLED
    if fulfillment in _SHIPPED:
        return OrderStatus.SHIPPED
    if fulfillment in _PARTLY_SHIPPED:
        return OrderStatus.READY_TO_SHIP
    if financial in _PAID:
        return OrderStatus.PAID
    if financial in _UNPAID:
        return OrderStatus.PENDING_PAYMENT
    return None


def user_error_row(field: Any) -> int | None:
    """The `quantities` index a userError's `field` path names
    (`["input", "quantities", "3", "changeFromQuantity"]` -> 3), else None."""
    if not isinstance(field, list):
        return None
    for position, part in enumerate(field[:-1]):
        if part == "quantities":
            return answer_int(field[position + 1])
    return None
