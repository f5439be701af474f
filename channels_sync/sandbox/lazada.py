"""The Lazada Open Platform sandbox: signed form calls, XML stock payloads, JSON answers.

Routes (each also under a `/rest` prefix, which is stripped before routing and signing, so
one server is both the regional API base `{url}/rest` and the auth base):

- `POST /product/stock/sellable/update` (UpdateSellableQuantity): form parameter `payload`
  = `<Request><Product><Skus><Sku><ItemId/><SkuId/><SellerSku/>?<SellableQuantity/></Sku>
  ...</Skus></Product></Request>`; at most 50 SKUs (else code 204). A `<Sku>` may carry
  `<MultiWarehouseInventories><MultiWarehouseInventory><WarehouseCode/><SellableQuantity/>
  </MultiWarehouseInventory>...</MultiWarehouseInventories>` instead of its own
  `<SellableQuantity>`: each named warehouse of the SKU is set. The single-warehouse form sets
  only the dropshipping warehouse, as Lazada's does; its code is `dropshipping` unless the
  `dropshipping_code` option names another (Lazada's own code for it is not documented).
- `GET /product/item/get?item_id=` (GetProductItem): the item's SKUs with `quantity` and
  `Available` (the sum over warehouses) and a `multiWarehouseInventories` entry per
  warehouse; an unknown item answers code 208.

Stock is kept per (item_id, sku_id, warehouse_code): a seeded listing naming no
`warehouse_code` is the SKU's dropshipping warehouse.
- `GET /orders/get` (GetOrders): `created_after` or `update_after` required, the bounds
  inclusive; `sort_by` `created_at`/`updated_at`, `sort_direction`, `offset` (<= 5000),
  `limit` (<= 100; pages are also cut to the `orders_page_size` option); answers
  `data: {count, countTotal, orders: [...]}`. `GET /order/get?order_id=` (GetOrder; an unknown
  order is code 16), `GET /order/items/get?order_id=` (GetOrderItems: one item per unit) and
  `GET /orders/items/get?order_ids=[1,2]` (GetMultipleOrderItems: at most 50, else code 38;
  `data: [{order_id, order_number, order_items}]`). Times read `2018-02-12 13:44:36 +0800`.
- Order pushes (`notification()`): a trade order message (`message_type` 0) with
  `Authorization` = lowercase hex HMAC-SHA256 (key: app secret) of app key + body.
- `/auth/token/create` (`code` from `authorization_code()`, single use) and
  `/auth/token/refresh` (`refresh_token`; reusable until it expires, answered with the same
  refresh token: a refresh renews the access token only).

Every call is checked as Lazada's gateway does, with this module's own code: a known
`app_key`, `timestamp` in epoch milliseconds within 7200 s of now, `sign_method=sha256`, and
`sign` = uppercase hex HMAC-SHA256 (key: app secret) of the API path followed by the other
parameters as `name + value` sorted by name. API calls (not the token calls) need a live
`access_token`.

Answers are HTTP 200 with a JSON body whose `code` is "0" on success, as Lazada's are:
throttle `901`, injected server error `6` ("system fluctuation, please retry"), per-SKU
failure `501` "Update product failed" with `detail: [{field, item_id, sku_id, seller_sku,
message}]` (that shape is not documented by Lazada; here the listed SKUs failed and the
others were applied), bad payload `5`. Token answers: `MissingAccessToken`,
`IllegalAccessToken` ("The specified access token is invalid or expired" for an expired
token, as Lazada words it; "... is invalid" for an unknown one, so tests can tell a revoke
from an expiry), `IllegalRefreshToken`, `InvalidCode`; a wrong signature `IncompleteSignature`;
a stale timestamp `InvalidTimestamp`.
"""

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs
from xml.etree import ElementTree

from channels_sync.sandbox.base import MarketplaceSandbox, SandboxOrder
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

DEFAULT_APP_KEY = "100777"
DEFAULT_APP_SECRET = "lazada-sandbox-app-secret"  # noqa: S105 - a fake's made-up secret
TIMESTAMP_WINDOW_MS = 7200 * 1000
MAX_SKUS = 50
REFRESH_LIFETIME = 30 * 86400  # a test app's refresh token: 30 days
WAREHOUSE = "dropshipping"  # a single-warehouse seller's only warehouse code
SELLER_ID = "1000100"

