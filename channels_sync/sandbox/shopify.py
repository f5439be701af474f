"""A fake Shopify Admin GraphQL API: inventory levels, compare-and-set, idempotency, cost.

One route, `POST /admin/api/{version}/graphql.json` (versions 2026-01 and later, or
`unstable`), with the access token in `X-Shopify-Access-Token` (401 otherwise, as Shopify
answers a bad token). The body is `{"query": <document>, "variables": {...}}`.

The sandbox does not implement GraphQL. It recognises, with its own regular expressions,
the operations a client sends with its inputs in `variables` (literals are not read):

- `inventorySetQuantities(input: $var) @idempotent(key: $var)`: the input's `name`
  (`available`), `reason`, `quantities[]` of `{inventoryItemId, locationId, quantity,
  changeFromQuantity}` (gids). Checks each row (an unknown or rejected level:
  `ITEM_NOT_STOCKED_AT_LOCATION`; `INVALID_QUANTITY_NEGATIVE` / `_TOO_HIGH`;
  `changeFromQuantity` other than the level's quantity: `CHANGE_FROM_QUANTITY_STALE`, an
  explicit null skips the check), each userError naming its row in `field`. Any userError
  and nothing is applied (`inventoryAdjustmentGroup: null`); Shopify does not document
  whether one refused row stops the others. From 2026-04 `changeFromQuantity` and the
  directive are required (a top-level error without them).
  `@idempotent`: the same key with the same input answers the first answer again without
  applying anything; with another input `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`; while the
  first call is still running `IDEMPOTENCY_CONCURRENT_REQUEST`.
- `<alias>: inventoryItem(id: $i) { ... inventoryLevel(locationId: $l) { quantities ... } }`,
  any number of aliases: the level's `available` quantity (`inventoryItem: null` for an
  unknown item, `inventoryLevel: null` for a location the item is not stocked at).
- `orders(first: $f, after: $a, query: $q ...)`: orders whose `updated_at` passes the
  `updated_at:>=` / `:>` / `:<` / `:<=` terms of the search (ISO-8601, quoted or not),
  oldest update first, `nodes` + `pageInfo {hasNextPage endCursor}`. The
  `order_page_size` option caps a page below `first` so tests can walk pages.
- `nodes(ids: $ids)`: `Order` nodes (unknown ids: null).

Cost: every call has a requested cost (the sandbox's own figures: a mutation 10 points,
a read of n levels 1 + 2n, an order page 1 + first/5, n order details 1 + 10n), paid from
a bucket of `cost_maximum` points (2000) that refills at `cost_restore_rate` points a
second (100, the standard plan). A call the bucket cannot pay is answered `THROTTLED`
(HTTP 200) with `extensions.cost.throttleStatus`, as every answer carries. The shared
faults apply too (`gate()`): a throttle is answered `THROTTLED`, an error HTTP 503.

Orders use these statuses: PENDING, PAID, PARTIALLY_FULFILLED, FULFILLED, CANCELLED,
REFUNDED, RESTOCKED (shown as `displayFinancialStatus` / `displayFulfillmentStatus` /
`cancelledAt`). Each change sends the matching `orders/*` webhook (REST order JSON);
`stock_set_external` sends `inventory_levels/update`. Webhooks carry
`X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the body with the client secret), topic,
shop domain, API version, triggered-at, event id and a webhook id that is the same for
every copy of one delivery (as Shopify's retries keep theirs).
"""

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from channels_sync.sandbox.base import MarketplaceSandbox, SandboxOrder
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

