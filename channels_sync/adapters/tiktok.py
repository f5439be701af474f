"""TikTok Shop Partner API (version 202309) and Tokopedia & Shop, which is served by it.

Wire format (reference/marketplaces.md section 3):

- Every shop call carries `app_key`, `timestamp` (Unix seconds), `shop_cipher` and `sign` in
  the query and the access token in the `x-tts-access-token` header. `sign` is the lowercase
  hex HMAC-SHA256, keyed with the app secret, of `app_secret + path + sorted key+value pairs
  (without sign and access_token) + raw body + app_secret` (`sign_request`).
- Stock: `POST /product/202309/products/{product_id}/inventory/update` with
  `{"skus": [{"id", "inventory": [{"warehouse_id", "quantity"}]}]}`; all SKUs of one call
  belong to one product, so `batches()` groups by product. Every warehouse assigned to a SKU
  must be in each update of it (Partner Center, Products API "Update Inventory": "You must
  include all warehouse IDs assigned to this SKU ... Do not omit any"; an omission fails with
  12019028 / 12052037): a SKU's warehouse listings are one push group (`push_group`), which
  the push pipeline completes and `batches()` never splits, and the SKU's warehouses that
  have no listing here are added from a read just before the update
  (`channels_sync.adapters.tiktok_warehouses`).
- Read-back: `POST /product/202309/inventory/search` with `{"sku_ids": [...]}` (<= 600).
- Tokens: `GET {auth}/api/v2/token/refresh` (not signed); `access_token_expire_in` is an
  absolute Unix time, not a lifetime.
- Webhooks: `Authorization` = hex HMAC-SHA256(app_secret, app_key + raw body) [M confidence:
  SDK/community code, the vendor guide is ambiguous]. Envelope `{"type", "tts_notification_id",
  "shop_id", "timestamp", "data"}`; type 1 (order status change) carries `data.order_id,
  order_status, is_on_hold_order, update_time`, type 11 (cancellation status change)
  `data.order_id, cancellations_role, cancel_status, cancel_id, create_time` (Partner Center,
  Webhooks > Order). The platform wants HTTP 200 with an empty body within 3 s and retries
  at +2 min, +30 min, +3 h, +12 h (Partner Center, "Configure webhooks").
- Orders: `POST /order/202309/orders/search` (Partner Center, Order API "Get Order List"):
  `page_size` (<= 100), `page_token`, `sort_field`, `sort_order` in the query, the filters
  (`update_time_ge`, `update_time_lt`, ...) in the JSON body; answers `data.orders[]`,
  `data.next_page_token` (empty on the last page), `data.total_count`. Detail
  `GET /order/202309/orders?ids=a,b` (<= 50 ids, "Get Order Detail") answers `data.orders[]`.
  A line item has no quantity: the order carries one `line_items[]` row per unit.

Answer codes and how they are classified (Partner Center, "Common errors" and the Update
Inventory error table; UNCONFIRMED ones are choices, not documented), the same for the stock
update, the read-back and the order calls (`whole_call_outcome`):
- 0: success; per-SKU failures sit in `data.errors[]` with top-level code 0 (documented).
- HTTP 429 or 36009002: throttled (documented); no Retry-After is documented, one is honoured.
- HTTP 5xx, 36009003 (internal error) and 36009007 ("Request timeout ... try again"):
  retryable.
- A bad or expired access token: auth with `token_expired` (refresh and send again; a refused
  refresh then asks for re-authorisation): 105002 (expired), 36009004 when its message names
  the `x-tts-access-token` header (the code also covers other invalid parameters), 101000
  (invalid x-tts-access-token, or a shop_cipher that does not match it), and 105001 (invalid
  access token, a community code not in the documentation).
- 106001 invalid signature, 105005 scope refused, 106013 missing or unknown shop_cipher,
  36009004 naming the app_key: auth (the credentials themselves); HTTP 401/403 without a
  known code: auth.
- 36009004 naming the timestamp: retryable (our clock, not the request).
- Any other non-zero code for the whole call, e.g. 12052048 (the product is not listed in the
  shop, from the product API's error table) or another invalid parameter: permanent.
"""

import hashlib
import hmac
import json
import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import structlog

from channels_sync.adapters.base import (
    ANSWER_SKU_MAX,
    Adapter,
    AdapterError,
    CallResult,
    ChannelEvent,
    ItemResult,
    MarketOrder,
    MarketOrderLine,
    ObservedStock,
    OrderRef,
    OrderStatus,
    Outcome,
    StockReport,
    StockUpdate,
    answer_digest,
    answer_int,
    answer_json,
    answer_list,
    answer_money,
    answer_name,
    answer_object,
    answer_rows,
    answer_text,
    chunk_groups,
    stock_observed,
    unreadable,
    updates_grouped,
)
from channels_sync.adapters.tiktok_warehouses import (
    WarehouseReadError,
    sku_warehouses,
    warehouses_completed,
)
from core.http import OutboundError