STOCK_UPDATE = "/product/stock/sellable/update"
ITEM_GET = "/product/item/get"
ORDERS_GET = "/orders/get"
ORDER_GET = "/order/get"
ORDER_ITEMS_GET = "/order/items/get"
MULTIPLE_ORDER_ITEMS_GET = "/orders/items/get"
ORDERS_MAX_LIMIT = 100  # GetOrders: "the supported maximum number is 100"
ORDERS_MAX_OFFSET = 5000  # GetOrders: offset "maximum value: 5000"
MULTIPLE_ORDERS_MAX = 50  # GetMultipleOrderItems: at most 50 order ids
# GetOrders' `status` filter takes one of the documented order statuses (Lazada Open
# Platform, GetOrders: "unpaid, pending, canceled, ready_to_ship, delivered, returned,
# shipped, failed", with packed, lost, topack, toship and shipping from the order status
# flow); without it every status is listed. Anything else is refused.
ORDER_STATUS_FILTERS = frozenset(
    {
        "unpaid",
        "pending",
        "packed",
        "ready_to_ship",
        "shipped",
        "delivered",
        "canceled",
        "returned",
        "failed",
        "lost",
        "topack",
        "toship",
        "shipping",
    }
)
# Lazada shows order times in the seller's country time: "2018-02-12 13:44:36 +0800".
COUNTRY_OFFSETS = {"sg": 8, "my": 8, "ph": 8, "th": 7, "vn": 7, "id": 7}
CURRENCIES = {"sg": "SGD", "my": "MYR", "ph": "PHP", "th": "THB", "vn": "VND", "id": "IDR"}
TOKEN_CREATE = "/auth/token/create"  # noqa: S105 - a path, not a secret
TOKEN_REFRESH = "/auth/token/refresh"  # noqa: S105 - a path, not a secret