PATH = re.compile(r"^/admin/api/(?P<version>[0-9]{4}-[0-9]{2}|unstable)/graphql\.json$")
FIRST_VERSION = "2026-01"  # `changeFromQuantity` and `@idempotent` exist from here
STRICT_VERSION = "2026-04"  # both are required from here
MAX_QUANTITY = 1_000_000_000
TOKEN_LIFETIME = 10 * 365 * 86400  # offline tokens do not expire
_SET = re.compile(
    r"inventorySetQuantities\s*\(\s*input\s*:\s*\$(?P<input>\w+)\s*\)"
    r"(?:\s*@idempotent\s*\(\s*key\s*:\s*\$(?P<key>\w+)\s*\))?"
)
_LEVEL = re.compile(
    r"(?P<alias>\w+)\s*:\s*inventoryItem\s*\(\s*id\s*:\s*\$(?P<item>\w+)\s*\)\s*\{[^{}]*?"
    r"inventoryLevel\s*\(\s*locationId\s*:\s*\$(?P<location>\w+)\s*\)"
)
_ORDERS = re.compile(r"\borders\s*\((?P<args>[^)]*)\)")
_NODES = re.compile(r"\bnodes\s*\(\s*ids\s*:\s*\$(?P<ids>\w+)\s*\)")
_ARG = re.compile(r"(?P<name>\w+)\s*:\s*\$(?P<var>\w+)")
_GID = re.compile(r"gid://shopify/(?P<kind>\w+)/(?P<id>[0-9]+)")
_TERM = re.compile(r"updated_at\s*:\s*(?P<op>>=|<=|>|<)\s*'?(?P<at>[0-9][0-9T:.+\-Z]*)'?")
REASONS = frozenset({"correction", "cycle_count_available", "received", "restock", "other"})
# Sandbox status -> (financial, fulfillment); CANCELLED also sets `cancelledAt`.
STATUSES = {
    "PENDING": ("PENDING", "UNFULFILLED"),
    "PAID": ("PAID", "UNFULFILLED"),
    "PARTIALLY_FULFILLED": ("PAID", "PARTIALLY_FULFILLED"),
    "FULFILLED": ("PAID", "FULFILLED"),
    "CANCELLED": ("REFUNDED", "UNFULFILLED"),
    "REFUNDED": ("REFUNDED", "FULFILLED"),
    "RESTOCKED": ("REFUNDED", "RESTOCKED"),
}
REST_FULFILLMENT = {"UNFULFILLED": None, "PARTIALLY_FULFILLED": "partial"}
TOPICS = {
    "CANCELLED": "orders/cancelled",
    "FULFILLED": "orders/fulfilled",
    "PAID": "orders/paid",
    "PARTIALLY_FULFILLED": "orders/partially_fulfilled",
}