logger = structlog.get_logger(__name__)

API_VERSION = "202309"
# Query parameters that never enter the signature.
UNSIGNED_PARAMS = frozenset({"sign", "access_token"})
SEARCH_MAX_SKU_IDS = 600

ORDER_SEARCH_PATH = f"/order/{API_VERSION}/orders/search"
ORDER_DETAIL_PATH = f"/order/{API_VERSION}/orders"
ORDER_SEARCH_PAGE_SIZE = 100  # the documented maximum of `page_size`
ORDER_DETAIL_MAX_IDS = 50  # the documented maximum of `ids` per detail call
# A guard against a search that never ends (a server minting a fresh page token every
# time): 100 000 orders updated in one polled range at 100 a page.
ORDER_SEARCH_PAGES_MAX = 1000
# Webhook types about an order (Partner Center, Webhooks > Order).
WEBHOOK_ORDER_STATUS_CHANGE = 1
WEBHOOK_CANCELLATION_STATUS_CHANGE = 11
# Partner Center, Webhooks > Product > "Inventory status change" (type 27): a SKU's stock
# fell to LOW_STOCK / OUT_OF_STOCK, or is predicted to; `data` names `product_id`, `sku_id`,
# `inventory_distribution.available_quantity` (what can be ordered, all warehouses) and
# `update_time`.
WEBHOOK_INVENTORY_STATUS_CHANGE = 27

# TikTok Shop order statuses (Order API "Get Order Detail": `status`; the order status change
# webhook spells the cancelled state `CANCEL`) and the type-11 cancellation statuses.
ORDER_STATUSES: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    # Paid, held by the platform for its fraud and cancellation window (US/UK) before it can
    # ship: the buyer has paid, so the stock is spoken for.
    "ON_HOLD": OrderStatus.PAID,
    "AWAITING_SHIPMENT": OrderStatus.PAID,
    # Some packages of the order have shipped, not all: the order is not shipped as a whole,
    # so it stays reserved (ready to ship) until IN_TRANSIT.
    "PARTIALLY_SHIPPING": OrderStatus.READY_TO_SHIP,
    # Packed with a label, waiting for the carrier's pick-up: it has not left the seller.
    "AWAITING_COLLECTION": OrderStatus.READY_TO_SHIP,
    "IN_TRANSIT": OrderStatus.SHIPPED,
    "DELIVERED": OrderStatus.DELIVERED,
    "COMPLETED": OrderStatus.COMPLETED,
    "CANCELLED": OrderStatus.CANCELLED,
    "CANCEL": OrderStatus.CANCELLED,  # the webhook's spelling of CANCELLED
    # Cancellation requests (webhook type 11) say nothing about stock by themselves: a pending
    # request may be refused, a closed one leaves the order as it was, and an accepted or
    # completed one is followed by the order's own CANCELLED (and may cancel only some items
    # where item-level cancellation exists, UK): the order's status decides.
    "CANCELLATION_REQUEST_PENDING": None,
    "CANCELLATION_REQUEST_CANCELLED": None,
    "CANCELLATION_REQUEST_SUCCESS": None,
    "CANCELLATION_REQUEST_COMPLETE": None,
}

THROTTLE_CODES = frozenset({36009002})
# 36009003 internal error; 36009007 "Request timeout ... try again" (Partner Center, common
# error codes).
RETRYABLE_CODES = frozenset({36009003, 36009007})
# A bad or expired access token: refresh and send again.
TOKEN_EXPIRED_CODES = frozenset({105001, 105002, 101000})
AUTH_CODES = frozenset({105005, 106001, 106013})
# Invalid parameter: a bad access token when it names the token header, the credentials when
# it names the app_key, our clock when it names the timestamp, else the request.
INVALID_PARAM_CODE = 36009004
TOKEN_HEADER_MARKERS = ("x-tts-access-token", "access token", "access_token")
# Per-SKU codes worth trying again soon: "number of requests from merchants over limit" and a
# per-SKU echo of the throttle / internal error / timeout codes.
ITEM_RETRYABLE_CODES = frozenset({12052109, 36009002, 36009003, 36009007})


def sign_base_string(
    *, app_secret: str, path: str, params: Mapping[str, Any], body: bytes = b""
) -> bytes:
    """Return the bytes TikTok Shop signs: secret + path + sorted key+value + body + secret.

    `params` is the whole query; `sign` and `access_token` are left out here. Pass an empty
    `body` for GET and multipart requests (a multipart body is never signed).
    """
    pairs = "".join(f"{key}{params[key]}" for key in sorted(params) if key not in UNSIGNED_PARAMS)
    secret = app_secret.encode()
    return secret + path.encode() + pairs.encode() + body + secret