class LazadaSandbox(MarketplaceSandbox):
    """A fake Lazada seller (one app, one shop); see the module docstring for the wire."""

    name = "lazada"
    key_names = ("item_id", "sku_id", "warehouse_code")
    # Lazada's order statuses before payment (`unpaid`: the buyer has not paid; a cash on
    # delivery order goes straight to `pending`).
    unpaid_statuses = ("unpaid",)

    def __init__(
        self,
        *,
        app_key: str = DEFAULT_APP_KEY,
        app_secret: str = DEFAULT_APP_SECRET,
        country: str = "sg",
    ) -> None:
        super().__init__()
        self.app_key = app_key
        self.app_secret = app_secret
        self.country = country
        self.updates: list[tuple[dict[str, str], int]] = []
        self.seller_skus: dict[tuple[str, ...], str] = {}
        self.auth_codes: set[str] = set()
        # GetOrders answers at most this many orders per page (Lazada: `limit`, at most 100);
        # a smaller value makes tests page.
        self.orders_page_size = ORDERS_MAX_LIMIT
        self.dropshipping_code = WAREHOUSE

    # --- state ----------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.updates.clear()
            self.seller_skus.clear()
            self.auth_codes.clear()
            self.orders_page_size = ORDERS_MAX_LIMIT
            self.dropshipping_code = WAREHOUSE

    def configure(self, **options: Any) -> dict:
        """The shared options, `orders_page_size` (1..100: most orders per GetOrders page,
        whatever `limit` asks) and `dropshipping_code` (the dropshipping warehouse's code; set
        it before seeding listings that name no warehouse)."""
        code = options.pop("dropshipping_code", None)
        if code is not None:
            if not isinstance(code, str) or not code.strip():
                raise ValueError("dropshipping_code must be a non-empty text")
            with self._lock:
                self.dropshipping_code = code.strip()
        page_size = options.pop("orders_page_size", None)
        if page_size is not None:
            if isinstance(page_size, bool) or not 1 <= int(page_size) <= ORDERS_MAX_LIMIT:
                raise ValueError(f"orders_page_size must be between 1 and {ORDERS_MAX_LIMIT}")
            with self._lock:
                self.orders_page_size = int(page_size)
        return {
            **super().configure(**options),
            "orders_page_size": self.orders_page_size,
            "dropshipping_code": self.dropshipping_code,
        }

    def seed_listings(self, listings: Any, quantity: int = 0) -> None:
        """Make listings known (dicts of `item_id`, `sku_id`, optional `seller_sku`,
        `quantity`); the seller SKU is shown back by GetProductItem."""
        listings = list(listings)
        super().seed_listings(listings, quantity)
        with self._lock:
            for listing in listings:
                if listing.get("seller_sku"):
                    self.seller_skus[self.key_of(listing)[:2]] = str(listing["seller_sku"])

    def key_of(self, keys: dict[str, Any]) -> tuple[str, ...]:
        """(item_id, sku_id, warehouse_code); no warehouse code is the dropshipping one."""
        item, sku = (str(keys.get(name) or "") for name in ("item_id", "sku_id"))
        return (item, sku, str(keys.get("warehouse_code") or self.dropshipping_code))

    def is_rejected(self, keys: dict[str, Any]) -> bool:
        """Whether a `reject` entry names this SKU (and its warehouse, when it names one)."""
        return any(
            self.key_of(rejected)[:2] == self.key_of(keys)[:2]
            and (
                not rejected.get("warehouse_code")
                or self.key_of(rejected)[2] == self.key_of(keys)[2]
            )
            for rejected in self.options["reject"]
        )

    def sku_warehouses(self, item_id: str, sku_id: str) -> dict[str, int]:
        """A SKU's sellable quantity by warehouse code ({} for an unknown SKU)."""
        with self._lock:
            return {
                key[2]: quantity
                for key, quantity in self.stock.items()
                if key[:2] == (item_id, sku_id)
            }

    def credentials(self) -> dict[str, str]:
        """Fresh channel credentials: this app's keys and tokens just issued."""
        access, refresh, lifetime = self.issue_tokens()
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        return {
            "app_key": self.app_key,
            "app_secret": self.app_secret,
            "access_token": access,
            "refresh_token": refresh,
            "access_token_expires_at": expires.isoformat(),
        }

    def authorization_code(self) -> str:
        """A code as the seller's consent redirect carries it (single use)."""
        code = secrets.token_hex(12)
        with self._lock:
            self.auth_codes.add(code)
        return code

    def push_headers(self, body: bytes) -> dict[str, str]:
        """The headers Lazada sends with a push of this raw body (`Authorization`: lowercase
        hex HMAC-SHA256, key app secret, of app key + body)."""
        digest = hmac.new(self.app_secret.encode(), self.app_key.encode() + body, hashlib.sha256)
        return {"Authorization": digest.hexdigest(), "Content-Type": "application/json"}

    # --- orders ---------------------------------------------------------------------------------

    def order_id_new(self) -> str:
        """A 15-digit number, as Lazada's order ids are (`260422900198363`)."""
        with self._lock:
            self._order_seq += 1
            seq = self._order_seq
        stamp = int(time.time() * 1000) % 10**9
        return f"{secrets.randbelow(9) + 1}{stamp:09d}{seq:05d}"

    def order_item_ids(self, order: SandboxOrder) -> list[list[str]]:
        """The order item ids of each line: Lazada has one order item per unit."""
        return [
            [f"{line.line_id}{unit:03d}" for unit in range(1, line.quantity + 1)]
            for line in order.lines
        ]

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """Lazada's trade order push for the order's current status, signed like Lazada.

        Lazada sends one message per order line (`trade_order_line_id` is the order item
        id); the sandbox sends the first item's, so one change makes one notification.
        `status_update_time` is in seconds, `timestamp` (when the push was made) in ms.
        """
        item_ids = [ids[0] for ids in self.order_item_ids(order) if ids]
        message = {
            "seller_id": SELLER_ID,
            "message_type": 0,
            "data": {
                "order_status": order.status,
                "trade_order_id": order.order_id,
                "trade_order_line_id": item_ids[0] if item_ids else order.order_id,
                "status_update_time": int(order.updated),
            },
            "timestamp": int(time.time() * 1000),
            "site": f"lazada_{self.country}",
        }
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        if bad_signature:
            wrong = hmac.new(b"not-the-app-secret", self.app_key.encode() + body, hashlib.sha256)
            return body, {"Authorization": wrong.hexdigest(), "Content-Type": "application/json"}
        return body, self.push_headers(body)

    def describe(self) -> str:
        return (
            f"/rest{STOCK_UPDATE}, /rest{ITEM_GET}, /rest{TOKEN_REFRESH}  "
            f"(app_key {self.app_key}, sign_method sha256, timestamp in ms)"
        )

    # --- HTTP -----------------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        path = request.path
        if path == "/rest" or path.startswith("/rest/"):
            path = path[len("/rest") :]
        path = path.rstrip("/") or "/"
        routes = {
            STOCK_UPDATE: (self._stock_update, True),
            ITEM_GET: (self._item_get, True),
            ORDERS_GET: (self._orders_get, True),
            ORDER_GET: (self._order_get, True),
            ORDER_ITEMS_GET: (self._order_items_get, True),
            MULTIPLE_ORDER_ITEMS_GET: (self._multiple_order_items_get, True),
            TOKEN_CREATE: (self._token_create, False),
            TOKEN_REFRESH: (self._token_refresh, False),
        }
        if path not in routes:
            return self._error("InvalidApiPath", "The specified API path is invalid")
        handler, needs_token = routes[path]
        params = _params(request)
        refused = self._check_call(path, params, needs_token=needs_token)
        if refused is not None:
            return refused
        return handler(params)

    def _check_call(
        self, path: str, params: dict[str, str], *, needs_token: bool
    ) -> SandboxResponse | None:
        """The gateway's checks, in its order; the refusal, or None to go on."""
        if not params.get("app_key"):
            self.count("auth_refused")
            return self._error("MissingAppKey", 'The input parameter "app_key" is not supplied')
        if params["app_key"] != self.app_key:
            self.count("auth_refused")
            return self._error("InvalidAppKey", "The specified app key is invalid")
        stamp = params.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - time.time() * 1000) > TIMESTAMP_WINDOW_MS:
            return self._error(
                "InvalidTimestamp",
                "The timestamp must be epoch milliseconds within 7200 seconds of UTC",
            )
        if params.get("sign_method") != "sha256":
            self.count("bad_signature")
            return self._error("IncompleteSignature", "The sign_method must be sha256")
        if not hmac.compare_digest(params.get("sign", ""), self._expected_sign(path, params)):
            self.count("bad_signature")
            return self._error(
                "IncompleteSignature", "The request signature does not conform to lazop standards"
            )
        if not needs_token:
            return None
        token = params.get("access_token")
        if not token:
            self.count("auth_refused")
            return self._error(
                "MissingAccessToken", 'The input parameter "access_token" is not supplied'
            )
        state = self.token_state(token)
        if state == "expired":
            self.count("auth_refused")
            return self._error(
                "IllegalAccessToken", "The specified access token is invalid or expired"
            )
        if state != "ok":
            self.count("auth_refused")
            return self._error("IllegalAccessToken", "The specified access token is invalid")
        return None

    def _expected_sign(self, path: str, params: dict[str, str]) -> str:
        pieces = [path]
        for name in sorted(params):
            if name != "sign":
                pieces.extend((name, params[name]))
        message = "".join(pieces).encode("utf-8")
        return (
            hmac.new(self.app_secret.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
        )

    # --- stock ----------------------------------------------------------------------------------

    def _stock_update(self, params: dict[str, str]) -> SandboxResponse:
        try:
            rows = _parse_payload(params.get("payload", ""))
        except ValueError as exc:
            return self._error("5", f"E005: Invalid Request Format ({exc})", kind="ISP")
        if len(rows) > MAX_SKUS:
            return self._error("204", "E204: Too many SKU in one request", kind="ISP")
        fate = self.gate()
        if fate == "throttle":
            return self._error(
                "901", "Limit service request speed in server side temporarily.", kind="ISP"
            )
        if fate == "error":
            return self._error("6", "Unexpected internal error", kind="ISP")
        detail = []
        for row in rows:
            failure = self._apply(row)
            if failure is not None:
                self.count("items_rejected")
                detail.append(
                    {
                        "field": failure[0],
                        "item_id": row["item_id"],
                        "sku_id": row["sku_id"],
                        "seller_sku": row["seller_sku"],
                        "message": failure[1],
                    }
                )
        if detail:
            return self._error("501", "Update product failed", kind="ISP", detail=detail)
        return SandboxResponse.json(200, {"code": "0", "data": {}, "request_id": _request_id()})

    def _apply(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """Apply one SKU's quantities, all or none; return (field, message) when it fails.

        The single-warehouse form sets the dropshipping warehouse only; the multi-warehouse
        form sets each warehouse it names, which must be the SKU's.
        """
        keys = {"item_id": row["item_id"], "sku_id": row["sku_id"]}
        if not keys["item_id"] or not keys["sku_id"]:
            return "SkuId", "ItemId and SkuId are required"
        targets = (
            row["warehouses"]
            if row["warehouses"] is not None
            else [(self.dropshipping_code, row["quantity"])]
        )
        if any(not raw.isdigit() for _, raw in targets):
            return "SellableQuantity", "SellableQuantity must be a non-negative integer"
        held = self.sku_warehouses(keys["item_id"], keys["sku_id"])
        if not held:
            return "SkuId", "SKU not exist"
        if row["warehouses"] is not None:
            unknown = [code for code, _ in targets if code not in held]
            if unknown:
                return "WarehouseCode", f"Warehouse {unknown[0]} is not a warehouse of this SKU"
        if any(self.is_rejected({**keys, "warehouse_code": code}) for code, _ in targets):
            return "SellableQuantity", "The sellable quantity of this SKU cannot be updated"
        applied = dict(keys)
        if row["seller_sku"]:
            applied["seller_sku"] = row["seller_sku"]
        with self._lock:
            for code, raw in targets:
                self.stock[self.key_of({**keys, "warehouse_code": code})] = int(raw)
                self.updates.append(
                    (
                        {**applied, "warehouse_code": code}
                        if row["warehouses"] is not None
                        else applied,
                        int(raw),
                    )
                )
        return None

    def _item_get(self, params: dict[str, str]) -> SandboxResponse:
        fate = self.gate(read=True)
        if fate == "throttle":
            return self._error(
                "901", "Limit service request speed in server side temporarily.", kind="ISP"
            )
        if fate == "error":
            return self._error("6", "Unexpected internal error", kind="ISP")
        item_id = params.get("item_id", "")
        if not item_id:
            return self._error("200", "E200: Empty Item Id and Seller Sku", kind="ISP")
        with self._lock:
            sku_ids = list(dict.fromkeys(key[1] for key in self.stock if key[0] == item_id))
            seller_skus = dict(self.seller_skus)
        if not sku_ids:
            return self._error("208", "E208: Item not exist", kind="ISP")
        skus = []
        for sku_id in sku_ids:
            key = (item_id, sku_id)
            held = self.sku_warehouses(item_id, sku_id)
            quantity = sum(held.values())
            warehouses = [
                {
                    "warehouseCode": code,
                    "quantity": held[code],
                    "totalQuantity": held[code],
                    "sellableQuantity": held[code],
                    "occupyQuantity": 0,
                    "withholdQuantity": 0,
                }
                for code in sorted(held)
            ]
            skus.append(
                {
                    "SkuId": _number(key[1]),
                    "SellerSku": seller_skus.get(key, ""),
                    "ShopSku": f"{key[0]}_{self.country.upper()}-{key[1]}",
                    "Status": "active",
                    "quantity": quantity,
                    "Available": quantity,
                    "multiWarehouseInventories": warehouses,
                    "channelInventories": [],
                }
            )
        data = {"itemId": _number(item_id), "status": "Active", "skus": skus}
        return SandboxResponse.json(200, {"code": "0", "data": data, "request_id": _request_id()})

    # --- orders (GetOrders, GetOrder, GetOrderItems, GetMultipleOrderItems) ----------------------

    def _orders_get(self, params: dict[str, str]) -> SandboxResponse:
        """GetOrders: orders created or updated in a time range, paged by offset and limit.

        `created_after` or `update_after` is required; the four bounds are ISO 8601 and
        inclusive ("after or on", "before or on"), compared at Lazada's one-second precision.
        `sort_by` is `created_at` (default) or `updated_at`, `sort_direction` `DESC`
        (default) or `ASC`; `status` (optional) filters by one documented status
        (`ORDER_STATUS_FILTERS`; anything else is refused). Each page holds at most
        `limit` orders (and at most `orders_page_size`); `countTotal` counts them all.
        """
        bounds = {}
        for name in ("created_after", "created_before", "update_after", "update_before"):
            if params.get(name):
                moment = _parse_iso(params[name])
                if moment is None:
                    return self._error("InvalidParameter", f"Invalid parameter {name}")
                bounds[name] = moment
        if "created_after" not in bounds and "update_after" not in bounds:
            return self._error(
                "MissingParameter",
                'The input parameter "created_after" or "update_after" is not supplied',
            )
        sort_by = params.get("sort_by") or "created_at"
        direction = (params.get("sort_direction") or "DESC").upper()
        if sort_by not in ("created_at", "updated_at") or direction not in ("ASC", "DESC"):
            return self._error("InvalidParameter", "Invalid sort_by or sort_direction")
        try:
            offset = int(params.get("offset") or 0)
            limit = int(params.get("limit") or ORDERS_MAX_LIMIT)
        except ValueError:
            return self._error("InvalidParameter", "offset and limit must be integers")
        if not 0 <= offset <= ORDERS_MAX_OFFSET or not 1 <= limit <= ORDERS_MAX_LIMIT:
            return self._error("InvalidParameter", "Invalid offset or limit")
        status = params.get("status") or ""
        if status and status not in ORDER_STATUS_FILTERS:
            return self._error("InvalidParameter", "Invalid parameter status")
        with self._lock:
            orders = list(self.orders.values())
            page_size = self.orders_page_size

        def keep(order: SandboxOrder) -> bool:
            created, updated = int(order.created), int(order.updated)
            checks = (
                ("created_after", lambda bound: created >= bound),
                ("created_before", lambda bound: created <= bound),
                ("update_after", lambda bound: updated >= bound),
                ("update_before", lambda bound: updated <= bound),
            )
            if any(name in bounds and not test(bounds[name]) for name, test in checks):
                return False
            return not status or order.status == status

        attribute = "created" if sort_by == "created_at" else "updated"
        selected = sorted(
            (order for order in orders if keep(order)),
            key=lambda order: (int(getattr(order, attribute)), order.order_id),
            reverse=direction == "DESC",
        )
        page = selected[offset : offset + min(limit, page_size)]
        data = {
            "count": len(page),
            "countTotal": len(selected),
            "orders": [self._order_json(order) for order in page],
        }
        return SandboxResponse.json(200, {"code": "0", "data": data, "request_id": _request_id()})

    def _order_get(self, params: dict[str, str]) -> SandboxResponse:
        order = self._order_of(params.get("order_id", ""))
        if order is None:
            return self._error("16", "E016: Invalid Order ID", kind="ISP")
        return SandboxResponse.json(
            200, {"code": "0", "data": self._order_json(order), "request_id": _request_id()}
        )

    def _order_items_get(self, params: dict[str, str]) -> SandboxResponse:
        order = self._order_of(params.get("order_id", ""))
        if order is None:
            return self._error("16", "E016: Invalid Order ID", kind="ISP")
        return SandboxResponse.json(
            200, {"code": "0", "data": self._items_json(order), "request_id": _request_id()}
        )

    def _multiple_order_items_get(self, params: dict[str, str]) -> SandboxResponse:
        """GetMultipleOrderItems: `order_ids` = "[1,2]"; up to 50; unknown ids left out."""
        raw = params.get("order_ids", "")
        try:
            ids = json.loads(raw)
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not ids:
            return self._error(
                "56", "E056: Invalid OrdersIdList format. Must use array format [1,2]", kind="ISP"
            )
        if len(ids) > MULTIPLE_ORDERS_MAX:
            return self._error("38", "E038: Too many orders were requested", kind="ISP")
        data = []
        for order_id in ids:
            order = self._order_of(str(order_id))
            if order is not None:
                data.append(
                    {
                        "order_id": _number(order.order_id),
                        "order_number": _number(order.order_id),
                        "order_items": self._items_json(order),
                    }
                )
        if not data:
            return self._error("39", "E039: No orders were found", kind="ISP")
        return SandboxResponse.json(200, {"code": "0", "data": data, "request_id": _request_id()})

    def _order_of(self, order_id: str) -> SandboxOrder | None:
        with self._lock:
            return self.orders.get(order_id.strip())

    def _time(self, epoch: float) -> str:
        """A time as Lazada shows it: seconds, in the seller's country offset."""
        zone = timezone(timedelta(hours=COUNTRY_OFFSETS.get(self.country, 8)))
        return datetime.fromtimestamp(int(epoch), tz=zone).strftime("%Y-%m-%d %H:%M:%S %z")

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        """An order as GetOrders and GetOrder show it."""
        total = sum(Decimal(line.price) * line.quantity for line in order.lines)
        first, _, last = str(order.buyer.get("name", "")).partition(" ")
        address = {
            "first_name": first,
            "last_name": last,
            "phone": str(order.buyer.get("phone", "")),
            "address1": "1 Sandbox Road",
            "address2": "",
            "address3": "",
            "address4": "",
            "address5": "",
            "city": "Singapore",
            "post_code": "000001",
            "country": self.country.upper(),
        }
        return {
            "order_id": _number(order.order_id),
            "order_number": _number(order.order_id),
            "created_at": self._time(order.created),
            "updated_at": self._time(order.updated),
            "price": f"{total:.2f}",
            "items_count": sum(line.quantity for line in order.lines),
            "statuses": [order.status],
            "payment_method": "COD" if order.paid is None else "MIXEDCARD",
            "customer_first_name": first,
            "customer_last_name": last,
            "address_shipping": address,
            "address_billing": dict(address),
            "voucher": 0.0,
            "voucher_platform": 0.0,
            "voucher_seller": 0.0,
            "shipping_fee": 0.0,
            "warehouse_code": self.dropshipping_code,
            "gift_option": False,
            "gift_message": "",
            "remarks": "",
            "extra_attributes": "",
            "promised_shipping_times": "",
            "delivery_info": "",
        }

    def _items_json(self, order: SandboxOrder) -> list[dict[str, Any]]:
        """An order's items as GetOrderItems shows them: one per unit."""
        with self._lock:
            seller_skus = dict(self.seller_skus)
        items = []
        for line, item_ids in zip(order.lines, self.order_item_ids(order), strict=True):
            item_id, sku_id = line.keys.get("item_id", ""), line.keys.get("sku_id", "")
            seller_sku = line.sku or seller_skus.get(self.key_of(line.keys)[:2], "")
            for order_item_id in item_ids:
                items.append(
                    {
                        "order_item_id": _number(order_item_id),
                        "order_id": _number(order.order_id),
                        "shop_id": f"{self.country.upper()}SANDBOX",
                        "name": f"Sandbox product {item_id}",
                        "variation": "",
                        "sku": seller_sku,
                        "shop_sku": f"{item_id}_{self.country.upper()}-{sku_id}",
                        "sku_id": _number(sku_id),
                        "product_id": _number(item_id),
                        "status": order.status,
                        "item_price": float(line.price),
                        "paid_price": float(line.price),
                        "voucher_amount": 0.0,
                        "currency": CURRENCIES.get(self.country, "SGD"),
                        "created_at": self._time(order.created),
                        "updated_at": self._time(order.updated),
                        "shipping_type": "Dropshipping",
                        "warehouse_code": self.dropshipping_code,
                        "tracking_code": "",
                        "shipment_provider": "",
                        "reason": "",
                        "return_status": "",
                        "is_digital": 0,
                        "order_type": "Normal",
                    }
                )
        return items

    # --- tokens ---------------------------------------------------------------------------------

    def _token_create(self, params: dict[str, str]) -> SandboxResponse:
        code = params.get("code", "")
        with self._lock:
            known = code in self.auth_codes
            self.auth_codes.discard(code)
        if not known:
            self.count("auth_refused")
            return self._error("InvalidCode", "Invalid authorization code")
        access, refresh, lifetime = self.issue_tokens()
        return self._token_answer(access, refresh, lifetime)

    def _token_refresh(self, params: dict[str, str]) -> SandboxResponse:
        refresh = params.get("refresh_token", "")
        if not self.refresh_consume(refresh, single_use=False):
            self.count("auth_refused")
            return self._error(
                "IllegalRefreshToken", "The specified refresh token is invalid or expired"
            )
        access = secrets.token_hex(16)
        lifetime = int(self.options["token_lifetime"])
        with self._lock:
            self.access_tokens[access] = time.time() + lifetime
        return self._token_answer(access, refresh, lifetime)

    def _token_answer(self, access: str, refresh: str, lifetime: int) -> SandboxResponse:
        return SandboxResponse.json(
            200,
            {
                "code": "0",
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": lifetime,
                "refresh_expires_in": REFRESH_LIFETIME,
                "account_platform": "seller_center",
                "account": "sandbox-seller@example.com",
                "country": self.country,
                "country_user_info_list": [
                    {
                        "country": self.country,
                        "seller_id": "1000100",
                        "user_id": "2000100",
                        "short_code": f"{self.country.upper()}SANDBOX",
                    }
                ],
                "request_id": _request_id(),
            },
        )

    # --- answers --------------------------------------------------------------------------------

    @staticmethod
    def _error(code: str, message: str, *, kind: str = "ISV", **extra: Any) -> SandboxResponse:
        """A Lazada error: HTTP 200, `type` ISV (caller's fault) or ISP (service's)."""
        body = {"type": kind, "code": code, "message": message, **extra}
        body["request_id"] = _request_id()
        return SandboxResponse.json(200, body)


def _params(request: SandboxRequest) -> dict[str, str]:
    """The call's parameters: the query string, then a form body (first value of each)."""
    params = {name: values[0] for name, values in request.query.items() if values}
    content_type = request.headers.get("Content-Type", "")
    if request.body and "application/x-www-form-urlencoded" in content_type:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        params.update({name: values[0] for name, values in form.items() if values})
    return params


def _parse_payload(payload: str) -> list[dict[str, Any]]:
    """The SKUs of an UpdateSellableQuantity payload; `ValueError` for a malformed one."""
    if not payload.strip():
        raise ValueError("payload is empty")
    try:
        # The sandbox only ever parses payloads sent to it on localhost by tests and the demo.
        root = ElementTree.fromstring(payload)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise ValueError(f"payload is not XML: {exc}") from None
    skus = root.find("Product/Skus") if root.tag == "Request" else None
    if skus is None:
        raise ValueError("payload must be Request/Product/Skus")
    rows = []
    for sku in skus.findall("Sku"):
        multi = sku.find("MultiWarehouseInventories")
        warehouses = None
        if multi is not None:
            warehouses = [
                (
                    (entry.findtext("WarehouseCode") or "").strip(),
                    (entry.findtext("SellableQuantity") or "").strip(),
                )
                for entry in multi.findall("MultiWarehouseInventory")
            ]
            if not warehouses or not all(code for code, _ in warehouses):
                raise ValueError("MultiWarehouseInventories needs a WarehouseCode per entry")
        rows.append(
            {
                "item_id": (sku.findtext("ItemId") or "").strip(),
                "sku_id": (sku.findtext("SkuId") or "").strip(),
                "seller_sku": (sku.findtext("SellerSku") or "").strip(),
                "quantity": (sku.findtext("SellableQuantity") or "").strip(),
                "warehouses": warehouses,
            }
        )
    if not rows:
        raise ValueError("payload has no Sku")
    return rows


def _parse_iso(text: str) -> int | None:
    """Epoch seconds of an ISO 8601 time (`2017-02-10T09:00:00+08:00`; UTC without an
    offset), or None."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _number(value: str) -> int | str:
    """Lazada's ids are JSON numbers; a made-up non-numeric id stays a string."""
    return int(value) if value.isdigit() else value


def _request_id() -> str:
    return secrets.token_hex(13)


register_sandbox("lazada", LazadaSandbox)