class ShopifySandbox(MarketplaceSandbox):
    """Shopify: one shop's inventory levels per (inventory item, location), orders, faults."""

    name = "shopify"
    key_names = ("inventory_item_id", "location_id")
    unpaid_statuses = ("PENDING",)

    def __init__(
        self,
        *,
        shop_domain: str = "syncstore-sandbox.myshopify.com",
        client_secret: str = "shpss_sandbox_client_secret",  # noqa: S107 - a fake's secret
    ) -> None:
        super().__init__()
        self.shop_domain = shop_domain
        self.client_secret = client_secret
        self._state_lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self.cost_maximum = 2000.0
        self.cost_restore_rate = 100.0
        self.bucket = self.cost_maximum
        self.bucket_at = time.monotonic()
        self.order_page_size: int | None = None
        self.idempotency: dict[str, tuple[str, dict]] = {}
        self.in_flight: set[str] = set()
        self.applied: list[dict[str, Any]] = []  # every row applied, in order
        self.groups = 0

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self._clear()

    def configure(self, **options: Any) -> dict:
        """The shared options, and `cost_maximum`, `cost_restore_rate` (the cost bucket, which
        starts full) and `order_page_size` (None: as many as `first` asks)."""
        maximum = float(options.pop("cost_maximum", self.cost_maximum))
        rate = float(options.pop("cost_restore_rate", self.cost_restore_rate))
        page_size = options.pop("order_page_size", self.order_page_size)
        if maximum <= 0 or rate <= 0:
            raise ValueError("cost_maximum and cost_restore_rate must be positive")
        if page_size is not None and (not isinstance(page_size, int) or page_size < 1):
            raise ValueError("order_page_size must be a positive integer or null")
        configured = super().configure(**options)
        with self._state_lock:
            self.cost_maximum, self.cost_restore_rate = maximum, rate
            self.bucket, self.bucket_at = maximum, time.monotonic()
            self.order_page_size = page_size
        return {
            **configured,
            "cost_maximum": maximum,
            "cost_restore_rate": rate,
            "order_page_size": page_size,
        }

    def credentials(self) -> dict[str, str]:
        """Channel credentials: the shop, a newly issued (non-expiring) token, the secret."""
        access = "shpat_" + secrets.token_hex(16)
        with self._lock:
            self.access_tokens[access] = time.time() + TOKEN_LIFETIME
        return {
            "shop_domain": self.shop_domain,
            "access_token": access,
            "client_secret": self.client_secret,
        }

    def describe(self) -> str:
        return (
            f"{self.name}: POST /admin/api/{FIRST_VERSION}/graphql.json "
            f"(X-Shopify-Access-Token; shop {self.shop_domain})"
        )

    # --- the cost bucket --------------------------------------------------------------------

    def _cost(self, requested: float) -> tuple[bool, dict]:
        """Pay `requested` points if the bucket holds them; (paid, extensions)."""
        with self._state_lock:
            now = time.monotonic()
            self.bucket = min(
                self.cost_maximum, self.bucket + (now - self.bucket_at) * self.cost_restore_rate
            )
            self.bucket_at = now
            paid = self.bucket >= requested
            if paid:
                self.bucket -= requested
            status = {
                "maximumAvailable": self.cost_maximum,
                "currentlyAvailable": int(self.bucket),
                "restoreRate": self.cost_restore_rate,
            }
        cost = {
            "requestedQueryCost": requested,
            "actualQueryCost": requested if paid else None,
            "throttleStatus": status,
        }
        return paid, {"cost": cost}

    @staticmethod
    def _throttled(extensions: dict) -> SandboxResponse:
        return SandboxResponse.json(
            200,
            {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": extensions,
            },
        )

    # --- routes -----------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        match = PATH.match(request.path)
        if request.method != "POST" or match is None:
            return SandboxResponse.json(404, {"errors": "Not Found"})
        version = match["version"]
        if version != "unstable" and version < FIRST_VERSION:
            return SandboxResponse.json(404, {"errors": "Not Found"})
        token = _header(request, "X-Shopify-Access-Token")
        if self.token_state(token) != "ok":
            self.count("auth_refused")
            return SandboxResponse.json(
                401,
                {
                    "errors": "[API] Invalid API key or access token (unrecognized login or "
                    "wrong password)"
                },
            )
        try:
            body = request.json()
        except ValueError:
            body = None
        query = body.get("query") if isinstance(body, dict) else None
        variables = body.get("variables") if isinstance(body, dict) else None
        if not isinstance(query, str) or not isinstance(variables, dict | None):
            return _error(400, "Bad Request: the body must hold query and variables")
        variables = variables or {}
        strict = version == "unstable" or version >= STRICT_VERSION
        mutation = _SET.search(query)
        if mutation is not None:
            return self._set_quantities(mutation, variables, strict=strict)
        levels = list(_LEVEL.finditer(query))
        if levels:
            return self._levels(levels, variables)
        orders = _ORDERS.search(query)
        if orders is not None:
            return self._orders(dict(_ARG.findall(orders["args"])), variables)
        nodes = _NODES.search(query)
        if nodes is not None:
            return self._nodes(variables.get(nodes["ids"]))
        return _error(200, "This sandbox does not know the operation", code="undefinedField")

    # --- inventorySetQuantities -------------------------------------------------------------

    def _set_quantities(self, match: re.Match, variables: dict, *, strict: bool) -> SandboxResponse:
        data = variables.get(match["input"])
        key = variables.get(match["key"]) if match["key"] else None
        if not isinstance(data, dict) or not isinstance(data.get("quantities"), list):
            return _error(
                200,
                "Variable $input of type InventorySetQuantitiesInput! was provided invalid value",
                code="INVALID_VARIABLE",
            )
        if strict and not key:
            return _error(
                200, "The @idempotent directive is required for this mutation", code="BAD_REQUEST"
            )
        paid, extensions = self._cost(10.0)
        if not paid:
            self.count("throttled")
            return self._throttled(extensions)
        fate = self.gate()
        if fate == "throttle":
            return self._throttled(extensions)
        if fate == "error":
            return _error(503, "Service Unavailable", code="INTERNAL_SERVER_ERROR")
        fingerprint = json.dumps(data, sort_keys=True)
        if key is not None:
            with self._state_lock:
                stored = self.idempotency.get(key)
                busy = key in self.in_flight
                if stored is None and not busy:
                    self.in_flight.add(key)
            if busy:
                return self._set_answer(
                    [
                        _user_error(
                            "IDEMPOTENCY_CONCURRENT_REQUEST",
                            None,
                            "A request with this key is running",
                        )
                    ],
                    None,
                    extensions,
                )
            if stored is not None:
                if stored[0] != fingerprint:
                    return self._set_answer(
                        [
                            _user_error(
                                "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                                None,
                                "The key was used with other parameters",
                            )
                        ],
                        None,
                        extensions,
                    )
                self.count("idempotent_replays")
                return SandboxResponse.json(200, {**stored[1], "extensions": extensions})
        try:
            answer = self._apply(data, strict=strict)
        finally:
            if key is not None:
                with self._state_lock:
                    self.in_flight.discard(key)
        if key is not None:
            with self._state_lock:
                self.idempotency[key] = (fingerprint, answer)
        return SandboxResponse.json(200, {**answer, "extensions": extensions})

    def _apply(self, data: dict, *, strict: bool) -> dict:
        """Check every row; apply them all (no userError) or none."""
        errors = []
        if data.get("name") != "available":
            errors.append(_user_error("INVALID_NAME", ["input", "name"], "Only available"))
        if data.get("reason") not in REASONS:
            errors.append(_user_error("INVALID_REASON", ["input", "reason"], "Unknown reason"))
        rows = []
        with self._lock:
            for index, row in enumerate(data["quantities"]):
                error = self._row_error(index, row, strict=strict)
                if error is not None:
                    errors.append(error)
                else:
                    rows.append(row)
            if errors:
                self.counts["items_rejected"] += len(errors)
                return self._set_body(errors, None)
            for row in rows:
                key = (_gid_id(row["inventoryItemId"]), _gid_id(row["locationId"]))
                self.stock[key] = int(row["quantity"])
                self.applied.append({"keys": key, "quantity": int(row["quantity"])})
            self.groups += 1
            group = {
                "id": f"gid://shopify/InventoryAdjustmentGroup/{self.groups}",
                "reason": data["reason"],
            }
        return self._set_body([], group)

    def _row_error(self, index: int, row: Any, *, strict: bool) -> dict | None:
        """The userError of one `quantities` row, or None (call with the lock held)."""
        path = ["input", "quantities", str(index)]
        if not isinstance(row, dict):
            return _user_error("INVALID_INVENTORY_ITEM", path, "Not an object")
        item, location = _gid_id(row.get("inventoryItemId")), _gid_id(row.get("locationId"))
        if _gid_kind(row.get("inventoryItemId")) != "InventoryItem" or not item:
            return _user_error(
                "INVALID_INVENTORY_ITEM",
                [*path, "inventoryItemId"],
                "The specified inventory item could not be found.",
            )
        if _gid_kind(row.get("locationId")) != "Location" or not location:
            return _user_error(
                "INVALID_LOCATION",
                [*path, "locationId"],
                "The specified location could not be found.",
            )
        keys = {"inventory_item_id": item, "location_id": location}
        if (item, location) not in self.stock or self.is_rejected(keys):
            return _user_error(
                "ITEM_NOT_STOCKED_AT_LOCATION",
                [*path, "locationId"],
                "The specified inventory item is not stocked at the location.",
            )
        quantity = row.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            return _user_error(
                "INVALID_QUANTITY_NEGATIVE",
                [*path, "quantity"],
                "The quantity must be a whole number.",
            )
        if quantity < 0:
            return _user_error(
                "INVALID_QUANTITY_NEGATIVE", [*path, "quantity"], "The quantity can't be negative."
            )
        if quantity > MAX_QUANTITY:
            return _user_error(
                "INVALID_QUANTITY_TOO_HIGH",
                [*path, "quantity"],
                "The quantity can't be higher than 1,000,000,000.",
            )
        if "changeFromQuantity" not in row:
            if strict:
                return _user_error(
                    "CHANGE_FROM_QUANTITY_REQUIRED",
                    [*path, "changeFromQuantity"],
                    "changeFromQuantity is required (null to skip the check).",
                )
            return None
        expected = row["changeFromQuantity"]
        if expected is not None and expected != self.stock[(item, location)]:
            return _user_error(
                "CHANGE_FROM_QUANTITY_STALE",
                [*path, "changeFromQuantity"],
                "The specified compare quantity does not match the current quantity.",
            )
        return None

    @staticmethod
    def _set_body(errors: list[dict], group: dict | None) -> dict:
        return {
            "data": {
                "inventorySetQuantities": {"inventoryAdjustmentGroup": group, "userErrors": errors}
            }
        }

    def _set_answer(self, errors: list[dict], group: dict | None, extensions: dict):
        return SandboxResponse.json(
            200, {**self._set_body(errors, group), "extensions": extensions}
        )

    # --- reads ------------------------------------------------------------------------------

    def _levels(self, matches: list[re.Match], variables: dict) -> SandboxResponse:
        paid, extensions = self._cost(1.0 + 2 * len(matches))
        if not paid:
            self.count("read_throttled")
            return self._throttled(extensions)
        fate = self.gate(read=True)
        if fate == "throttle":
            return self._throttled(extensions)
        if fate == "error":
            return _error(503, "Service Unavailable", code="INTERNAL_SERVER_ERROR")
        data: dict[str, Any] = {}
        with self._lock:
            items = {key[0] for key in self.stock}
            for match in matches:
                item = _gid_id(variables.get(match["item"]))
                location = _gid_id(variables.get(match["location"]))
                if item not in items:
                    data[match["alias"]] = None
                    continue
                quantity = self.stock.get((item, location))
                level = None
                if quantity is not None:
                    level = {"quantities": [{"name": "available", "quantity": quantity}]}
                data[match["alias"]] = {
                    "id": f"gid://shopify/InventoryItem/{item}",
                    "inventoryLevel": level,
                }
        return SandboxResponse.json(200, {"data": data, "extensions": extensions})

    def _orders(self, args: dict[str, str], variables: dict) -> SandboxResponse:
        first = variables.get(args.get("first", ""))
        if isinstance(first, bool) or not isinstance(first, int) or not 1 <= first <= 250:
            return _error(200, "first must be between 1 and 250", code="BAD_REQUEST")
        paid, extensions = self._cost(1.0 + first // 5)
        if not paid:
            return self._throttled(extensions)
        search = str(variables.get(args.get("query", "")) or "")
        terms = []
        for term in _TERM.finditer(search):
            moment = _parse_time(term["at"])
            if moment is None:
                return _error(200, f"Invalid search term {term[0]}", code="BAD_REQUEST")
            terms.append((term["op"], moment))
        after = variables.get(args.get("after", ""))
        offset = _cursor_offset(after)
        if offset is None:
            return _error(200, "Invalid cursor", code="BAD_REQUEST")
        checks = {
            ">=": lambda a, b: a >= b,
            ">": lambda a, b: a > b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
        }
        with self._lock:
            matched = sorted(
                (
                    order
                    for order in self.orders.values()
                    if all(checks[op](int(order.updated), at) for op, at in terms)
                ),
                key=lambda order: (order.updated, order.order_id),
            )
            size = min(first, self.order_page_size or first)
            page = [
                self._order_node(order, brief=True) for order in matched[offset : offset + size]
            ]
        more = offset + size < len(matched)
        end = _cursor(offset + size) if page else None
        return SandboxResponse.json(
            200,
            {
                "data": {
                    "orders": {
                        "nodes": page,
                        "pageInfo": {"hasNextPage": more, "endCursor": end},
                    }
                },
                "extensions": extensions,
            },
        )

    def _nodes(self, ids: Any) -> SandboxResponse:
        if not isinstance(ids, list) or not 1 <= len(ids) <= 250:
            return _error(200, "ids must hold 1 to 250 ids", code="BAD_REQUEST")
        paid, extensions = self._cost(1.0 + 10 * len(ids))
        if not paid:
            return self._throttled(extensions)
        with self._lock:
            nodes = []
            for value in ids:
                order = self.orders.get(_gid_id(value)) if _gid_kind(value) == "Order" else None
                nodes.append(self._order_node(order) if order is not None else None)
        return SandboxResponse.json(200, {"data": {"nodes": nodes}, "extensions": extensions})

    # --- orders -----------------------------------------------------------------------------

    def order_id_new(self) -> str:
        """A 13-digit order id, as Shopify's (`5512345678901`)."""
        with self._lock:
            self._order_seq += 1
            return f"5{int(time.time()) % 10**7:07d}{self._order_seq % 10**5:05d}"

    def _order_node(self, order: SandboxOrder, *, brief: bool = False) -> dict[str, Any]:
        """An `Order` node as the documents ask for it (call with the lock held)."""
        financial, fulfillment = STATUSES.get(order.status, ("PENDING", "UNFULFILLED"))
        if order.status == "CANCELLED" and order.paid is None:
            financial = "VOIDED"
        cancelled = _iso(order.updated) if order.status == "CANCELLED" else None
        node: dict[str, Any] = {
            "id": f"gid://shopify/Order/{order.order_id}",
            "legacyResourceId": order.order_id,
            "updatedAt": _iso(order.updated),
            "cancelledAt": cancelled,
            "displayFinancialStatus": financial,
            "displayFulfillmentStatus": fulfillment,
        }
        if brief:
            return node
        locations = list(dict.fromkeys(line.keys.get("location_id", "") for line in order.lines))
        total = sum(float(line.price) * line.quantity for line in order.lines)
        node.update(
            {
                "name": f"#{1000 + int(order.order_id) % 100000}",
                "createdAt": _iso(order.created),
                "processedAt": _iso(order.created),
                "currencyCode": "USD",
                "totalPriceSet": {"shopMoney": {"amount": f"{total:.2f}", "currencyCode": "USD"}},
                "email": "buyer@example.com",
                "phone": order.buyer.get("phone"),
                "shippingAddress": {
                    "name": order.buyer.get("name"),
                    "address1": "1 Sandbox St",
                    "city": "Ottawa",
                    "zip": "K1A 0B1",
                    "countryCodeV2": "CA",
                },
                "lineItems": {
                    "nodes": [
                        {
                            "id": f"gid://shopify/LineItem/{line.line_id}",
                            "sku": line.sku,
                            "name": f"Sandbox product {line.sku}",
                            "quantity": line.quantity,
                            "currentQuantity": 0 if order.status == "CANCELLED" else line.quantity,
                            "originalUnitPriceSet": {"shopMoney": {"amount": line.price}},
                            "variant": {
                                "id": f"gid://shopify/ProductVariant/{line.line_id}",
                                "inventoryItem": {
                                    "id": "gid://shopify/InventoryItem/"
                                    + line.keys.get("inventory_item_id", "")
                                },
                            },
                        }
                        for line in order.lines
                    ]
                },
                "fulfillmentOrders": {
                    "nodes": [
                        {"assignedLocation": {"location": {"id": f"gid://shopify/Location/{loc}"}}}
                        for loc in locations
                        if loc
                    ]
                },
            }
        )
        return node

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """The `orders/*` webhook of the order's current status (REST order JSON)."""
        with self._lock:
            status = order.status
            first = len(order.history) == 1
            financial, fulfillment = STATUSES.get(status, ("PENDING", "UNFULFILLED"))
            if status == "CANCELLED" and order.paid is None:
                financial = "VOIDED"
            payload = {
                "id": int(order.order_id),
                "admin_graphql_api_id": f"gid://shopify/Order/{order.order_id}",
                "name": f"#{1000 + int(order.order_id) % 100000}",
                "financial_status": financial.lower(),
                "fulfillment_status": REST_FULFILLMENT.get(fulfillment, fulfillment.lower()),
                "cancelled_at": _iso(order.updated) if status == "CANCELLED" else None,
                "created_at": _iso(order.created),
                "updated_at": _iso(order.updated),
                "line_items": [
                    {"id": int(line.line_id), "sku": line.sku, "quantity": line.quantity}
                    for line in order.lines
                ],
            }
            updated = order.updated
        topic = "orders/create" if first else TOPICS.get(status, "orders/updated")
        body = json.dumps(payload).encode()
        delivery = hashlib.sha256(f"{order.order_id}|{status}|{updated}".encode()).hexdigest()
        return body, self.webhook_headers(topic, body, delivery, bad_signature=bad_signature)

    def stock_notification(self, keys: dict[str, str], quantity: int) -> tuple[bytes, dict]:
        """`inventory_levels/update` for a level edited behind our back."""
        payload = {
            "inventory_item_id": int(keys["inventory_item_id"]),
            "location_id": int(keys["location_id"]),
            "available": quantity,
            "updated_at": _iso(time.time()),
            "admin_graphql_api_id": (
                f"gid://shopify/InventoryLevel/{keys['location_id']}"
                f"?inventory_item_id={keys['inventory_item_id']}"
            ),
        }
        body = json.dumps(payload).encode()
        return body, self.webhook_headers("inventory_levels/update", body, secrets.token_hex(16))

    def webhook_headers(
        self, topic: str, body: bytes, delivery: str, *, bad_signature: bool = False
    ) -> dict[str, str]:
        """Shopify's delivery headers for a body, signed with the client secret (or not)."""
        secret = self.client_secret + ("-wrong" if bad_signature else "")
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": self.shop_domain,
            "X-Shopify-API-Version": FIRST_VERSION,
            "X-Shopify-Webhook-Id": delivery,
            "X-Shopify-Event-Id": secrets.token_hex(8),
            "X-Shopify-Triggered-At": datetime.now(tz=UTC).isoformat(),
        }


def _user_error(code: str, field: list[str] | None, message: str) -> dict:
    return {"code": code, "field": field, "message": message}


def _error(status: int, message: str, *, code: str = "BAD_REQUEST") -> SandboxResponse:
    return SandboxResponse.json(
        status, {"errors": [{"message": message, "extensions": {"code": code}}]}
    )


def _gid_id(value: Any) -> str:
    match = _GID.fullmatch(value) if isinstance(value, str) else None
    return match["id"] if match else ""


def _gid_kind(value: Any) -> str:
    match = _GID.fullmatch(value) if isinstance(value, str) else None
    return match["kind"] if match else ""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> int | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _cursor_offset(cursor: Any) -> int | None:
    if cursor is None:
        return 0
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
    except ValueError:
        return None
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "offset" and number.isdigit() else None


def _header(request: SandboxRequest, name: str) -> str:
    lowered = name.lower()
    for key, value in request.headers.items():
        if key.lower() == lowered:
            return value
    return ""


register_sandbox("shopify", ShopifySandbox)