def sign_request(
    *, app_secret: str, path: str, params: Mapping[str, Any], body: bytes = b""
) -> str:
    """Return the `sign` query value: lowercase hex HMAC-SHA256 of `sign_base_string`."""
    base = sign_base_string(app_secret=app_secret, path=path, params=params, body=body)
    return hmac.new(app_secret.encode(), base, hashlib.sha256).hexdigest()


def webhook_sign(*, app_key: str, app_secret: str, body: bytes) -> str:
    """Return the `Authorization` value of a webhook: hex HMAC-SHA256 of app_key + body."""
    return hmac.new(app_secret.encode(), app_key.encode() + body, hashlib.sha256).hexdigest()


def json_body(data: Any) -> bytes:
    """Serialise a request body once: the same bytes are signed and sent."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


MAX_QUANTITY = 99_999


class TikTokAdapter(Adapter):
    """TikTok Shop (Partner API 202309): one call per product, its SKUs and warehouses."""

    type = "tiktok"
    label = "TikTok Shop"
    credential_fields = (
        "app_key",
        "app_secret",
        "shop_cipher",
        "access_token",
        "refresh_token",
        "access_token_expires_at",
    )
    secret_fields = ("app_secret", "access_token", "refresh_token")
    required_credentials = ("app_key", "app_secret", "shop_cipher")
    key_columns: ClassVar[dict[str, str]] = {
        "product_id": "external_item_id",
        "sku_id": "external_variant_id",
        "warehouse_id": "external_location_id",
    }
    required_keys = ("product_id", "sku_id")
    # A SKU's warehouse listings are updated together (see the module docstring).
    push_group_keys = ("product_id", "sku_id")
    # One call updates the SKUs of one product, and a product has at most 100 SKUs.
    default_batch_size = 100
    max_batch_size = 100
    # The documented quota is 50 QPS per API, counted per (app, shop); stay 20% under it so
    # other callers of the same app (order sync, a seller tool) keep some room.
    default_rate_per_second = 40.0
    default_burst = 40
    default_base_url = "https://open-api.tiktokglobalshop.com"
    default_auth_base_url = "https://auth.tiktok-shops.com"
    webhook_signature_header = "Authorization"
    webhook_key_fields = ("app_key", "app_secret")

    # --- batches ----------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """Group updates by product (one call each), then by SKU, in chunks of `batch_size`.

        A SKU's updates (one per warehouse) always share a call, even past the size: the API
        refuses an update that leaves out one of the SKU's warehouses. Order of first
        appearance is kept, for products and for SKUs.
        """
        size = max(1, min(batch_size, self.max_batch_size))
        products: dict[str, list[StockUpdate]] = {}
        for update in updates:
            products.setdefault(str(update.keys.get("product_id", "")), []).append(update)
        batches: list[list[StockUpdate]] = []
        for product_updates in products.values():
            batches.extend(chunk_groups(updates_grouped(product_updates, self.push_group), size))
        return batches

    # --- stock ------------------------------------------------------------------------------

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the quantities of one product's SKUs; classify the answer (never raises).

        Quantities go as given: the documented range [1, 99999] is UNCONFIRMED for 0 (sellers
        report 0 is accepted) and anything the API refuses comes back per SKU.

        When an update names a warehouse, the batch's SKUs are read first (one inventory
        search): every warehouse of a SKU that no update names goes in at the figure read,
        and passengers at theirs (`tiktok_warehouses`, which also states the race this
        leaves). A read that fails makes the batch retryable (throttled and token refusals
        keep their own outcome); nothing is sent.
        """
        if not updates:
            return CallResult(outcome=Outcome.OK)
        product_ids = {str(update.keys.get("product_id", "")) for update in updates}
        if len(product_ids) != 1:
            return CallResult(
                outcome=Outcome.PERMANENT,
                error="one call updates the SKUs of one product: split with batches()",
            )
        product_id = product_ids.pop()
        path = f"/product/{API_VERSION}/products/{product_id}/inventory/update"
        started = time.perf_counter()
        rows = self._warehouses_completed(product_id, updates, started)
        if isinstance(rows, CallResult):
            return rows
        body = json_body({"skus": self._skus_payload(rows)})
        try:
            response, latency_ms = self._signed("POST", path, body)
        except OutboundError as exc:
            return self.transport_failure(exc, int((time.perf_counter() - started) * 1000))
        return self._classify_push(response, updates, latency_ms)

    def _warehouses_completed(
        self, product_id: str, updates: Sequence[StockUpdate], started: float
    ) -> list[StockUpdate] | CallResult:
        """The rows to send, every warehouse of each SKU in (see `push_stock`), or the
        failed read's result."""
        sku_ids = list(
            dict.fromkeys(
                str(update.keys.get("sku_id", ""))
                for update in updates
                if update.keys.get("warehouse_id")
            )
        )
        if not sku_ids:
            return list(updates)
        try:
            found = self._inventory_search(sku_ids)
            read = {
                sku_id: sku_warehouses(sku)
                for sku_id, (found_product, sku) in found.items()
                if not found_product or found_product == product_id
            }
        except (AdapterError, WarehouseReadError) as exc:
            outcome = getattr(exc, "outcome", Outcome.RETRYABLE)
            if outcome not in (Outcome.THROTTLED, Outcome.AUTH):
                outcome = Outcome.RETRYABLE
            return CallResult(
                outcome=outcome,
                error=f"inventory read before the update: {exc}"[:1000],
                retry_after=getattr(exc, "retry_after", None),
                token_expired=getattr(exc, "token_expired", False),
                latency_ms=int((time.perf_counter() - started) * 1000),
            )
        rows, added = warehouses_completed(updates, read)
        if added:
            logger.info("tiktok.warehouses_added", product_id=product_id, warehouses=added)
        return rows

    @staticmethod
    def _skus_payload(updates: Sequence[StockUpdate]) -> list[dict[str, Any]]:
        """The `skus` array: one entry per SKU, one inventory row per warehouse (last wins)."""
        skus: dict[str, dict[str, dict[str, Any]]] = {}
        for update in updates:
            warehouse_id = update.keys.get("warehouse_id") or ""
            # TikTok documents quantities up to 99,999: a bigger pool shows the maximum.
            row: dict[str, Any] = {"quantity": min(max(int(update.quantity), 0), MAX_QUANTITY)}
            if warehouse_id:
                row = {"warehouse_id": str(warehouse_id), **row}
            skus.setdefault(str(update.keys["sku_id"]), {})[warehouse_id] = row
        return [{"id": sku_id, "inventory": list(rows.values())} for sku_id, rows in skus.items()]

    def _classify_push(
        self, response: Any, updates: Sequence[StockUpdate], latency_ms: int
    ) -> CallResult:
        status = response.status_code
        body = answer_json(response)
        error = self.excerpt(response.content)
        failed = whole_call_outcome(status, body)
        if failed is not None:
            outcome, expired = failed
            return self.call_failed(
                outcome, response, error=error, latency_ms=latency_ms, token_expired=expired
            )
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        failures = _item_failures(data.get("errors") or [], updates)
        items = []
        for update in updates:
            failure = failures.get(id(update))
            if failure is None:
                items.append(ItemResult(listing_id=update.listing_id, ok=True))
            else:
                message, retryable = failure
                items.append(
                    ItemResult(
                        listing_id=update.listing_id,
                        ok=False,
                        error=message[:500],
                        retryable=retryable,
                    )
                )
        return CallResult(
            outcome=Outcome.PARTIAL if failures else Outcome.OK,
            http_status=status,
            items=items,
            error=error if failures else "",
            latency_ms=latency_ms,
        )

    max_read_batch_size = SEARCH_MAX_SKU_IDS

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read quantities back through the inventory search, by SKU id (600 per call).

        A listing that names a warehouse reads that warehouse's `available_quantity`; one
        without reads the SKU's `total_available_quantity`. Raises `AdapterError`.
        """
        sku_ids = list(dict.fromkeys(str(k["sku_id"]) for k in keys if k.get("sku_id")))
        found = self._inventory_search(sku_ids)
        observed = []
        for listing in keys:
            hit = found.get(str(listing.get("sku_id", "")))
            if hit is None:
                continue
            product_id, sku = hit
            if listing.get("product_id") and product_id and product_id != listing["product_id"]:
                continue
            quantity = _sku_quantity(sku, listing.get("warehouse_id") or "")
            quantity = stock_observed(quantity, channel_type=self.type, keys=listing)
            if quantity is not None:
                observed.append(ObservedStock(keys=dict(listing), quantity=quantity))
        return observed

    def _inventory_search(self, sku_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """SKU id -> (product id, `skus[]` entry) of the inventory search, 600 ids a call.
        Raises a classified `AdapterError`."""
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        path = f"/product/{API_VERSION}/inventory/search"
        for start in range(0, len(sku_ids), SEARCH_MAX_SKU_IDS):
            chunk = sku_ids[start : start + SEARCH_MAX_SKU_IDS]
            try:
                response, _ = self._signed("POST", path, json_body({"sku_ids": chunk}))
            except OutboundError as exc:
                raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
            body = answer_json(response)
            failed = whole_call_outcome(response.status_code, body)
            if failed is not None:
                outcome, expired = failed
                retry_after = None
                if outcome == Outcome.THROTTLED:
                    retry_after = self.retry_after_seconds(response.headers.get("Retry-After"))
                raise AdapterError(
                    f"inventory search: HTTP {response.status_code} "
                    f"{self.excerpt(response.content)}",
                    outcome=outcome,
                    token_expired=expired,
                    retry_after=retry_after,
                )
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            for product in answer_list(data.get("inventory")):
                if not isinstance(product, dict):
                    continue
                for sku in answer_list(product.get("skus")):
                    if isinstance(sku, dict):
                        found[str(sku.get("id"))] = (str(product.get("product_id", "")), sku)
        return found

    # --- tokens -----------------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Refresh the access token at `{auth}/api/v2/token/refresh` (a GET, not signed).

        TikTok answers a refresh token with every refresh; it is kept (it may be the same
        one). `access_token_expire_in` is an absolute Unix time.
        """
        refresh_token = self.credentials.get("refresh_token")
        if not refresh_token:
            raise AdapterError("no refresh token: authorise the shop again", outcome=Outcome.AUTH)
        params = {
            "app_key": self.credentials.get("app_key", ""),
            "app_secret": self.credentials.get("app_secret", ""),
            "refresh_token": refresh_token,
            "grant_type": "refresh_token",
        }
        try:
            response, _ = self._request(
                "GET", f"{self.auth_base_url}/api/v2/token/refresh", params=params
            )
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        body = answer_json(response)
        status = response.status_code
        if status >= 500 or status == 429 or (body is None and status < 400):
            raise AdapterError(
                f"token refresh: HTTP {status} {self.excerpt(response.content)}",
                outcome=Outcome.RETRYABLE,
            )
        data = (body or {}).get("data")
        if _code(body) != 0 or not isinstance(data, dict) or not data.get("access_token"):
            raise AdapterError(
                f"token refresh refused: HTTP {status} {self.excerpt(response.content)}",
                outcome=Outcome.AUTH,
            )
        self.credentials["access_token"] = data["access_token"]
        if data.get("refresh_token"):
            self.credentials["refresh_token"] = data["refresh_token"]
        expires = data.get("access_token_expire_in")
        if expires:
            self.credentials["access_token_expires_at"] = self.expires_iso(epoch=float(expires))
        return dict(self.credentials)

    # --- webhooks ---------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """Hex HMAC-SHA256 of app_key + raw body, keyed with the app secret (M confidence)."""
        return webhook_sign(
            app_key=str(self.credentials.get("app_key", "")),
            app_secret=str(self.credentials.get("app_secret", "")),
            body=body,
        )

    # TikTok wants HTTP 200 with an empty body within 3 seconds (Partner Center, "Configure
    # webhooks"); anything else is retried at +2 min, +30 min, +3 h and +12 h.
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (200, b"", "text/plain")

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified notification's raw body (never raises).

        The key is `tts_notification_id` (TikTok keeps it across its retries); a notification
        without one is keyed by a digest of (order id, status, update time), one whose id is
        not fit to store (`answer_text`) by a digest of the body. Types 1 (order status
        change) and 11 (cancellation status change) are `order` events (`unreadable` when
        their order id is not fit to store); type 27 (inventory status change) is a `stock`
        event with the SKU's available quantity (`other` without both ids); other types are
        `other`; a body that is not a
        JSON envelope is `unreadable`, keyed by its digest.
        """
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):  # bad JSON or UTF-8; absurd nesting
            envelope = None
        if not isinstance(envelope, dict) or "type" not in envelope:
            return unreadable(body)
        data = envelope.get("data") if isinstance(envelope.get("data"), dict) else {}
        notification_id = answer_text(envelope.get("tts_notification_id"))
        if not notification_id and _text(envelope.get("tts_notification_id")):
            # An id we cannot store still says "one notification": the body tells it apart.
            notification_id = hashlib.sha256(body).hexdigest()
        kind = _int_or_none(envelope.get("type"))
        order_id = answer_text(data.get("order_id"))
        is_order = kind in (WEBHOOK_ORDER_STATUS_CHANGE, WEBHOOK_CANCELLATION_STATUS_CHANGE)
        if is_order and _text(data.get("order_id")) and not order_id:
            return unreadable(body)
        if is_order and order_id:
            if kind == WEBHOOK_ORDER_STATUS_CHANGE:
                status = answer_text(data.get("order_status"))
                moment = data.get("update_time")
            else:
                # A cancellation notification names when the request was made, not an
                # update time; the envelope's timestamp is the fallback for both.
                status = answer_text(data.get("cancel_status"))
                moment = data.get("update_time") or data.get("create_time")
            updated_at = _epoch(moment) or _epoch(envelope.get("timestamp"))
            key = notification_id or answer_digest(
                order_id, status, str(int(updated_at.timestamp())) if updated_at else ""
            )
            return ChannelEvent(
                topic="order",
                event_key=key,
                order_id=order_id,
                status=status,
                updated_at=updated_at,
            )
        key = notification_id or hashlib.sha256(body).hexdigest()
        if kind == WEBHOOK_INVENTORY_STATUS_CHANGE:
            product_id = answer_text(data.get("product_id"))
            sku_id = answer_text(data.get("sku_id"))
            if product_id and sku_id:
                distribution = data.get("inventory_distribution")
                available = (
                    _int_or_none(distribution.get("available_quantity"))
                    if isinstance(distribution, dict)
                    else None
                )
                # Out of bounds: no figure (the stock is read back instead).
                available = stock_observed(
                    available,
                    channel_type=self.type,
                    keys={"product_id": product_id, "sku_id": sku_id},
                )
                return ChannelEvent(
                    topic="stock",
                    event_key=key,
                    updated_at=_epoch(data.get("update_time")) or _epoch(envelope.get("timestamp")),
                    stock=(
                        StockReport(
                            keys={"product_id": product_id, "sku_id": sku_id},
                            quantity=available,
                        ),
                    ),
                )
        return ChannelEvent(topic="other", event_key=key)

    # --- orders -----------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of a TikTok order (or cancellation) status; None when it
        says nothing about stock or is unknown."""
        return ORDER_STATUSES.get(str(raw_status or "").strip().upper())

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until), through every page of the order search.

        Update times are whole seconds: `since` is rounded down and `until` up, so the window
        may take in an order updated in the same second as an edge (harmless: fetching an
        order again changes nothing). Raises `AdapterError`; `retryable` when the walk does
        not end (a page token coming back, more than `ORDER_SEARCH_PAGES_MAX` pages).
        """
        body = json_body(
            {
                "update_time_ge": math.floor(since.timestamp()),
                "update_time_lt": math.ceil(until.timestamp()),
            }
        )
        refs: dict[str, OrderRef] = {}
        page_token = ""
        seen_tokens: set[str] = set()
        for _page in range(ORDER_SEARCH_PAGES_MAX):
            params = {
                "page_size": str(ORDER_SEARCH_PAGE_SIZE),
                "sort_field": "update_time",
                "sort_order": "ASC",
            }
            if page_token:
                params["page_token"] = page_token
            data = self._order_call("POST", ORDER_SEARCH_PATH, body, params, "order search")
            page = answer_rows(data, "orders", what="order search")
            for order in page:
                external_id = answer_text(order.get("id")) if isinstance(order, dict) else ""
                if not external_id:
                    continue
                # An order updated while the pages are read can show up twice: the last wins.
                refs[external_id] = OrderRef(
                    external_id=external_id,
                    raw_status=answer_text(order.get("status")),
                    updated_at=_epoch(order.get("update_time")),
                )
            page_token = _text(data.get("next_page_token"))
            # An empty page ends the walk even if a token came with it.
            if not page_token or not page:
                return list(refs.values())
            if page_token in seen_tokens:
                raise AdapterError(
                    "order search: the same page token came back twice", outcome=Outcome.RETRYABLE
                )
            seen_tokens.add(page_token)
        raise AdapterError(
            f"order search had more than {ORDER_SEARCH_PAGES_MAX} pages in one range",
            outcome=Outcome.RETRYABLE,
        )

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The detail of these orders, 50 ids per call; unknown ids are left out, and so are
        orders that came back without `line_items` or with a row that cannot be read (a later
        fetch takes them: an order without lines would hold no stock). Raises `AdapterError`.
        """
        ids = list(dict.fromkeys(str(i) for i in external_ids if str(i).strip()))
        orders = []
        for start in range(0, len(ids), ORDER_DETAIL_MAX_IDS):
            chunk = ids[start : start + ORDER_DETAIL_MAX_IDS]
            data = self._order_call(
                "GET", ORDER_DETAIL_PATH, b"", {"ids": ",".join(chunk)}, "order detail"
            )
            for raw in answer_rows(data, "orders", what="order detail"):
                order = self._market_order(raw) if isinstance(raw, dict) else None
                if order is not None:
                    orders.append(order)
        return orders

    def _order_call(
        self, method: str, path: str, body: bytes, params: dict[str, str], what: str
    ) -> dict[str, Any]:
        """Send a signed order call; return its `data`, or raise a classified `AdapterError`."""
        try:
            response, _ = self._signed(method, path, body, params)
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
        answer = answer_json(response)
        failed = whole_call_outcome(response.status_code, answer)
        if failed is not None:
            outcome, expired = failed
            raise AdapterError(
                f"{what}: HTTP {response.status_code} {self.excerpt(response.content)}",
                outcome=outcome,
                token_expired=expired,
                retry_after=(
                    self.retry_after_seconds(response.headers.get("Retry-After"))
                    if outcome == Outcome.THROTTLED
                    else None
                ),
            )
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    def _market_order(self, raw: dict[str, Any]) -> MarketOrder | None:
        """A `MarketOrder` from a Get Order Detail `orders[]` entry; None without an id, or
        without line items, or with a row that cannot be read (no SKU id fit to store).

        Line items are one row per unit with no quantity field: rows of one `sku_id` make one
        line (quantity = their count, `line_key` = the SKU id, unit price = the first row's
        `sale_price`, which already has the seller's and the platform's discounts taken off).
        In an order that goes on, a cancelled row (`display_status` CANCELLED, or a
        `cancel_reason`: the buyer or seller cancelled that unit) is not counted: it will
        never ship, so it must hold no stock. When the whole order is cancelled every row
        counts, so the line says what was released.
        """
        external_id = answer_text(raw.get("id"))
        raw_status = answer_text(raw.get("status"))
        status = self.order_status(raw_status)
        rows = answer_list(raw.get("line_items"))
        if not external_id or not rows:
            return None
        lines: dict[str, dict[str, Any]] = {}
        for item in rows:
            sku_id = answer_text(item.get("sku_id")) if isinstance(item, dict) else ""
            if not sku_id:
                return None  # half an order would hold half its stock: take it later
            line = lines.setdefault(sku_id, {"count": 0, "item": item})
            if status == OrderStatus.CANCELLED or not _row_cancelled(item):
                line["count"] += 1
        market_lines = []
        for sku_id, line in lines.items():
            item = line["item"]
            keys = {"sku_id": sku_id}
            if answer_text(item.get("product_id")):
                keys["product_id"] = answer_text(item["product_id"])
            market_lines.append(
                MarketOrderLine(
                    line_key=sku_id,
                    sku=answer_text(item.get("seller_sku"), limit=ANSWER_SKU_MAX),
                    keys=keys,
                    quantity=Decimal(line["count"]),
                    unit_price=answer_money(item.get("sale_price")),
                    name=" ".join(
                        part
                        for part in (
                            answer_name(item.get("product_name")),
                            answer_name(item.get("sku_name")),
                        )
                        if part
                    )[:255],
                )
            )
        payment = raw.get("payment") if isinstance(raw.get("payment"), dict) else {}
        address = answer_object(raw.get("recipient_address"))
        return MarketOrder(
            external_id=external_id,
            raw_status=raw_status,
            status=status,
            lines=tuple(market_lines),
            placed_at=_epoch(raw.get("create_time")),
            paid_at=_epoch(raw.get("paid_time")),
            updated_at=_epoch(raw.get("update_time")),
            customer={
                key: value
                for key, value in (
                    ("user_id", answer_name(raw.get("user_id"))),
                    ("email", answer_name(raw.get("buyer_email"))),
                    ("name", answer_name(address.get("name"))),
                    ("phone", answer_name(address.get("phone_number"))),
                )
                if value
            },
            address={
                key: address[key]
                for key in (
                    "name",
                    "phone_number",
                    "full_address",
                    "address_detail",
                    "address_line1",
                    "address_line2",
                    "address_line3",
                    "address_line4",
                    "postal_code",
                    "region_code",
                    "district_info",
                )
                if address.get(key)
            },
            amount=answer_money(payment.get("total_amount")),
            currency=answer_text(payment.get("currency"), limit=3),
            payment_method=answer_name(raw.get("payment_method_name"), limit=100),
            raw=raw,
        )

    # --- helpers ----------------------------------------------------------------------------

    def _signed(
        self, method: str, path: str, body: bytes, extra: Mapping[str, str] | None = None
    ) -> tuple[Any, int]:
        """Send a signed shop call with a JSON body (and `extra` query parameters, which are
        signed too). Raises `OutboundError`."""
        credentials = self.credentials
        params = {
            **(extra or {}),
            "app_key": str(credentials.get("app_key", "")),
            "timestamp": str(int(time.time())),
            "shop_cipher": str(credentials.get("shop_cipher", "")),
        }
        # The server signs the path it receives, so a base URL with a path prefix counts.
        full_path = urlsplit(self.base_url).path.rstrip("/") + path
        params["sign"] = sign_request(
            app_secret=str(credentials.get("app_secret", "")),
            path=full_path,
            params=params,
            body=body,
        )
        headers = {
            "x-tts-access-token": str(credentials.get("access_token", "")),
            "Content-Type": "application/json",
        }
        return self._request(
            method, f"{self.base_url}{path}", params=params, data=body, headers=headers
        )


