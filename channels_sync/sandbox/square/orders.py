"""The fake Square's orders: SearchOrders, BatchRetrieveOrders and order notifications.

- `POST /v2/orders/search`: `location_ids` (1 to 10, required), `query.filter.
  date_time_filter.updated_at {start_at, end_at}` (both ends included, as Square documents),
  `query.filter.state_filter.states`, `query.sort` (must sort on UPDATED_AT when filtering
  on it, else 400), `limit` (1 to 1000, default 500; the `order_page_size` option caps a
  page lower), `cursor` (only with the query it was given for), `return_entries`.
- `POST /v2/orders/batch-retrieve`: `order_ids` (1 to 100); unknown ids are ignored.

Orders take Square's states: OPEN, COMPLETED, CANCELED, DRAFT, and the sandbox's own
`OPEN_UNPAID` (shown as OPEN with the total still due and no tender), so both kinds of open
order can be placed. A line's `keys` are `{catalog_object_id, location_id}`; the order's
location is its first line's. Money is in cents of `currency`.

Notifications: `order.created` for a new order, `order.updated` for every change after,
with `data.object.order_created|order_updated {order_id, version, location_id, state,
created_at, updated_at}`; the `event_id` is derived from (order, version), so a
redelivered notification keeps it, as Square's do. `stock_notification` sends
`inventory.count.updated` with the listing's IN_STOCK count.
"""

import hashlib
import json
import time
import uuid
from decimal import Decimal
from typing import Any

from channels_sync.sandbox.base import SandboxOrder
from channels_sync.sandbox.square.wire import (
    cursor_make,
    cursor_offset,
    epoch,
    error_answer,
    iso,
)
from core.sandbox import SandboxRequest, SandboxResponse

ORDER_SEARCH_PATH = "/v2/orders/search"
ORDER_RETRIEVE_PATH = "/v2/orders/batch-retrieve"
STATES = ("OPEN", "COMPLETED", "CANCELED", "DRAFT")
UNPAID = "OPEN_UNPAID"
SIGNATURE_HEADER = "x-square-hmacsha256-signature"


