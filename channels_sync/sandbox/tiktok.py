"""A fake TikTok Shop Partner API (202309), and Tokopedia & Shop which is served by it.

Routes (reference/marketplaces.md section 3):

- `POST /product/202309/products/{product_id}/inventory/update`: sets SKU quantities;
  per-SKU failures answer top-level code 0 with `data.errors[]`.
- `POST /product/202309/inventory/search`: `{"sku_ids": [...]}` (<= 600) or
  `{"product_ids": [...]}` (<= 100); answers `data.inventory[].skus[]` with
  `total_available_quantity` and `warehouse_inventory[]`.
- `GET /api/v2/token/refresh` and `GET /api/v2/token/get` (auth host; not signed).
- `POST /order/202309/orders/search`: `page_size` (1..100, required), `page_token`,
  `sort_field` (`create_time` | `update_time`), `sort_order` (`ASC` | `DESC`) in the query;
  filters `order_status`, `create_time_ge/lt`, `update_time_ge/lt` (Unix seconds) in the JSON
  body. Answers `data.orders[]` (whole orders), `data.next_page_token` ('' on the last page)
  and `data.total_count`. The `order_page_size` option caps a page below the asked size, so
  tests can walk several pages.
- `GET /order/202309/orders?ids=a,b` (1..50 ids): `data.orders[]`; unknown ids are left out
  (UNCONFIRMED: the real API's answer for an unknown id is not documented).

Orders carry one `line_items[]` row per unit (the line-item schema has no quantity field).
Order notifications are webhook type 1 (`order_id, order_status, is_on_hold_order,
update_time`; `CANCEL` for CANCELLED, as the webhook spells it), signed like every TikTok
webhook: `Authorization` = hex HMAC-SHA256 of app_key + raw body, keyed with the app secret.
The notification id is derived from (shop, order, status, update time), so a retried
notification keeps its id as TikTok's retries do.

Shop calls are checked in this order, with this module's own signing code: app_key,
timestamp (Unix seconds, within [now - 5 min, now + 30 s]), `sign`, `shop_cipher`, then the
`x-tts-access-token` header. Answer codes: 36009002 throttle (HTTP 429, documented),
36009003 internal error, 36009004 invalid parameter / app_key / timestamp, 106001 bad
signature, 106013 shop_cipher (community codes), 105002 expired access token (HTTP 401), an
unknown access token 36009004 "The x-tts-access-token header is invalid" (documented; the
`invalid_token_code` option answers 101000, also documented, or the community 105001
instead), 12052048 product not in the shop, 12052393 promotion lock (used for `reject`: for
the whole SKU, or for one warehouse's row when the entry names a `warehouse_id`), 12052097
unknown warehouse, 12019028 a warehouse assigned to the SKU left out, 12052055
quantity out of range (codes from the product API's error tables). Refresh and auth-code
refusals use 36004004, a made-up code (the token API's refusal codes are undocumented).

Stock is kept per (product, SKU, warehouse). A SKU's warehouses are the ones its seeded
listings name (`warehouse_id`), or `DEFAULT_WAREHOUSE_ID` for a listing that names none. An
update of a SKU must list every one of its warehouses, as TikTok requires ("You must include
all warehouse IDs assigned to this SKU ... Do not omit any"); a row without `warehouse_id`
is taken only for a SKU with one warehouse. A SKU's rows apply all or none. Quantities
0..99,999 are accepted (0 is UNCONFIRMED on the real API: the documented range starts at 1).
Refresh tokens are not single use: TikTok documents no rotation, so a refresh answers the
same refresh token.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from channels_sync.sandbox.base import MarketplaceSandbox, SandboxOrder
from core.sandbox import SandboxRequest, SandboxResponse, register_sandbox

UPDATE_PATH = re.compile(r"^/product/202309/products/(?P<product_id>[^/]+)/inventory/update$")
SEARCH_PATH = "/product/202309/inventory/search"
REFRESH_PATH = "/api/v2/token/refresh"
GRANT_PATH = "/api/v2/token/get"
DEFAULT_WAREHOUSE_ID = "7068517275539719942"
MAX_QUANTITY = 99_999
TIMESTAMP_PAST_SECONDS = 300
TIMESTAMP_FUTURE_SECONDS = 30
REFRESH_TOKEN_LIFETIME = 365 * 86400
TOKEN_REFUSED = 36004004  # made up: the token API's refusal codes are not documented
ORDER_SEARCH_PATH = "/order/202309/orders/search"
ORDER_DETAIL_PATH = "/order/202309/orders"
ORDER_SEARCH_MAX_PAGE_SIZE = 100
ORDER_DETAIL_MAX_IDS = 50
ORDER_STATUS_CHANGE = 1  # webhook type
INVENTORY_STATUS_CHANGE = 27  # webhook type
TIME_FILTERS = ("create_time_ge", "create_time_lt", "update_time_ge", "update_time_lt")
INVALID_TOKEN_ANSWERS = {
    36009004: "Invalid credentials. The x-tts-access-token header is invalid.",
    101000: "Invalid x-tts-access-token or the shop_cipher does not match it.",
    105001: "Invalid credentials. The access token is invalid.",
}
WAREHOUSE_OMITTED = 12019028
PROMOTION_LOCKED = 12052393


class TikTokSandbox(MarketplaceSandbox):
    """TikTok Shop: signed shop calls, stock per (product, SKU), tokens, faults."""

    name = "tiktok"
    key_names = ("product_id", "sku_id", "warehouse_id")
    region = "MY"
    currency = "MYR"
    commerce_platform = "TIKTOK_SHOP"
    shop_id = "7494049642642441621"
    seller_name = "TikTok Shop Sandbox Seller"
    unpaid_statuses = ("UNPAID",)

    def __init__(
        self,
        *,
        app_key: str = "sandbox-tts-app-key",
        app_secret: str = "sandbox-tts-app-secret",  # noqa: S107 - a fake's made-up secret
        shop_cipher: str = "GCP_sandbox_shop_cipher",
    ) -> None:
        super().__init__()
        self.app_key = app_key
        self.app_secret = app_secret
        self.shop_cipher = shop_cipher
        # Each SKU's warehouses, (product_id, sku_id) -> warehouse ids in seeding order.
        self.sku_warehouses: dict[tuple[str, str], list[str]] = {}
        self.auth_codes: set[str] = set()
        self.updates: list[tuple[dict[str, str], int]] = []
        self.order_page_size: int | None = None
        self.invalid_token_code = 36009004

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.sku_warehouses.clear()
            self.auth_codes.clear()
            self.updates.clear()
            self.order_page_size = None
            self.invalid_token_code = 36009004

    def configure(self, **options: Any) -> dict:
        """The shared options, `order_page_size` (the most orders a search page holds; None:
        as many as `page_size` asks) and `invalid_token_code` (the code an unknown access
        token is answered with: 36009004, 101000 or 105001)."""
        page_size = options.pop("order_page_size", self.order_page_size)
        if page_size is not None and (
            isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1
        ):
            raise ValueError("order_page_size must be a positive integer or null")
        token_code = options.pop("invalid_token_code", self.invalid_token_code)
        if token_code not in INVALID_TOKEN_ANSWERS:
            raise ValueError(f"invalid_token_code must be one of {sorted(INVALID_TOKEN_ANSWERS)}")
        configured = super().configure(**options)
        with self._lock:
            self.order_page_size = page_size
            self.invalid_token_code = token_code
        return {**configured, "order_page_size": page_size, "invalid_token_code": token_code}

    def key_of(self, keys: dict[str, Any]) -> tuple[str, ...]:
        """(product_id, sku_id, warehouse_id); keys naming no warehouse name the SKU's first
        (its only one, for a single-warehouse SKU; `DEFAULT_WAREHOUSE_ID` if unknown)."""
        product, sku = (str(keys.get(name) or "") for name in ("product_id", "sku_id"))
        warehouse = str(keys.get("warehouse_id") or "")
        if not warehouse:
            assigned = self.sku_warehouses.get((product, sku))
            warehouse = assigned[0] if assigned else DEFAULT_WAREHOUSE_ID
        return (product, sku, warehouse)

    def seed_listings(self, listings: Any, quantity: int = 0) -> None:
        """Make listings known; the warehouses a SKU's listings name (`warehouse_id`, else
        `DEFAULT_WAREHOUSE_ID`) are the warehouses assigned to it."""
        listings = list(listings)
        with self._lock:
            for listing in listings:
                sku = (str(listing.get("product_id") or ""), str(listing.get("sku_id") or ""))
                warehouse_id = str(listing.get("warehouse_id") or DEFAULT_WAREHOUSE_ID)
                assigned = self.sku_warehouses.setdefault(sku, [])
                if warehouse_id not in assigned:
                    assigned.append(warehouse_id)
        super().seed_listings(listings, quantity)

    def is_rejected(self, keys: dict[str, Any]) -> bool:
        """Whether a `reject` entry names this SKU (and its warehouse, when it names one)."""
        names = ("product_id", "sku_id")
        return any(
            all(str(rejected.get(n, "")) == str(keys.get(n, "")) for n in names)
            and (
                not rejected.get("warehouse_id")
                or str(rejected["warehouse_id"]) == str(keys.get("warehouse_id", ""))
            )
            for rejected in self.options["reject"]
        )

    def sku_quantity(self, product_id: str, sku_id: str) -> int:
        """A SKU's stock over all its warehouses."""
        with self._lock:
            return sum(
                quantity
                for (product, sku, _), quantity in self.stock.items()
                if (product, sku) == (product_id, sku_id)
            )

    def credentials(self) -> dict[str, str]:
        """Fresh channel credentials: this shop's app and cipher, newly issued tokens."""
        access, refresh, lifetime = self.issue_tokens()
        return {
            "app_key": self.app_key,
            "app_secret": self.app_secret,
            "shop_cipher": self.shop_cipher,
            "access_token": access,
            "refresh_token": refresh,
            "access_token_expires_at": _iso(time.time() + lifetime),
        }

    def issue_auth_code(self) -> str:
        """An authorisation code, as the seller's consent redirect hands one (single use)."""
        code = secrets.token_hex(12)
        with self._lock:
            self.auth_codes.add(code)
        return code

    def describe(self) -> str:
        return (
            f"{self.name}: POST /product/202309/products/{{product_id}}/inventory/update, "
            f"POST {SEARCH_PATH}, POST {ORDER_SEARCH_PATH}, GET {ORDER_DETAIL_PATH}?ids=, "
            f"GET {REFRESH_PATH} (app_key={self.app_key}, "
            f"shop_cipher={self.shop_cipher}, region {self.region})"
        )

    def signed_webhook(self, event_type: int, data: dict[str, Any]) -> tuple[bytes, dict]:
        """A webhook as the platform sends it: (raw body, headers with `Authorization`)."""
        body = json.dumps(
            {
                "type": event_type,
                "tts_notification_id": secrets.token_hex(8),
                "shop_id": self.shop_id,
                "timestamp": int(time.time()),
                "data": data,
            }
        ).encode()
        return body, self._webhook_headers(body, self.app_secret)

    def stock_notification(self, keys: dict[str, str], quantity: int) -> tuple[bytes, dict]:
        """An inventory status change webhook (type 27) with the SKU's available quantity.

        TikTok sends it when a SKU falls to LOW_STOCK or OUT_OF_STOCK (or is predicted to);
        the sandbox sends it for every edit behind our back, so the path can be exercised.
        The quantity is the SKU's, over all its warehouses.
        """
        quantity = self.sku_quantity(keys["product_id"], keys["sku_id"])
        status = (
            "OUT_OF_STOCK"
            if quantity <= 0
            else "LOW_STOCK"
            if quantity <= 5
            else ("SUFFICIENT_STOCK")
        )
        data = {
            "product_id": keys["product_id"],
            "sku_id": keys["sku_id"],
            "trigger_reason": {"alert_type": "REALTIME", "low_stock_threshold": 5},
            "current_inventory_status": status,
            "inventory_distribution": {
                "total_quantity": quantity,
                "available_quantity": quantity,
                "creator_reserved_quantity": 0,
                "campaign_reserved_quantity": 0,
                "committed_quantity": 0,
            },
            "update_time": int(time.time()),
        }
        return self.signed_webhook(INVENTORY_STATUS_CHANGE, data)

    def _webhook_headers(self, body: bytes, secret: str) -> dict[str, str]:
        signature = hmac.new(secret.encode(), self.app_key.encode() + body, hashlib.sha256)
        return {"Authorization": signature.hexdigest(), "Content-Type": "application/json"}

    # --- orders -----------------------------------------------------------------------------

    def order_id_new(self) -> str:
        """An 18-digit order id, as TikTok Shop's (`576486316948490001`)."""
        with self._lock:
            self._order_seq += 1
            return f"576{int(time.time()) % 10**10:010d}{self._order_seq % 10**5:05d}"

    def notification(self, order: SandboxOrder, *, bad_signature: bool) -> tuple[bytes, dict]:
        """The order status change webhook (type 1) of the order's current status."""
        with self._lock:
            status = order.status
            updated = int(order.updated)
            on_hold = "ON_HOLD" in order.history
        # The webhook spells CANCELLED as CANCEL (Partner Center, order status change).
        notified = "CANCEL" if status == "CANCELLED" else status
        body = json.dumps(
            {
                "type": ORDER_STATUS_CHANGE,
                "tts_notification_id": self._notification_id(order.order_id, notified, updated),
                "shop_id": self.shop_id,
                "timestamp": updated,
                "data": {
                    "order_id": order.order_id,
                    "order_status": notified,
                    "is_on_hold_order": on_hold,
                    "update_time": updated,
                },
            }
        ).encode()
        secret = self.app_secret + "-wrong" if bad_signature else self.app_secret
        return body, self._webhook_headers(body, secret)

    def _notification_id(self, order_id: str, status: str, updated: int) -> str:
        """A 19-digit id, the same for the same change (TikTok's retries keep their id)."""
        digest = hashlib.sha256(f"{self.shop_id}|{order_id}|{status}|{updated}".encode())
        return str(7 * 10**18 + int(digest.hexdigest()[:15], 16) % 10**18)

    def _order_json(self, order: SandboxOrder) -> dict[str, Any]:
        """An order as Get Order Detail describes it (call with the lock held)."""
        package_id = f"115{order.order_id[-16:]}"
        display = order.status
        rows = []
        sub_total = Decimal(0)
        for line in order.lines:
            price = Decimal(line.price)
            for unit in range(line.quantity):
                sub_total += price
                rows.append(
                    {
                        "id": f"{line.line_id}{unit:03d}",
                        "product_id": line.keys.get("product_id", ""),
                        "sku_id": line.keys.get("sku_id", ""),
                        "seller_sku": line.sku,
                        "product_name": f"Sandbox product {line.keys.get('product_id', '')}",
                        "sku_name": f"Variant {line.keys.get('sku_id', '')}",
                        "sku_type": "NORMAL",
                        "original_price": line.price,
                        "sale_price": line.price,
                        "seller_discount": "0",
                        "platform_discount": "0",
                        "currency": self.currency,
                        "display_status": display,
                        "package_id": package_id,
                        "package_status": "TO_FULFILL",
                        "is_gift": False,
                        "cancel_reason": "",
                        "cancel_user": "",
                    }
                )
        address = {
            "name": str(order.buyer.get("name", "")),
            "phone_number": str(order.buyer.get("phone", "")),
            "full_address": "1 Jalan Sandbox, 50000 Kuala Lumpur",
            "address_detail": "1 Jalan Sandbox",
            "postal_code": "50000",
            "region_code": self.region,
            "district_info": [],
        }
        return {
            "id": order.order_id,
            "status": order.status,
            "commerce_platform": self.commerce_platform,
            "order_type": "NORMAL",
            "create_time": int(order.created),
            "update_time": int(order.updated),
            "paid_time": int(order.paid) if order.paid else 0,
            "is_on_hold_order": "ON_HOLD" in order.history,
            "is_cod": False,
            "user_id": "7494560109732254417",
            "buyer_email": "buyer@scs2.tiktok.com",
            "buyer_message": "",
            "recipient_address": address,
            "payment": {
                "currency": self.currency,
                "sub_total": str(sub_total),
                "shipping_fee": "0",
                "seller_discount": "0",
                "platform_discount": "0",
                "tax": "0",
                "total_amount": str(sub_total),
                "original_total_product_price": str(sub_total),
            },
            "payment_method_name": "Sandbox Pay",
            "fulfillment_type": "FULFILLMENT_BY_SELLER",
            "shipping_type": "TIKTOK",
            "delivery_type": "HOME_DELIVERY",
            "packages": [{"id": package_id}],
            "line_items": rows,
        }

    def _order_search(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        page_size = _int_or_none(query.get("page_size"))
        if page_size is None or not 1 <= page_size <= ORDER_SEARCH_MAX_PAGE_SIZE:
            return _answer(400, 36009004, "Invalid parameter: page_size must be 1 to 100.")
        sort_field = query.get("sort_field", "create_time")
        sort_order = query.get("sort_order", "DESC")
        if sort_field not in ("create_time", "update_time") or sort_order not in ("ASC", "DESC"):
            return _answer(400, 36009004, "Invalid parameter: sort_field or sort_order.")
        try:
            filters = request.json() if request.body else {}
        except ValueError:
            filters = None
        if not isinstance(filters, dict):
            return _answer(400, 36009004, "Invalid parameter: the body must be an object.")
        bounds = {}
        for name in TIME_FILTERS:
            if filters.get(name) is None:
                continue
            value = filters[name]
            if isinstance(value, bool) or not isinstance(value, int):
                return _answer(400, 36009004, f"Invalid parameter: {name} must be an integer.")
            bounds[name] = value
        wanted_status = filters.get("order_status")
        offset = _page_offset(query.get("page_token", ""))
        if offset is None:
            return _answer(400, 36009004, "Invalid parameter: page_token.")
        with self._lock:
            matched = []
            for order in self.orders.values():
                times = {"create_time": int(order.created), "update_time": int(order.updated)}
                if wanted_status and order.status != wanted_status:
                    continue
                if not all(
                    times[name[:-3]] >= value if name.endswith("_ge") else times[name[:-3]] < value
                    for name, value in bounds.items()
                ):
                    continue
                matched.append((times[sort_field], order.order_id, order))
            matched.sort(key=lambda row: (row[0], row[1]), reverse=sort_order == "DESC")
            size = min(page_size, self.order_page_size or page_size)
            page = [self._order_json(order) for _, _, order in matched[offset : offset + size]]
        more = offset + size < len(matched)
        return _answer(
            200,
            0,
            "Success",
            {
                "orders": page,
                "next_page_token": _page_token(offset + size) if more else "",
                "total_count": len(matched),
            },
        )

    def _order_detail(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        ids = [value.strip() for value in query.get("ids", "").split(",") if value.strip()]
        if not 1 <= len(ids) <= ORDER_DETAIL_MAX_IDS:
            return _answer(400, 36009004, "Invalid parameter: ids must hold 1 to 50 order ids.")
        with self._lock:
            orders = [self._order_json(self.orders[i]) for i in ids if i in self.orders]
        return _answer(200, 0, "Success", {"orders": orders})

    # --- routes -----------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.method == "GET" and request.path == REFRESH_PATH:
            return self._token_refresh(request)
        if request.method == "GET" and request.path == GRANT_PATH:
            return self._token_get(request)
        match = UPDATE_PATH.match(request.path)
        if request.method == "POST" and match:
            return self._checked(request) or self._inventory_update(request, match["product_id"])
        if request.method == "POST" and request.path == SEARCH_PATH:
            return self._checked(request) or self._inventory_search(request)
        if request.method == "POST" and request.path == ORDER_SEARCH_PATH:
            return self._checked(request) or self._order_search(request)
        if request.method == "GET" and request.path == ORDER_DETAIL_PATH:
            return self._checked(request) or self._order_detail(request)
        return _answer(404, 36009004, f"Invalid path {request.method} {request.path}")

    def _checked(self, request: SandboxRequest) -> SandboxResponse | None:
        """The refusal of a shop call's app key, timestamp, sign, cipher or token, if any."""
        query = {key: values[-1] for key, values in request.query.items()}
        if query.get("app_key") != self.app_key:
            self.count("auth_refused")
            return _answer(401, 36009004, "Invalid credentials. Invalid app_key query parameter.")
        try:
            timestamp = int(query.get("timestamp", ""))
        except ValueError:
            timestamp = None
        now = time.time()
        if timestamp is None or not (
            now - TIMESTAMP_PAST_SECONDS <= timestamp <= now + TIMESTAMP_FUTURE_SECONDS
        ):
            self.count("bad_timestamp")
            return _answer(
                400,
                36009004,
                "Invalid timestamp. The timestamp query parameter must be within 5 minutes "
                "before and 30 seconds after the current time.",
            )
        if not hmac.compare_digest(query.get("sign", ""), self._expected_sign(request, query)):
            self.count("bad_signature")
            return _answer(401, 106001, "Invalid credentials. The sign is invalid.")
        if query.get("shop_cipher") != self.shop_cipher:
            self.count("auth_refused")
            return _answer(401, 106013, "Missing or invalid identifier: shop_cipher.")
        state = self.token_state(_header(request, "x-tts-access-token"))
        if state == "expired":
            self.count("auth_refused")
            return _answer(401, 105002, "Expired credentials. The access token has expired.")
        if state == "invalid":
            self.count("auth_refused")
            code = self.invalid_token_code
            return _answer(401, code, INVALID_TOKEN_ANSWERS[code])
        return None

    def _expected_sign(self, request: SandboxRequest, query: dict[str, str]) -> str:
        pairs = "".join(
            f"{key}{query[key]}" for key in sorted(query) if key not in ("sign", "access_token")
        )
        content_type = _header(request, "Content-Type").lower()
        body = b"" if content_type.startswith("multipart/form-data") else request.body
        secret = self.app_secret.encode()
        message = secret + request.path.encode() + pairs.encode() + body + secret
        return hmac.new(secret, message, hashlib.sha256).hexdigest()

    def _inventory_update(self, request: SandboxRequest, product_id: str) -> SandboxResponse:
        try:
            skus = request.json()["skus"]
        except (ValueError, KeyError, TypeError):
            return _answer(400, 36009004, "Invalid parameter: skus is required.")
        if not isinstance(skus, list) or not 1 <= len(skus) <= 100:
            return _answer(400, 36009004, "Invalid parameter: skus must hold 1 to 100 SKUs.")
        with self._lock:
            known_product = any(key[0] == product_id for key in self.stock)
        if not known_product:
            return _answer(
                200,
                12052048,
                "You cannot edit the specified product(s) as it isn't listed in your "
                "account or shop.",
            )
        fate = self.gate()
        if fate == "throttle":
            return _answer(
                429,
                36009002,
                "Too many requests. You've made too many requests in a short period of time.",
            )
        if fate == "error":
            return _answer(500, 36009003, "Internal error. Please try again.")
        errors = []
        for sku in skus:
            error = self._apply_sku(product_id, sku)
            if error is not None:
                errors.append(error)
        if errors:
            with self._lock:
                self.counts["items_rejected"] += len(errors)
        return _answer(200, 0, "Success", {"errors": errors} if errors else {})

    def _apply_sku(self, product_id: str, sku: Any) -> dict[str, Any] | None:
        """Apply one SKU's inventory rows, all or none; return its error entry if refused."""
        sku_id = str(sku.get("id", "")) if isinstance(sku, dict) else ""
        keys = {"product_id": product_id, "sku_id": sku_id}
        rows = sku.get("inventory") if isinstance(sku, dict) else None
        with self._lock:
            assigned = list(self.sku_warehouses.get((product_id, sku_id), []))
        if not assigned:
            return _sku_error(sku_id, 12052048, "The SKU isn't listed in your account or shop.", [])
        if self.is_rejected(keys):
            return _sku_error(
                sku_id,
                PROMOTION_LOCKED,
                "The SKU is in a running promotion; its inventory is locked.",
                [],
            )
        if not isinstance(rows, list) or not rows:
            return _sku_error(sku_id, 36009004, "Invalid parameter: inventory is required.", [])
        # A row may leave out `warehouse_id` only when the SKU has a single warehouse.
        implied = assigned[0] if len(assigned) == 1 else ""
        quantities: dict[str, int] = {}
        extra_errors = []
        for row in rows:
            named = str(row.get("warehouse_id") or implied) if isinstance(row, dict) else ""
            value = row.get("quantity") if isinstance(row, dict) else None
            if named in assigned and self.is_rejected({**keys, "warehouse_id": named}):
                extra_errors.append(
                    {
                        "warehouse_id": named,
                        "code": PROMOTION_LOCKED,
                        "message": "The SKU inventory in this warehouse is locked by a "
                        "running promotion.",
                    }
                )
            elif named not in assigned:
                if named:
                    extra_errors.append(
                        {
                            "warehouse_id": named,
                            "code": 12052097,
                            "message": "The warehouse does not exist",
                        }
                    )
            elif (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= MAX_QUANTITY
            ):
                extra_errors.append(
                    {
                        "warehouse_id": named,
                        "code": 12052055,
                        "message": "The SKU inventory quantity for the warehouse must be "
                        "within allowed limits.",
                    }
                )
            else:
                quantities[named] = value
        for warehouse_id in assigned:
            if warehouse_id not in quantities and not any(
                error["warehouse_id"] == warehouse_id for error in extra_errors
            ):
                extra_errors.append(
                    {
                        "warehouse_id": warehouse_id,
                        "code": WAREHOUSE_OMITTED,
                        "message": "You must include all warehouse IDs assigned to this SKU. "
                        "Do not omit any.",
                    }
                )
        if extra_errors:
            first = extra_errors[0]
            return _sku_error(sku_id, first["code"], first["message"], extra_errors)
        with self._lock:
            for warehouse_id, quantity in quantities.items():
                self.stock[(product_id, sku_id, warehouse_id)] = quantity
                self.updates.append(({**keys, "warehouse_id": warehouse_id}, quantity))
        return None

    def _inventory_search(self, request: SandboxRequest) -> SandboxResponse:
        fate = self.gate(read=True)
        if fate == "throttle":
            return _answer(
                429,
                36009002,
                "Too many requests. You've made too many requests in a short period of time.",
            )
        if fate == "error":
            return _answer(500, 36009003, "Internal error. Please try again.")
        try:
            query = request.json()
        except ValueError:
            query = None
        if not isinstance(query, dict):
            return _answer(400, 36009004, "Invalid parameter: the body must be an object.")
        sku_ids = [str(v) for v in query.get("sku_ids") or []]
        product_ids = [str(v) for v in query.get("product_ids") or []]
        if len(sku_ids) > 600 or len(product_ids) > 100 or not (sku_ids or product_ids):
            return _answer(400, 36009004, "Invalid parameter: 1-600 sku_ids or 1-100 product_ids.")
        with self._lock:
            rows = sorted(self.stock.items())
        skus: dict[tuple[str, str], dict[str, Any]] = {}
        for (product_id, sku_id, warehouse_id), quantity in rows:
            # sku_ids win when both are given, as documented.
            wanted = sku_id in sku_ids if sku_ids else product_id in product_ids
            if not wanted:
                continue
            entry = skus.setdefault(
                (product_id, sku_id),
                {
                    "id": sku_id,
                    "seller_sku": f"SELLER-{sku_id}",
                    "total_available_quantity": 0,
                    "total_committed_quantity": 0,
                    "warehouse_inventory": [],
                },
            )
            entry["total_available_quantity"] += quantity
            entry["warehouse_inventory"].append(
                {
                    "warehouse_id": warehouse_id,
                    "available_quantity": quantity,
                    "committed_quantity": 0,
                }
            )
        products: dict[str, list[dict[str, Any]]] = {}
        for (product_id, _sku_id), entry in skus.items():
            products.setdefault(product_id, []).append(entry)
        inventory = [{"product_id": pid, "skus": entries} for pid, entries in products.items()]
        return _answer(200, 0, "Success", {"inventory": inventory})

    # --- tokens -----------------------------------------------------------------------------

    def _token_refresh(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        refused = self._app_refused(query, "refresh_token")
        if refused is not None:
            return refused
        refresh = query.get("refresh_token")
        if not self.refresh_consume(refresh, single_use=False):
            self.count("auth_refused")
            return _answer(200, TOKEN_REFUSED, "Invalid refresh_token.")
        return self._token_answer(refresh)

    def _token_get(self, request: SandboxRequest) -> SandboxResponse:
        query = {key: values[-1] for key, values in request.query.items()}
        refused = self._app_refused(query, "authorized_code")
        if refused is not None:
            return refused
        code = query.get("auth_code", "")
        with self._lock:
            valid = code in self.auth_codes
            self.auth_codes.discard(code)
        if not valid:
            self.count("auth_refused")
            return _answer(200, TOKEN_REFUSED, "Invalid auth_code.")
        refresh = secrets.token_hex(16)
        with self._lock:
            self.refresh_tokens.add(refresh)
        return self._token_answer(refresh)

    def _app_refused(self, query: dict[str, str], grant_type: str) -> SandboxResponse | None:
        if query.get("app_key") != self.app_key or not hmac.compare_digest(
            query.get("app_secret", ""), self.app_secret
        ):
            self.count("auth_refused")
            return _answer(200, TOKEN_REFUSED, "Invalid app_key or app_secret.")
        if query.get("grant_type") != grant_type:
            return _answer(200, 36009004, f"Invalid parameter: grant_type must be {grant_type}.")
        return None

    def _token_answer(self, refresh: str) -> SandboxResponse:
        access = secrets.token_hex(16)
        now = time.time()
        expiry = int(now + int(self.options["token_lifetime"]))
        with self._lock:
            self.access_tokens[access] = expiry
        data = {
            "access_token": access,
            # Absolute Unix times, not lifetimes.
            "access_token_expire_in": expiry,
            "refresh_token": refresh,
            "refresh_token_expire_in": int(now + REFRESH_TOKEN_LIFETIME),
            "open_id": f"sandbox-{self.name}-open-id",
            "seller_name": self.seller_name,
            "seller_base_region": self.region,
            "user_type": 0,
        }
        return _answer(200, 0, "success", data)


class TokopediaSandbox(TikTokSandbox):
    """Tokopedia & Shop: the same API and checks as TikTok Shop, for an Indonesian shop."""

    name = "tokopedia"
    region = "ID"
    currency = "IDR"
    # Orders placed in the Tokopedia app come through the same API, marked as such.
    commerce_platform = "TOKOPEDIA"
    shop_id = "7494049642642441622"
    seller_name = "Tokopedia & Shop Sandbox Seller"

    def __init__(
        self,
        *,
        app_key: str = "sandbox-tokopedia-app-key",
        app_secret: str = "sandbox-tokopedia-app-secret",  # noqa: S107 - a fake's secret
        shop_cipher: str = "ROW_sandbox_tokopedia_cipher",
    ) -> None:
        super().__init__(app_key=app_key, app_secret=app_secret, shop_cipher=shop_cipher)


def _answer(status: int, code: int, message: str, data: Any = None) -> SandboxResponse:
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": secrets.token_hex(12).upper(),
    }
    if data is not None:
        body["data"] = data
    return SandboxResponse.json(status, body)


def _sku_error(sku_id: str, code: int, message: str, extra: list[dict]) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "detail": {"sku_id": sku_id, "extra_errors": extra},
    }


def _header(request: SandboxRequest, name: str) -> str:
    lowered = name.lower()
    for key, value in request.headers.items():
        if key.lower() == lowered:
            return value
    return ""


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _page_token(offset: int) -> str:
    """An opaque page token (the offset of the next page, encoded)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_offset(token: str) -> int | None:
    """The offset a page token names (0 for none); None for a token this shop never gave."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


register_sandbox("tiktok", TikTokSandbox)
register_sandbox("tokopedia", TokopediaSandbox)