class TokopediaAdapter(TikTokAdapter):
    """Tokopedia & Shop: Indonesian shops, served by the TikTok Shop API since the merger.

    The Tokopedia Open API closed on 2025-09-30; Indonesian products, stock and orders live
    behind the same TikTok Shop host and calls. Only the type and the label differ: in
    Indonesia the label must say "Tokopedia & Shop".
    """

    type = "tokopedia"
    label = "Tokopedia & Shop"


def _code(body: dict | None) -> int | None:
    return None if body is None else answer_int(body.get("code"))


def whole_call_outcome(status: int, body: dict | None) -> tuple[Outcome, bool] | None:
    """How a call failed as a whole, and whether its access token went bad (refresh and
    send again); None when the call was processed (its items may still have failed).

    Used alike by the stock update, the read-back and the order calls; the codes are listed
    in the module docstring.
    """
    code = _code(body)
    message = str((body or {}).get("message", "")).lower()
    if status == 429 or code in THROTTLE_CODES:
        return Outcome.THROTTLED, False
    if status >= 500 or code in RETRYABLE_CODES:
        return Outcome.RETRYABLE, False
    if code in TOKEN_EXPIRED_CODES:
        return Outcome.AUTH, True
    if code in AUTH_CODES:
        return Outcome.AUTH, False
    if code == INVALID_PARAM_CODE:
        if any(marker in message for marker in TOKEN_HEADER_MARKERS):
            return Outcome.AUTH, True
        if "app_key" in message:
            return Outcome.AUTH, False
        if "timestamp" in message:
            # Our clock is off (or the call waited too long): the items are not at fault.
            return Outcome.RETRYABLE, False
    if status in (401, 403) and not code:
        return Outcome.AUTH, False
    if 200 <= status < 300 and code == 0:
        return None
    if body is None and 200 <= status < 300:
        # A 2xx we cannot read: the gateway, not the API, answered; try again later.
        return Outcome.RETRYABLE, False
    return Outcome.PERMANENT, False


