"""Shopify Admin API (GraphQL), version `SHOPIFY_API_VERSION` (2026-01) unless a channel names one.

Wire format (Shopify Admin GraphQL reference and the changelogs cited in `shopify_wire`):

- One endpoint, `POST https://{shop_domain}/admin/api/{version}/graphql.json`, header
  `X-Shopify-Access-Token`; no request signing. A channel with a blank base URL talks to
  its shop's own domain.
- Stock: `inventorySetQuantities(input: {name: "available", reason: "correction",
  quantities: [{inventoryItemId, locationId, quantity, changeFromQuantity}]})` with
  `@idempotent(key:)` on the field. `changeFromQuantity` is what the push believes the
  shop shows (`StockUpdate.expected`; unknown: read first, one read for the batch), so an
  edit made behind our back is refused (`CHANGE_FROM_QUANTITY_STALE`) instead of being
  overwritten; the idempotency key (unique per attempt row) makes a retried call apply
  once. Community tests saw the key unenforced on 2026-04, so the compare-and-set stays
  the first line of defence.
- userErrors are placed on rows by their `field` path (`["input", "quantities", "<i>",
  ...]`): `CHANGE_FROM_QUANTITY_STALE` (and the older `COMPARE_QUANTITY_STALE`) -> a stale
  item with the quantity read back; `ITEM_NOT_STOCKED_AT_LOCATION`, `INVALID_QUANTITY_*`,
  other row errors -> permanent for that item; `IDEMPOTENCY_CONCURRENT_REQUEST`,
  `IDEMPOTENCY_KEY_PARAMETER_MISMATCH`, `IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED` -> the whole
  call is retryable (the next attempt row brings a new key). Whether a refused row stops
  the others is not documented: when the answer has errors and no adjustment group, the
  other rows are reported not applied (`requeue`: sent again without using an attempt);
  with a group they are applied.
- Throttling is by calculated query cost (`extensions.cost`): a `THROTTLED` error waits
  for the points the call needs at the shop's restore rate; before each call, when the
  last reported bucket cannot pay the call's last requested cost, the adapter sleeps for
  the restore (at most `PRE_WAIT_MAX_SECONDS`, else it answers throttled without sending).
  HTTP 429 honours `Retry-After`. 401/403 and `ACCESS_DENIED`: auth. 5xx and
  `INTERNAL_SERVER_ERROR`: retryable. Anything else refused: permanent.
- Tokens: offline access tokens do not expire; `token_refresh` cannot mint one (a new
  token comes with a re-install). Expiring offline tokens (refresh-token rotation, since
  December 2025) are not taken: their credentials are refused.
- Webhooks: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body keyed with the
  app's client secret ("Verify webhook deliveries"); deliveries for another shop
  (`X-Shopify-Shop-Domain`) are refused. De-duplicated on `X-Shopify-Webhook-Id`.
- Orders: GraphQL `orders(query: "updated_at:>=... AND updated_at:<...")` with cursor
  pagination (REST is legacy since 2024-10 and closed to new public apps, and one cost
  bucket then throttles every call), details through `nodes(ids:)`.
"""

import base64
import hashlib
import hmac
import json
import math
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.conf import settings
from django.utils.dateparse import parse_datetime

from channels_sync.adapters import shopify_wire as wire
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
    _header,
    answer_digest,
    answer_int,
    answer_json,
    answer_list,
    answer_money,
    answer_name,
    answer_quantity,
    answer_text,
    stock_observed,
    unreadable,
)
from core.http import OutboundError