class SquareOrders:
    """Order routes and notifications, mixed into `SquareSandbox`."""

    unpaid_statuses = (UNPAID, "DRAFT")
    currency = "USD"

    def order_routes(self) -> dict:
        return {ORDER_SEARCH_PATH: self._order_search, ORDER_RETRIEVE_PATH: self._order_retrieve}

    def order_id_new(self) -> str:
        """A Square-style order id (base62-ish, 29 characters)."""
        return uuid.uuid4().hex[:24].upper() + "SQ0RD"

    def _order_location(self, order: SandboxOrder) -> str:
        for line in order.lines:
            if line.keys.get("location_id"):
                return line.keys["location_id"]
        return self.location_id

    # --- wire shapes ------------------------------------------------------------------------

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        """An order as Square's Order object (call with the lock held)."""
        state = "OPEN" if order.status == UNPAID else order.status
        total = 0
        items = []
        for line in order.lines:
            cents = int(Decimal(line.price) * 100)
            total += cents * line.quantity
            items.append(
                {
                    "uid": line.line_id,
                    "catalog_object_id": line.keys.get("catalog_object_id", ""),
                    "catalog_version": 1,
                    "quantity": str(line.quantity),
                    "name": f"Sandbox item {line.keys.get('catalog_object_id', '')}",
                    "variation_name": "Regular",
                    "base_price_money": {"amount": cents, "currency": self.currency},
                    "total_discount_money": {"amount": 0, "currency": self.currency},
                    "total_money": {"amount": cents * line.quantity, "currency": self.currency},
                }
            )
        paid = order.paid is not None
        fulfillment_state = {"COMPLETED": "COMPLETED", "CANCELED": "CANCELED"}.get(
            state, "PROPOSED"
        )
        result: dict[str, Any] = {
            "id": order.order_id,
            "location_id": self._order_location(order),
            "reference_id": f"SBX-{order.order_id[:8]}",
            "source": {"name": "Sandbox Online Store"},
            "customer_id": "SANDBOXCUSTOMER01",
            "line_items": items,
            "fulfillments": [
                {
                    "uid": f"F{order.order_id[:10]}",
                    "type": "SHIPMENT",
                    "state": fulfillment_state,
                    "shipment_details": {
                        "recipient": {
                            "display_name": str(order.buyer.get("name", "")),
                            "phone_number": str(order.buyer.get("phone", "")),
                            "address": {
                                "address_line_1": "1 Market St",
                                "locality": "San Francisco",
                                "postal_code": "94105",
                                "country": "US",
                            },
                        }
                    },
                }
            ],
            "state": state,
            "version": len(order.history),
            "created_at": iso(order.created),
            "updated_at": iso(order.updated),
            "total_money": {"amount": total, "currency": self.currency},
            "net_amount_due_money": {"amount": 0 if paid else total, "currency": self.currency},
        }
        if paid:
            result["tenders"] = [
                {
                    "id": f"T{order.order_id[:12]}",
                    "location_id": result["location_id"],
                    "created_at": iso(order.paid),
                    "amount_money": {"amount": total, "currency": self.currency},
                    "type": "CARD",
                }
            ]
        if state in ("COMPLETED", "CANCELED"):
            result["closed_at"] = iso(order.updated)
        return result

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """`order.created` (first status) or `order.updated`, signed for `webhook_url`."""
        with self._lock:
            raw = self._order_json(order)
            version = len(order.history)
        kind = "order_created" if version == 1 else "order_updated"
        inner = {
            "order_id": raw["id"],
            "version": version,
            "location_id": raw["location_id"],
            "state": raw["state"],
            "created_at": raw["created_at"],
        }
        if kind == "order_updated":
            inner["updated_at"] = raw["updated_at"]
        event_id = str(
            uuid.UUID(bytes=hashlib.sha256(f"{raw['id']}|{version}".encode()).digest()[:16])
        )
        return self._signed_event(
            kind.replace("_", "."),
            event_id,
            {"type": kind, "id": raw["id"], "object": {kind: inner}},
            bad_signature=bad_signature,
        )

    def stock_notification(self, keys: dict[str, str], quantity: int) -> tuple[bytes, dict]:
        """`inventory.count.updated` with the listing's IN_STOCK count."""
        count = {
            "catalog_object_id": keys["catalog_object_id"],
            "catalog_object_type": "ITEM_VARIATION",
            "state": "IN_STOCK",
            "location_id": keys["location_id"],
            "quantity": str(quantity),
            "calculated_at": iso(self.now()),
        }
        return self._signed_event(
            "inventory.count.updated",
            str(uuid.uuid4()),
            {
                "type": "inventory_counts",
                "id": str(uuid.uuid4()),
                "object": {"inventory_counts": [count]},
            },
            bad_signature=False,
        )

    def _signed_event(
        self, kind: str, event_id: str, data: dict[str, Any], *, bad_signature: bool
    ) -> tuple[bytes, dict]:
        body = json.dumps(
            {
                "merchant_id": self.merchant_id,
                "type": kind,
                "event_id": event_id,
                "created_at": iso(self.now()),
                "data": data,
            }
        ).encode()
        key = self.signature_key + "-wrong" if bad_signature else self.signature_key
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.sign(body, key=key),
            "square-environment": "Sandbox",
            "Square-Initial-Delivery-Timestamp": iso(time.time()),
        }
        return body, headers

    # --- routes -----------------------------------------------------------------------------

    def _order_search(self, request: SandboxRequest, body: dict[str, Any]) -> SandboxResponse:
        locations = body.get("location_ids")
        if not isinstance(locations, list) or not 1 <= len(locations) <= 10:
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                "location_ids must hold 1 to 10 location ids.",
                field="location_ids",
            )
        query = body.get("query") if isinstance(body.get("query"), dict) else {}
        filters = query.get("filter") if isinstance(query.get("filter"), dict) else {}
        sort = query.get("sort") if isinstance(query.get("sort"), dict) else {}
        times = (
            filters.get("date_time_filter")
            if isinstance(filters.get("date_time_filter"), dict)
            else {}
        )
        field = next(
            (name for name in ("created_at", "updated_at", "closed_at") if name in times), None
        )
        if field and sort.get("sort_field", "CREATED_AT") != field.upper():
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                f"A date_time_filter on {field} needs sort_field {field.upper()}.",
                field="query.sort.sort_field",
            )
        limit = body.get("limit", 500)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            return error_answer(
                400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", "limit is 1 to 1000.", field="limit"
            )
        fingerprint = hashlib.sha256(
            json.dumps([locations, query], sort_keys=True).encode()
        ).hexdigest()[:16]
        cursor = body.get("cursor")
        offset = 0
        if cursor:
            head, _, rest = str(cursor).partition(".")
            offset = cursor_offset(rest) if head == fingerprint else None
            if offset is None:
                return error_answer(
                    400, "INVALID_REQUEST_ERROR", "INVALID_CURSOR", "Bad cursor.", field="cursor"
                )
        window = times.get(field) if field else None
        start = epoch(window.get("start_at")) if isinstance(window, dict) else None
        end = epoch(window.get("end_at")) if isinstance(window, dict) else None
        states_filter = (
            filters.get("state_filter") if isinstance(filters.get("state_filter"), dict) else {}
        )
        states = states_filter.get("states") or list(STATES)
        with self._lock:
            rows = [self._order_json(order) for order in self.orders.values()]
        picked = []
        for row in rows:
            moment = epoch(row[field]) if field else None
            if row["location_id"] not in locations or row["state"] not in states:
                continue
            if moment is not None and (
                (start is not None and moment < start) or (end is not None and moment > end)
            ):
                continue
            picked.append(row)
        key = field or "created_at"
        reverse = sort.get("sort_order") == "DESC"
        picked.sort(key=lambda row: (row.get(key) or "", row["id"]), reverse=reverse)
        size = min(limit, self.order_page_size or limit)
        page = picked[offset : offset + size]
        answer: dict[str, Any] = (
            {
                "order_entries": [
                    {"order_id": o["id"], "version": o["version"], "location_id": o["location_id"]}
                    for o in page
                ]
            }
            if body.get("return_entries") is True
            else {"orders": page}
        )
        if offset + size < len(picked):
            answer["cursor"] = f"{fingerprint}.{cursor_make(offset + size)}"
        return SandboxResponse.json(200, answer)

    def _order_retrieve(self, request: SandboxRequest, body: dict[str, Any]) -> SandboxResponse:
        ids = body.get("order_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            return error_answer(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                "order_ids must hold 1 to 100 order ids.",
                field="order_ids",
            )
        with self._lock:
            found = [self._order_json(self.orders[i]) for i in ids if i in self.orders]
        return SandboxResponse.json(200, {"orders": found})