def _item_failures(
    errors: list[Any], updates: Sequence[StockUpdate]
) -> dict[int, tuple[str, bool]]:
    """Map each failed update (by `id()`) to (error text, retryable).

    A SKU error fails every update of that SKU: whether its other warehouses were applied
    is UNCONFIRMED, and a needless re-push is cheaper than a silent drift. The error text
    is the warehouse's own error when the answer names the update's warehouse.
    """
    by_sku: dict[str, list[StockUpdate]] = {}
    for update in updates:
        by_sku.setdefault(str(update.keys.get("sku_id", "")), []).append(update)
    failures: dict[int, tuple[str, bool]] = {}
    for error in errors:
        if not isinstance(error, dict):
            continue
        detail = error.get("detail") if isinstance(error.get("detail"), dict) else {}
        sku_id = str(detail.get("sku_id", ""))
        # An error naming no SKU of the call cannot be placed: count it against all of them.
        targets = by_sku.get(sku_id) or list(updates)
        warehouse_errors = {
            str(extra.get("warehouse_id", "")): extra
            for extra in detail.get("extra_errors") or []
            if isinstance(extra, dict)
        }
        for update in targets:
            specific = warehouse_errors.get(str(update.keys.get("warehouse_id", "")))
            source = specific or error
            code = _code(source)
            text = f"{code} {source.get('message', '')}".strip()
            failures[id(update)] = (text, code in ITEM_RETRYABLE_CODES)
    return failures


def _sku_quantity(sku: dict[str, Any], warehouse_id: str) -> int | None:
    if warehouse_id:
        for row in sku.get("warehouse_inventory") or []:
            if str(row.get("warehouse_id")) == warehouse_id:
                return _int_or_none(row.get("available_quantity"))
        return None
    return _int_or_none(sku.get("total_available_quantity"))


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str:
    """A JSON value as text ('' for null, objects and lists): ids come as strings or numbers."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    return str(value).strip()


def _epoch(value: Any) -> datetime | None:
    """An aware UTC datetime from Unix seconds (a number or a string of one); None for 0,
    absent or unreadable (TikTok sends 0 for a time that has not happened)."""
    seconds = _int_or_none(value)
    if not seconds or seconds < 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _row_cancelled(item: dict[str, Any]) -> bool:
    """Whether a line item row (one unit) was cancelled on its own (Get Order Detail
    `line_items[].display_status`, `cancel_reason`)."""
    return answer_text(item.get("display_status")).upper() == "CANCELLED" or bool(
        answer_name(item.get("cancel_reason"))
    )
