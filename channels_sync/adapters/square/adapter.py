"""Square (Inventory, Orders and OAuth APIs), as one location's stock of item variations.

Every call carries `Authorization: Bearer <access token>` and `Square-Version` (the
`SQUARE_API_VERSION` setting); there is no request signing.

- Stock: `POST /v2/inventory/changes/batch-create` (BatchChangeInventory,
  https://developer.squareup.com/reference/square/inventory-api/batch-change-inventory) with
  PHYSICAL_COUNT changes, at most 100 per call, and the push's idempotency key.
- Read-back: `POST /v2/inventory/counts/batch-retrieve` (BatchRetrieveInventoryCounts),
  IN_STOCK counts, through every `cursor`.
- Tokens: `POST /oauth2/token` with `grant_type=refresh_token` (ObtainToken,
  https://developer.squareup.com/docs/oauth-api/refresh-revoke-limit-scope); `expires_at`
  is an ISO string. A personal access token does not expire and cannot be refreshed.
- Orders: `POST /v2/orders/search` (SearchOrders) and `POST /v2/orders/batch-retrieve`
  (BatchRetrieveOrders); see `orders.py` for the states.
- Webhooks: see `wire.webhook_sign` and `orders.notification_parse`.

Listing keys are `catalog_object_id` (the ITEM_VARIATION id, stored as the listing's item
id) and `location_id` (its location column). Both are required: stock reports, order lines
and read-backs all name a location, and a listing must say which one it sells from to be
matched (a channel's default location may change; a listing's keys must not change with it).
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from django.conf import settings

from channels_sync.adapters.base import (
    Adapter,
    AdapterError,
    CallResult,
    ChannelEvent,
    MarketOrder,
    ObservedStock,
    OrderRef,
    OrderStatus,
    Outcome,
    StockUpdate,
    answer_json,
    answer_rows,
    answer_text,
    stock_observed,
)
from channels_sync.adapters.square import orders as square_orders
from channels_sync.adapters.square.stock import stock_push
from channels_sync.adapters.square.tokens import token_refresh
from channels_sync.adapters.square.wire import (
    SIGNATURE_HEADER,
    body_json,
    count_quantity,
    errors_of,
    rfc3339_ms,
    webhook_sign,
    when,
    whole_call_outcome,
)
from core.http import OutboundError

CHANGES_PATH = "/v2/inventory/changes/batch-create"
COUNTS_PATH = "/v2/inventory/counts/batch-retrieve"
ORDER_SEARCH_PATH = "/v2/orders/search"
ORDER_RETRIEVE_PATH = "/v2/orders/batch-retrieve"
MAX_CHANGES = 100  # per BatchChangeInventory call (connect-python-sdk BatchChangeInventoryRequest)
READ_BATCH = 100  # catalog object ids per count read (our choice; pages follow the cursor)
ORDER_SEARCH_LIMIT = 100  # orders per search page (Square's default is 500)
ORDER_RETRIEVE_MAX_IDS = 100  # BatchRetrieveOrders takes at most 100 order ids
ORDER_LOCATIONS_MAX = 10  # SearchOrders takes 1 to 10 location ids
# A guard against a list that never ends (a cursor minted afresh every time).
PAGES_MAX = 1000


def utc_now() -> datetime:
    """The time a count is stamped with (one place, so a test can move the clock)."""
    return datetime.now(UTC)


class SquareAdapter(Adapter):
    """Square: absolute PHYSICAL_COUNT changes of item variations at a location."""

    type = "square"
    label = "Square"
    credential_fields = (
        "access_token",
        "location_id",
        "signature_key",
        "refresh_token",
        "client_id",
        "client_secret",
        "access_token_expires_at",
    )
    secret_fields = ("access_token", "signature_key", "refresh_token", "client_secret")
    required_credentials = ("access_token", "location_id", "signature_key")
    key_columns: ClassVar[dict[str, str]] = {
        "catalog_object_id": "external_item_id",
        "location_id": "external_location_id",
    }
    required_keys = ("catalog_object_id", "location_id")
    default_batch_size = MAX_CHANGES
    max_batch_size = MAX_CHANGES
    max_read_batch_size = READ_BATCH
    # Square publishes no limits (429 RATE_LIMITED past them); 10 calls a second with a burst
    # of 10 stays well inside what sellers report, and the throttle answer slows us further.
    default_rate_per_second = 10.0
    default_burst = 10
    default_auth_base_url = "https://connect.squareup.com"
    webhook_signature_header = SIGNATURE_HEADER
    webhook_key_fields = ("signature_key",)
    # More locations whose orders the poll lists, beside the credentials' `location_id`.
    option_fields = ("order_location_ids",)

    # --- settings --------------------------------------------------------------------------

    @classmethod
    def credentials_clean(cls, credentials: dict[str, Any]) -> dict[str, Any]:
        """The base checks, and: a refresh token needs the application's id and secret."""
        cleaned = super().credentials_clean(credentials)
        if cleaned.get("refresh_token"):
            missing = [n for n in ("client_id", "client_secret") if not cleaned.get(n)]
            if missing:
                raise ValueError(f"a refresh_token needs the application's {' and '.join(missing)}")
        return cleaned

    @classmethod
    def options_clean(cls, options: dict[str, Any]) -> dict[str, Any]:
        """`order_location_ids`: up to 9 more location ids (strings) to poll orders of."""
        cleaned = super().options_clean(options)
        if "order_location_ids" in cleaned:
            ids = cleaned["order_location_ids"]
            if not isinstance(ids, list) or not all(
                isinstance(i, str) and answer_text(i) == i and i for i in ids
            ):
                raise ValueError("order_location_ids must be a list of location ids")
            if len(set(ids)) > ORDER_LOCATIONS_MAX - 1:
                raise ValueError(
                    f"order_location_ids takes at most {ORDER_LOCATIONS_MAX - 1} locations "
                    "beside the credentials' location_id"
                )
            cleaned["order_location_ids"] = list(dict.fromkeys(ids))
        return cleaned

    # --- stock ------------------------------------------------------------------------------

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the counts of one batch of listings; classify the answer (never raises).

        Each change is a PHYSICAL_COUNT of the listing's quantity (as a string, never below
        0) stamped `occurred_at` = the time of this call. Square refuses a physical count
        stamped more than 24 hours ago or in the future, so a request is never replayed: the
        push pipeline builds every call from its plan at send time (a retry after a failure
        or a throttle, a run resumed the next day, is a new call with the then desired
        quantities, a fresh stamp and its attempt row's new idempotency key). The key makes
        a resend of the very same request (a lost answer) harmless.

        The call is all or nothing. A refusal naming changes (`field` `changes[i]...`)
        fails those listings for good and the other listings of the batch as retryable:
        they were not applied, and go again without the refused ones. A refusal naming no
        change isolates the refused ones by halves within this call (see `stock.stock_push`),
        so only they fail for good. A refusal of a change's `occurred_at` comes from our
        clock running ahead of Square's (the stamp is "now"): it is retryable for the whole
        call and logged as `square.clock_ahead` (every push fails so until the clock is
        fixed, and the listings dead-letter after their attempts). Any other refusal of
        the request itself is permanent for the whole batch.
        """
        if not updates:
            return CallResult(outcome=Outcome.OK)
        return stock_push(
            self,
            updates,
            key=idempotency_key or str(uuid.uuid4()),
            stamp=rfc3339_ms(utc_now()),
        )

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read the IN_STOCK counts of these listings (100 catalog objects per call, every
        page of the answer). A decimal count is rounded down to whole units; a listing with
        no count at its location is left out. Raises `AdapterError`."""
        wanted = [k for k in keys if k.get("catalog_object_id") and k.get("location_id")]
        ids = list(dict.fromkeys(str(k["catalog_object_id"]) for k in wanted))
        locations = list(dict.fromkeys(str(k["location_id"]) for k in wanted))
        found: dict[tuple[str, str], int | None] = {}
        for start in range(0, len(ids), READ_BATCH):
            query = {
                "catalog_object_ids": ids[start : start + READ_BATCH],
                "location_ids": locations,
                "states": ["IN_STOCK"],
            }
            for count in self._pages(COUNTS_PATH, query, "counts", "inventory count read"):
                if not isinstance(count, dict) or count.get("state") != "IN_STOCK":
                    continue
                key = (
                    answer_text(count.get("catalog_object_id")),
                    answer_text(count.get("location_id")),
                )
                found[key] = count_quantity(count.get("quantity"))
        observed = []
        for listing in wanted:
            key = (str(listing["catalog_object_id"]), str(listing["location_id"]))
            if key not in found:
                continue
            quantity = stock_observed(found[key], channel_type=self.type, keys=listing)
            if quantity is not None:
                observed.append(ObservedStock(keys=dict(listing), quantity=quantity))
        return observed

    # --- tokens -----------------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Refresh an OAuth access token (`grant_type=refresh_token`).

        A personal access token has no refresh token (and does not expire): raises an
        `auth` AdapterError, so the channel is flagged for a new token. A refusal (4xx) is
        `auth` too; a 5xx, a 429, a transport failure and a success without an
        `access_token` are `retryable`. Square answers the
        refresh token with every refresh (the code flow keeps the same one); it is kept.
        """
        return token_refresh(self)

    # --- webhooks ---------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """Base64 HMAC-SHA256 of the notification URL + raw body, keyed with the signature
        key (the URL the intake passes: the channel's webhook URL as registered)."""
        return webhook_sign(
            signature_key=str(self.credentials.get("signature_key", "")), url=url, body=body
        )

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified notification (never raises).

        The key is `event_id` (kept across Square's redeliveries); without one, a digest of
        (order id, state, version, update time), or of the body. `order.created`,
        `order.updated` and `order.fulfillment.updated` are `order` events (the order id from
        `data.object.<type>.order_id`, else `data.id`; the state as status; `unreadable` when
        the id is unfit to store). `inventory.count.updated` is a `stock` event with one
        report per IN_STOCK count (`{catalog_object_id, location_id}`, whole units), dated
        at its oldest `calculated_at`. Anything else is `other`; a body that is not a JSON
        envelope is `unreadable`.
        """
        return square_orders.notification_parse(body, channel_type=self.type)

    # --- orders -----------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The status of an order state: OPEN says nothing alone (None: its money and
        fulfillments decide, see `orders.py`)."""
        return square_orders.order_status(raw_status)

    def order_location_ids(self) -> list[str]:
        """The locations whose orders the poll lists: the credentials' own, then the
        `order_location_ids` option's (at most 10 in all)."""
        ids = [str(self.credentials.get("location_id") or "")]
        ids += [str(i) for i in self.options.get("order_location_ids") or []]
        return [i for i in dict.fromkeys(ids) if i][:ORDER_LOCATIONS_MAX]

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order of the channel's locations updated in [since, until], through every
        page of SearchOrders sorted by UPDATED_AT (Square's range includes both ends: an
        order updated exactly at `until` is listed now and again by the next poll, which is
        harmless). Raises `AdapterError`."""
        query = {
            "location_ids": self.order_location_ids(),
            "query": {
                "filter": {
                    "date_time_filter": {
                        "updated_at": {"start_at": rfc3339_ms(since), "end_at": rfc3339_ms(until)}
                    },
                    "state_filter": {"states": list(square_orders.ORDER_STATUSES)},
                },
                # Square wants the sort field of the time filtered on.
                "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"},
            },
            "limit": ORDER_SEARCH_LIMIT,
        }
        refs: dict[str, OrderRef] = {}
        for order in self._pages(ORDER_SEARCH_PATH, query, "orders", "order search"):
            external_id = answer_text(order.get("id")) if isinstance(order, dict) else ""
            if external_id:
                # An order updated while the pages are read can show up twice: the last wins.
                refs[external_id] = OrderRef(
                    external_id=external_id,
                    raw_status=answer_text(order.get("state")),
                    updated_at=when(order.get("updated_at")),
                )
        return list(refs.values())

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The orders' detail through BatchRetrieveOrders, 100 ids a call; ids Square does
        not know are left out (it ignores them), and so are orders `market_order` cannot
        read. Raises `AdapterError`."""
        ids = list(dict.fromkeys(str(i).strip() for i in external_ids if str(i).strip()))
        found = []
        for start in range(0, len(ids), ORDER_RETRIEVE_MAX_IDS):
            body = {"order_ids": ids[start : start + ORDER_RETRIEVE_MAX_IDS]}
            answer = self._json_call(ORDER_RETRIEVE_PATH, body, "order retrieve")
            for raw in answer_rows(answer, "orders", what="order retrieve"):
                order = square_orders.market_order(raw) if isinstance(raw, dict) else None
                if order is not None:
                    found.append(order)
        return found

    # --- helpers ----------------------------------------------------------------------------

    def _pages(self, path: str, query: dict[str, Any], rows: str, what: str) -> list[Any]:
        """Every row of a cursor-paged POST list (the same query each page, as Square wants).
        Raises `AdapterError`, `retryable` when a cursor comes back or pages do not end."""
        found: list[Any] = []
        cursor = ""
        seen: set[str] = set()
        for _page in range(PAGES_MAX):
            answer = self._json_call(path, {**query, "cursor": cursor} if cursor else query, what)
            page = answer_rows(answer, rows, what=what)
            found.extend(page)
            cursor = answer_text(answer.get("cursor"), limit=2000)
            if not cursor or not page:
                return found
            if cursor in seen:
                raise AdapterError(f"{what}: the same cursor came back", outcome=Outcome.RETRYABLE)
            seen.add(cursor)
        raise AdapterError(f"{what}: more than {PAGES_MAX} pages", outcome=Outcome.RETRYABLE)

    def _json_call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        """POST a JSON body; the answer object, or a classified `AdapterError`."""
        try:
            response, _ = self._call("POST", path, body_json(body))
        except OutboundError as exc:
            raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
        answer = answer_json(response)
        outcome, token_expired = whole_call_outcome(response.status_code, answer)
        if outcome is None and (errors_of(answer) or not 200 <= response.status_code < 300):
            outcome = Outcome.PERMANENT
        if outcome is not None:
            raise AdapterError(
                f"{what}: HTTP {response.status_code} {self.excerpt(response.content)}",
                outcome=outcome,
                token_expired=token_expired,
                retry_after=(
                    self.retry_after_seconds(response.headers.get("Retry-After"))
                    if outcome == Outcome.THROTTLED
                    else None
                ),
            )
        return answer

    def _call(self, method: str, path: str, body: bytes) -> tuple[Any, int]:
        """Send an API call with the bearer token and version. Raises `OutboundError`."""
        headers = {
            "Authorization": f"Bearer {self.credentials.get('access_token', '')}",
            "Square-Version": _api_version(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        return self._request(method, f"{self.base_url}{path}", data=body, headers=headers)


def _api_version() -> str:
    return str(settings.SQUARE_API_VERSION)