# Quantities Shopify takes (`INVALID_QUANTITY_NEGATIVE` / `INVALID_QUANTITY_TOO_HIGH`).
MAX_QUANTITY = 1_000_000_000
# How long a call may sleep for the cost bucket to refill before it is sent; longer waits
# are answered as throttled and left to the push's own throttle handling.
PRE_WAIT_MAX_SECONDS = 10.0
# A call's cost before Shopify has reported one: a mutation's base cost is 10 points.
DEFAULT_COST = 10.0
ORDERS_PAGE_SIZE = 250  # the most a connection's `first` takes
ORDERS_PAGES_MAX = 400  # 100 000 orders updated in one polled range
# `nodes(ids:)` with 250 line items each costs ~260 points an order; three stay well under
# the 1 000-point limit of a single query.
ORDER_DETAIL_CHUNK = 3
STALE_CODES = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
IDEMPOTENCY_CODES = frozenset(
    {
        "IDEMPOTENCY_CONCURRENT_REQUEST",
        "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
        "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
    }
)
ORDER_TOPICS = frozenset(
    {
        "orders/create",
        "orders/updated",
        "orders/cancelled",
        "orders/fulfilled",
        "orders/paid",
        "orders/partially_fulfilled",
    }
)
STOCK_TOPIC = "inventory_levels/update"
_SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}(\.[a-z0-9][a-z0-9-]{0,62})+")
_API_VERSION = re.compile(r"[0-9]{4}-(01|04|07|10)|unstable")
# `changeFromQuantity` and `@idempotent` on `inventorySetQuantities` arrive with 2026-01
# (https://shopify.dev/changelog/compare-and-swap-redesign-for-inventory-set-quantities,
# https://shopify.dev/changelog/adding-idempotency-for-inventory-adjustments-and-refund-mutations):
# an older version refuses every stock call the adapter sends.
FIRST_API_VERSION = "2026-01"


@dataclass
class _Answer:
    """A GraphQL call's answer: `outcome` None when `data` can be read."""

    outcome: Outcome | None
    status: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    retry_after: float | None = None
    latency_ms: int = 0

    def raise_failed(self, what: str) -> None:
        if self.outcome is not None:
            raise AdapterError(
                f"{what}: {self.error}"[:500], outcome=self.outcome, retry_after=self.retry_after
            )


class ShopifyAdapter(Adapter):
    """Shopify: `inventorySetQuantities` with compare-and-set and an idempotency key."""

    type = "shopify"
    compare_and_set = True
    label = "Shopify"
    credential_fields = ("shop_domain", "access_token", "client_secret", "api_version")
    secret_fields = ("access_token", "client_secret")
    required_credentials = ("shop_domain", "access_token", "client_secret")
    key_columns: ClassVar[dict[str, str]] = {
        "inventory_item_id": "external_item_id",
        "location_id": "external_location_id",
    }
    required_keys = ("inventory_item_id", "location_id")
    # Shopify documents no row limit for `quantities` (UNCONFIRMED); 250 is the cap of its
    # input lists and connections elsewhere, and 100 rows keep one call's cost and one
    # refused row's blast radius small.
    default_batch_size = 100
    max_batch_size = 250
    # Calls are paced by the cost bucket (standard plan: 100 points/s restored, a mutation
    # ~10 points); this limit only keeps a run from racing ahead of it.
    default_rate_per_second = 5.0
    default_burst = 10
    max_read_batch_size = 50
    webhook_signature_header = "X-Shopify-Hmac-Sha256"
    webhook_key_fields = ("client_secret",)
    webhook_kept_headers: ClassVar[tuple[str, ...]] = (
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-Webhook-Id",
        "X-Shopify-Event-Id",
        "X-Shopify-API-Version",
        "X-Shopify-Triggered-At",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bucket: wire.CostBucket | None = None
        self.costs: dict[str, float] = {}  # the last requested cost per operation

    # --- keys and credentials ---------------------------------------------------------------

    @classmethod
    def keys_clean(cls, keys: dict[str, Any]) -> dict[str, str]:
        """The keys as numeric ids (a gid `gid://shopify/InventoryItem/1` gives `1`)."""
        cleaned = super().keys_clean(keys)
        kinds = {"inventory_item_id": "InventoryItem", "location_id": "Location"}
        for name, value in cleaned.items():
            number = wire.numeric_id(value, kinds[name])
            if not number:
                raise ValueError(f"{name} must be a numeric id or a {kinds[name]} gid")
            cleaned[name] = number
        return cleaned

    @classmethod
    def credentials_clean(cls, credentials: dict[str, Any]) -> dict[str, Any]:
        """Also checks `shop_domain` (a host name, `shop.myshopify.com`) and `api_version`
        (`api_version_problem`)."""
        cleaned = super().credentials_clean(credentials)
        domain = str(cleaned["shop_domain"]).strip().lower()
        if not _SHOP_DOMAIN.fullmatch(domain):
            raise ValueError("shop_domain must be the shop's host name (shop.myshopify.com)")
        cleaned["shop_domain"] = domain
        version = cleaned.get("api_version")
        problem = api_version_problem(str(version)) if version is not None else ""
        if problem:
            raise ValueError(problem)
        return cleaned

    @property
    def api_version(self) -> str:
        return str(self.credentials.get("api_version") or settings.SHOPIFY_API_VERSION)

    @property
    def graphql_url(self) -> str:
        base = self.base_url or f"https://{self.credentials.get('shop_domain', '')}"
        return f"{base}/admin/api/{self.api_version}/graphql.json"

    def token_refresh(self) -> dict[str, Any]:
        """Offline access tokens do not expire and cannot be refreshed: always raises auth."""
        raise AdapterError(
            "Shopify offline access tokens are not refreshed: re-install the app in the shop "
            "to get a new access token",
            outcome=Outcome.AUTH,
        )

    # --- calls ------------------------------------------------------------------------------

    def _graphql(self, operation: str, document: str, variables: dict[str, Any]) -> _Answer:
        """Send one GraphQL call (after waiting for the cost bucket); classify the answer."""
        cost = self.costs.get(operation, DEFAULT_COST)
        if self.bucket is not None:
            wait = self.bucket.wait_for(cost)
            if wait > PRE_WAIT_MAX_SECONDS:
                return _Answer(
                    Outcome.THROTTLED,
                    error=f"cost bucket: {cost:g} points needed, waiting {wait:.1f}s",
                    retry_after=wait,
                )
            if wait > 0:
                time.sleep(wait)
        body = json.dumps({"query": document, "variables": variables}).encode()
        headers = {
            "X-Shopify-Access-Token": str(self.credentials.get("access_token", "")),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        started = time.perf_counter()
        try:
            response, latency_ms = self._request(
                "POST", self.graphql_url, data=body, headers=headers
            )
        except OutboundError as exc:
            latency = int((time.perf_counter() - started) * 1000)
            return _Answer(Outcome.RETRYABLE, error=str(exc)[:500], latency_ms=latency)
        return self._classify(operation, response, latency_ms)

    def _classify(self, operation: str, response: Any, latency_ms: int) -> _Answer:
        status = response.status_code
        answer = _Answer(None, status=status, latency_ms=latency_ms)
        answer.error = f"HTTP {status} {self.excerpt(response.content)}"
        if status == 429:
            retry = self.retry_after_seconds(response.headers.get("Retry-After"))
            answer.outcome, answer.retry_after = Outcome.THROTTLED, 1.0 if retry is None else retry
            return answer
        if status in (401, 403):
            answer.outcome = Outcome.AUTH
            return answer
        if status >= 500:
            answer.outcome = Outcome.RETRYABLE
            return answer
        body = answer_json(response)
        if body is None:
            answer.outcome = Outcome.RETRYABLE if status < 300 else Outcome.PERMANENT
            return answer
        extensions = body.get("extensions")
        bucket = wire.CostBucket.from_extensions(extensions)
        if bucket is not None:
            self.bucket = bucket
        requested = wire.requested_cost(extensions)
        if requested is not None:
            self.costs[operation] = requested
        codes = _error_codes(body.get("errors"))
        if "THROTTLED" in codes:
            answer.outcome = Outcome.THROTTLED
            needed = requested if requested is not None else self.costs.get(operation, 1.0)
            answer.retry_after = max(0.1, bucket.wait_for(needed)) if bucket else 1.0
            return answer
        if "ACCESS_DENIED" in codes:
            answer.outcome = Outcome.AUTH
            return answer
        if "INTERNAL_SERVER_ERROR" in codes:
            answer.outcome = Outcome.RETRYABLE
            return answer
        data = body.get("data")
        if status >= 400 or codes or not isinstance(data, dict):
            answer.outcome = Outcome.PERMANENT
            return answer
        answer.data = data
        return answer

    # --- stock ------------------------------------------------------------------------------

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the batch's available quantities with compare-and-set (never raises).

        Rows whose `expected` is unknown get the quantity read first (one read for the
        batch; a level that cannot be read goes with an explicit null, no check). A row
        refused as stale comes back `stale` with the quantity read back after the call; when
        that read fails or answers no figure in range (`stock_observed`), retryable instead
        (nothing known to record or compare).
        """
        if not updates:
            return CallResult(outcome=Outcome.OK)
        expected = {index: update.expected for index, update in enumerate(updates)}
        unknown = [index for index, value in expected.items() if value is None]
        if unknown:
            try:
                seen = self._levels([updates[index].keys for index in unknown])
            except AdapterError as exc:
                return CallResult(
                    outcome=exc.outcome, retry_after=exc.retry_after, error=str(exc)[:500]
                )
            for index in unknown:
                expected[index] = seen.get(_level_id(updates[index].keys))
        rows = [
            {
                "inventoryItemId": wire.gid("InventoryItem", update.keys["inventory_item_id"]),
                "locationId": wire.gid("Location", update.keys["location_id"]),
                "quantity": min(max(int(update.quantity), 0), MAX_QUANTITY),
                "changeFromQuantity": expected[index],
            }
            for index, update in enumerate(updates)
        ]
        variables = {
            "input": {"name": "available", "reason": "correction", "quantities": rows},
            # Required from 2026-04: a call without a key of its own gets a fresh one.
            "idempotencyKey": idempotency_key or str(uuid.uuid4()),
        }
        answer = self._graphql("inventorySetQuantities", wire.SET_QUANTITIES, variables)
        if answer.outcome is not None:
            return CallResult(
                outcome=answer.outcome,
                http_status=answer.status,
                retry_after=answer.retry_after,
                error=answer.error,
                latency_ms=answer.latency_ms,
            )
        return self._push_items(updates, answer)

    def _push_items(self, updates: Sequence[StockUpdate], answer: _Answer) -> CallResult:
        payload = answer.data.get("inventorySetQuantities")
        if not isinstance(payload, dict):
            return CallResult(
                outcome=Outcome.RETRYABLE,
                http_status=answer.status,
                error=f"no inventorySetQuantities in the answer: {answer.error}"[:500],
                latency_ms=answer.latency_ms,
            )
        row_errors: dict[int, tuple[str, str]] = {}
        for error in answer_list(payload.get("userErrors")):
            if not isinstance(error, dict):
                continue
            code = answer_text(error.get("code"))
            text = f"{code} {answer_name(error.get('message'), limit=300)}".strip()
            row = wire.user_error_row(error.get("field"))
            if code in IDEMPOTENCY_CODES or row is None or not 0 <= row < len(updates):
                # Not about one row: the call as a whole was refused.
                outcome = Outcome.RETRYABLE if code in IDEMPOTENCY_CODES else Outcome.PERMANENT
                return CallResult(
                    outcome=outcome,
                    http_status=answer.status,
                    error=text[:500],
                    latency_ms=answer.latency_ms,
                )
            row_errors.setdefault(row, (code, text))
        applied = not row_errors or payload.get("inventoryAdjustmentGroup") is not None
        stale_rows = [row for row, (code, _) in row_errors.items() if code in STALE_CODES]
        observed: dict[str, int] = {}
        if stale_rows:
            try:
                observed = self._levels([updates[row].keys for row in stale_rows])
            except AdapterError:
                observed = {}  # the push records the stale row without a figure
        items = []
        for row, update in enumerate(updates):
            code, text = row_errors.get(row, ("", ""))
            if not code:
                items.append(
                    ItemResult(listing_id=update.listing_id, ok=True)
                    if applied
                    else ItemResult(
                        listing_id=update.listing_id,
                        ok=False,
                        error="not applied: another row of the call was refused",
                        retryable=True,
                        requeue=True,
                    )
                )
            elif code in STALE_CODES and _level_id(update.keys) not in observed:
                # Refused, but what the level shows is unknown (the read failed, or answered
                # no usable figure): nothing to record, so a plain retry of the row.
                items.append(
                    ItemResult(
                        listing_id=update.listing_id,
                        ok=False,
                        error=f"{text} (level not read back)"[:500],
                        retryable=True,
                    )
                )
            elif code in STALE_CODES:
                items.append(
                    ItemResult(
                        listing_id=update.listing_id,
                        ok=False,
                        error=text[:500],
                        stale=True,
                        observed=observed.get(_level_id(update.keys)),
                    )
                )
            else:
                items.append(ItemResult(listing_id=update.listing_id, ok=False, error=text[:500]))
        failed = any(not item.ok for item in items)
        return CallResult(
            outcome=Outcome.PARTIAL if failed else Outcome.OK,
            http_status=answer.status,
            items=items,
            error="; ".join(text for _, text in row_errors.values())[:500],
            latency_ms=answer.latency_ms,
        )

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read the listings' available quantities (50 levels a call, aliased
        `inventoryItem { inventoryLevel(locationId:) }`). Levels the shop does not have
        (an unknown item, not stocked at the location) are left out. Raises `AdapterError`."""
        seen = self._levels(keys)
        observed = []
        for listing in keys:
            quantity = seen.get(_level_id(listing))
            if quantity is not None:
                observed.append(ObservedStock(keys=dict(listing), quantity=quantity))
        return observed

    def _levels(self, keys: Sequence[dict[str, str]]) -> dict[str, int]:
        """The available quantity of each level that has one, by `_level_id` (a figure out
        of range is none: `stock_observed`)."""
        found: dict[str, int] = {}
        wanted = list({_level_id(k): k for k in keys if _level_id(k) != "/"}.values())
        for start in range(0, len(wanted), self.max_read_batch_size):
            chunk = wanted[start : start + self.max_read_batch_size]
            variables = {}
            for n, listing in enumerate(chunk):
                variables[f"i{n}"] = wire.gid("InventoryItem", listing["inventory_item_id"])
                variables[f"l{n}"] = wire.gid("Location", listing["location_id"])
            answer = self._graphql("inventoryLevels", wire.levels_query(len(chunk)), variables)
            answer.raise_failed("inventory levels")
            for n, listing in enumerate(chunk):
                item = answer.data.get(f"l{n}")
                level = item.get("inventoryLevel") if isinstance(item, dict) else None
                quantities = answer_list(level.get("quantities")) if isinstance(level, dict) else []
                for entry in quantities:
                    if isinstance(entry, dict) and entry.get("name") == "available":
                        quantity = stock_observed(
                            answer_int(entry.get("quantity")), channel_type=self.type, keys=listing
                        )
                        if quantity is not None:
                            found[_level_id(listing)] = quantity
        return found

    # --- webhooks ---------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """Base64 HMAC-SHA256 of the raw body, keyed with the app's client secret."""
        secret = str(self.credentials.get("client_secret", "")).encode()
        return base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()

    def webhook_verify(self, *, headers: dict[str, str], body: bytes, url: str = "") -> bool:
        """The signature must match, and the delivery must be for this channel's shop."""
        domain = _header(headers, "X-Shopify-Shop-Domain").strip().lower()
        shop = str(self.credentials.get("shop_domain", "")).strip().lower()
        if not shop or not hmac.compare_digest(domain.encode(), shop.encode()):
            return False
        return super().webhook_verify(headers=headers, body=body, url=url)

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified delivery (never raises).

        Keyed by `X-Shopify-Webhook-Id` (the same across Shopify's retries); without it by
        a digest of (order id, status, update time), or of the body. `orders/*` topics are
        `order` events with the order's numeric id and raw status (`unreadable` without an
        id fit to store); `inventory_levels/update` is a `stock` event (`available` may be
        null: the stock is then read back); other topics are `other`.
        """
        headers = headers or {}
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            return unreadable(body)
        topic = answer_text(_header(headers, "X-Shopify-Topic")).lower()
        delivery = answer_text(_header(headers, "X-Shopify-Webhook-Id"))
        updated_at = _moment(payload.get("updated_at"))
        if topic in ORDER_TOPICS:
            order_id = wire.numeric_id(payload.get("id")) or wire.numeric_id(
                payload.get("admin_graphql_api_id"), "Order"
            )
            if not order_id:
                return unreadable(body)
            status = wire.raw_status(
                cancelled=bool(payload.get("cancelled_at")) or topic == "orders/cancelled",
                financial=answer_text(payload.get("financial_status")),
                fulfillment=answer_text(payload.get("fulfillment_status")),
            )
            key = delivery or answer_digest(
                order_id, status, updated_at.isoformat() if updated_at else ""
            )
            return ChannelEvent(
                topic="order",
                event_key=key,
                order_id=order_id,
                status=status,
                updated_at=updated_at,
            )
        key = delivery or hashlib.sha256(body).hexdigest()
        if topic == STOCK_TOPIC:
            item = wire.numeric_id(payload.get("inventory_item_id"))
            location = wire.numeric_id(payload.get("location_id"))
            if item and location:
                keys = {"inventory_item_id": item, "location_id": location}
                available = answer_int(payload.get("available"))
                quantity = stock_observed(available, channel_type=self.type, keys=keys)
                return ChannelEvent(
                    topic="stock",
                    event_key=key,
                    updated_at=updated_at,
                    stock=(StockReport(keys=keys, quantity=quantity),),
                )
        return ChannelEvent(topic="other", event_key=key)

    # --- orders -----------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """See `shopify_wire.order_status`."""
        return wire.order_status(raw_status)

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until) (seconds: `since` rounded down, `until` up),
        250 a page, by cursor. Raises `AdapterError`; retryable when the walk does not end."""
        start = datetime.fromtimestamp(math.floor(since.timestamp()), tz=UTC)
        end = datetime.fromtimestamp(math.ceil(until.timestamp()), tz=UTC)
        search = f"updated_at:>='{_iso(start)}' AND updated_at:<'{_iso(end)}'"
        refs: dict[str, OrderRef] = {}
        cursor: str | None = None
        seen: set[str] = set()
        for _page in range(ORDERS_PAGES_MAX):
            variables = {"first": ORDERS_PAGE_SIZE, "after": cursor, "query": search}
            answer = self._graphql("orders", wire.ORDERS_LIST, variables)
            answer.raise_failed("orders")
            connection = answer.data.get("orders")
            if not isinstance(connection, dict):
                raise AdapterError("orders: no connection in the answer")
            nodes = answer_list(connection.get("nodes"))
            for node in nodes:
                if not isinstance(node, dict):
                    continue
                order_id = wire.numeric_id(node.get("legacyResourceId")) or wire.numeric_id(
                    node.get("id"), "Order"
                )
                if order_id:
                    refs[order_id] = OrderRef(
                        external_id=order_id,
                        raw_status=wire.raw_status(
                            cancelled=bool(node.get("cancelledAt")),
                            financial=answer_text(node.get("displayFinancialStatus")),
                            fulfillment=answer_text(node.get("displayFulfillmentStatus")),
                        ),
                        updated_at=_moment(node.get("updatedAt")),
                    )
            info = (
                connection.get("pageInfo") if isinstance(connection.get("pageInfo"), dict) else {}
            )
            cursor = answer_text(info.get("endCursor"), limit=1000) or None
            if info.get("hasNextPage") is not True or not nodes or cursor is None:
                return list(refs.values())
            if cursor in seen:
                raise AdapterError("orders: the same cursor came back twice")
            seen.add(cursor)
        raise AdapterError(f"orders: more than {ORDERS_PAGES_MAX} pages in one range")

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The detail of these orders (`nodes(ids:)`, three a call); unknown ids are left out,
        and so are orders whose lines cannot all be read. Raises `AdapterError`."""
        ids = list(dict.fromkeys(n for n in (wire.numeric_id(i) for i in external_ids) if n))
        orders = []
        for start in range(0, len(ids), ORDER_DETAIL_CHUNK):
            chunk = [wire.gid("Order", i) for i in ids[start : start + ORDER_DETAIL_CHUNK]]
            answer = self._graphql("orderDetail", wire.ORDERS_DETAIL, {"ids": chunk})
            answer.raise_failed("order detail")
            for node in answer_list(answer.data.get("nodes")):
                order = _market_order(node) if isinstance(node, dict) else None
                if order is not None:
                    orders.append(order)
        return orders


def _market_order(node: dict[str, Any]) -> MarketOrder | None:
    """A `MarketOrder` from an `Order` node; None without an id or a readable line.

    A line's keys are its variant's inventory item and, when the order's fulfillment orders
    are all assigned to one location, that location. A live order counts each line's
    `currentQuantity` (units removed by an edit or a refund are not sold); a cancelled one
    its original `quantity`, so the line says what was released.
    """
    order_id = wire.numeric_id(node.get("legacyResourceId")) or wire.numeric_id(
        node.get("id"), "Order"
    )
    connection = node.get("lineItems") if isinstance(node.get("lineItems"), dict) else {}
    rows = answer_list(connection.get("nodes"))
    if not order_id or not rows:
        return None
    raw = wire.raw_status(
        cancelled=bool(node.get("cancelledAt")),
        financial=answer_text(node.get("displayFinancialStatus")),
        fulfillment=answer_text(node.get("displayFulfillmentStatus")),
    )
    status = wire.order_status(raw)
    locations = {
        wire.numeric_id(_dig(fo, "assignedLocation", "location", "id"), "Location")
        for fo in answer_list(_dig(node, "fulfillmentOrders", "nodes"))
    } - {""}
    location = locations.pop() if len(locations) == 1 else ""
    lines = []
    for row in rows:
        if not isinstance(row, dict):
            return None
        line_id = wire.numeric_id(row.get("id"), "LineItem")
        counted = (
            row.get("quantity")
            if status == OrderStatus.CANCELLED
            else row.get("currentQuantity", row.get("quantity"))
        )
        if answer_int(counted) == 0:
            continue  # removed from the order: nothing sold
        quantity = answer_quantity(counted)
        if not line_id or quantity is None:
            return None  # half an order would hold half its stock: take it later
        keys = {}
        item = wire.numeric_id(_dig(row, "variant", "inventoryItem", "id"), "InventoryItem")
        if item:
            keys["inventory_item_id"] = item
            if location:
                keys["location_id"] = location
        lines.append(
            MarketOrderLine(
                line_key=line_id,
                sku=answer_text(row.get("sku"), limit=ANSWER_SKU_MAX),
                keys=keys,
                quantity=quantity,
                unit_price=answer_money(_dig(row, "originalUnitPriceSet", "shopMoney", "amount")),
                name=answer_name(row.get("name"), limit=255),
            )
        )
    if not lines:
        return None
    address = node.get("shippingAddress") if isinstance(node.get("shippingAddress"), dict) else {}
    return MarketOrder(
        external_id=order_id,
        raw_status=raw,
        status=status,
        lines=tuple(lines),
        placed_at=_moment(node.get("processedAt")) or _moment(node.get("createdAt")),
        updated_at=_moment(node.get("updatedAt")),
        order_number=answer_text(node.get("name")),
        customer={
            key: value
            for key, value in (
                ("email", answer_name(node.get("email"))),
                ("phone", answer_name(node.get("phone"))),
                ("name", answer_name(address.get("name"))),
            )
            if value
        },
        address={key: answer_name(value) for key, value in address.items() if answer_name(value)},
        amount=answer_money(_dig(node, "totalPriceSet", "shopMoney", "amount")),
        currency=answer_text(node.get("currencyCode"), limit=3),
        raw=node,
    )


def api_version_problem(version: str) -> str:
    """Why an Admin API version cannot be used ('' when it can): it must be a quarterly
    release (`YYYY-01`, `-04`, `-07`, `-10`) from `FIRST_API_VERSION` on, or `unstable`."""
    if not _API_VERSION.fullmatch(version):
        return f"api_version must be a quarterly release such as {FIRST_API_VERSION}, or unstable"
    if version != "unstable" and version < FIRST_API_VERSION:
        return (
            f"api_version {version} is too old: inventorySetQuantities takes "
            f"changeFromQuantity and @idempotent from {FIRST_API_VERSION}, and every stock "
            f"update would be refused; use {FIRST_API_VERSION} or later"
        )
    return ""


def _level_id(keys: dict[str, Any]) -> str:
    return f"{keys.get('inventory_item_id', '')}/{keys.get('location_id', '')}"


def _error_codes(errors: Any) -> set[str]:
    """The `extensions.code` of each top-level GraphQL error (`THROTTLED`, ...)."""
    codes = set()
    for error in answer_list(errors) if not isinstance(errors, str) else [{}]:
        extensions = error.get("extensions") if isinstance(error, dict) else None
        code = answer_text(extensions.get("code")) if isinstance(extensions, dict) else ""
        codes.add(code or "ERROR")
    return codes


def _dig(value: Any, *names: str) -> Any:
    for name in names:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _moment(value: Any) -> datetime | None:
    """An aware datetime from an ISO-8601 text (Shopify's times carry their offset)."""
    text = answer_text(value)
    try:
        moment = parse_datetime(text) if text else None
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
