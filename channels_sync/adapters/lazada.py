"""The Lazada Open Platform adapter (marketplaces.md section 2).

Every call is a signed form request: the system parameters `app_key`, `timestamp` (epoch
milliseconds), `sign_method=sha256` and `access_token` travel with the business parameters,
and `sign` is the uppercase hex HMAC-SHA256 (key: app secret) of the API path followed by
every other parameter as `name + value`, sorted by name. The channel's base URL is the
regional REST base (`https://api.lazada.co.id/rest`); the API path is appended to it but the
signature covers the API path only (no `/rest`).

Stock is set with UpdateSellableQuantity (absolute sellable quantity, up to 50 SKUs of any
products per call, XML in the form parameter `payload`) and read back with GetProductItem.
A listing keyed by a `warehouse_code` (a multi-warehouse seller's listing of one warehouse)
goes in the multi-warehouse form, every warehouse listing of a SKU in one `<Sku>`:
`<MultiWarehouseInventories><MultiWarehouseInventory><WarehouseCode>..</WarehouseCode>
<SellableQuantity>..</SellableQuantity></MultiWarehouseInventory>...`; the single-warehouse
form (`<SellableQuantity>` under `<Sku>`) only updates the dropshipping warehouse (Lazada
Open Platform, UpdateSellableQuantity and "Inventory management API"). Read-back compares
like with like: a warehouse listing reads its own `multiWarehouseInventories[]` entry, a
listing without one the dropshipping warehouse's, never the sum over all warehouses (which
a single-warehouse write could never match).
Lazada answers errors in the JSON body of an HTTP 200: `code` "0" is success, anything else
is classified by `classify_code`.

Orders: pushes (trade order messages) are parsed by `push_event`; orders updated in a range
come from GetOrders (`/orders/get`), an order's detail from GetOrder (`/order/get`) and its
items, one per unit, from GetMultipleOrderItems (`/orders/items/get`, 50 orders a call).
"""

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from xml.sax.saxutils import escape

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
from core.http import OutboundError

logger = structlog.get_logger(__name__)

API_STOCK_UPDATE = "/product/stock/sellable/update"
API_ITEM_GET = "/product/item/get"
API_TOKEN_REFRESH = "/auth/token/refresh"  # noqa: S105 - a path, not a secret
API_ORDERS_GET = "/orders/get"
API_ORDER_GET = "/order/get"
API_MULTIPLE_ORDER_ITEMS_GET = "/orders/items/get"
# GetOrders: `limit` "maximum value: 100"; GetMultipleOrderItems: at most 50 `order_ids`.
ORDERS_PAGE_LIMIT = 100
ORDER_ITEMS_BATCH = 50
# A guard against a list that never ends (a server ignoring `offset` or `update_after`):
# 100 000 orders updated in one polled range at 100 a page.
ORDERS_PAGES_MAX = 1000
# GetOrder / GetMultipleOrderItems: the order id is not the shop's (E016 "Invalid Order ID",
# E039 "No orders were found").
ORDER_NOT_FOUND_CODES = frozenset({"16", "39"})
SIGN_METHOD = "sha256"
MAX_SKUS_PER_CALL = 50  # UpdateSellableQuantity refuses more with code 204
# The code of the seller's own (dropshipping) warehouse in `multiWarehouseInventories`: what
# the single-warehouse form of UpdateSellableQuantity sets. UNCONFIRMED: the Lazada Open
# Platform pages read (UpdateSellableQuantity, GetProductItem, "Inventory management API")
# say the single form "only updates the dropshipping warehouse" but show no code for it; the
# channel option `dropshipping_warehouse` names another.
DROPSHIPPING_WAREHOUSE = "dropshipping"
WAREHOUSE_CODE_MAX = 100  # the listing column that holds a warehouse code

# Throttling arrives as a body code: 901 is the API-level QPS limit ("retry in the next
# second"); ApiCallLimit / AppCallLimit are the gateway's bans ("ban will last N seconds").
THROTTLE_CODES = frozenset({"901", "ApiCallLimit", "AppCallLimit"})
THROTTLE_WAIT = 1.0
# Refused credentials: the access token, the app key, or the signature made with the secret.
TOKEN_CODES = frozenset({"IllegalAccessToken", "MissingAccessToken"})
CREDENTIAL_CODES = frozenset(
    {
        "IncompleteSignature",
        "MissingSignature",
        "InvalidAppKey",
        "MissingAppKey",
        "InsufficientPermission",
        "IllegalRefreshToken",
        "AUTH_TYPE_UNSUPPORTED",
    }
)
# Server trouble worth another try. "6" (unexpected internal error, "system fluctuation
# please retry"), "513" (internal call exception) and "1000" come from the stock API's error
# table. A timestamp outside Lazada's 7200 s window means our clock is off, not the request:
# retrying (with the backoff) beats dead-lettering every item of the batch.
RETRYABLE_CODES = frozenset(
    {
        "ServiceTimeout",
        "ServiceUnavailable",
        "InternalError",
        "6",
        "513",
        "1000",
        "InvalidTimestamp",
        "MissingTimestamp",
    }
)
# The whole call failed but the answer's `detail` names the SKUs at fault.
PER_SKU_CODE = "501"
# GetProductItem: the item (208) or SKU (207) is not on this shop.
NOT_FOUND_CODES = frozenset({"207", "208"})

# Lazada Open Platform, "Push Mechanism" > "Trade order notification": `message_type` 0 is a
# trade order's status change, sent once per order line.
MESSAGE_TYPE_TRADE_ORDER = 0

_BAN_SECONDS = re.compile(r"ban will last (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)

# Lazada's order (item) statuses, as GetOrders' `status` filter and the trade order push
# name them (Lazada Open Platform, GetOrders and "Order status flow"), to the normalized one.
ORDER_STATUSES: dict[str, OrderStatus | None] = {
    "unpaid": OrderStatus.PENDING_PAYMENT,
    # Paid (or cash on delivery confirmed): the seller still has to pack.
    "pending": OrderStatus.PAID,
    # "To pack" is Seller Center's name for the same step as `pending` (nothing is packed
    # yet); it holds stock like any paid order.
    "topack": OrderStatus.PAID,
    # Packed and awaiting pickup: the goods are set aside but still on our shelf.
    "packed": OrderStatus.READY_TO_SHIP,
    "ready_to_ship": OrderStatus.READY_TO_SHIP,
    "ready_to_ship_pending": OrderStatus.READY_TO_SHIP,
    "toship": OrderStatus.READY_TO_SHIP,
    "shipped": OrderStatus.SHIPPED,
    "shipping": OrderStatus.SHIPPED,
    # The carrier lost the parcel: the units left our warehouse and will not come back, as
    # with a shipped order (Lazada compensates the seller; stock is not restored). Mapping it
    # to `shipped` also commits an order whose shipped status was never seen.
    "lost": OrderStatus.SHIPPED,
    "delivered": OrderStatus.DELIVERED,
    "canceled": OrderStatus.CANCELLED,
    # The buyer returned the goods, or delivery failed and the parcel went back to the
    # seller: either way the units come back.
    "returned": OrderStatus.RETURNED,
    "failed": OrderStatus.RETURNED,
}
# The open statuses by how far an order has gone (`OrderStatus` is declared in that order).
_OPEN_RANK = {
    status: rank
    for rank, status in enumerate(OrderStatus)
    if status not in (OrderStatus.CANCELLED, OrderStatus.RETURNED)
}


# --- Pure helpers (checked against hand-computed vectors in the tests) -------------------------


def sign_request(path: str, params: Mapping[str, Any], secret: str) -> str:
    """Return Lazada's request signature for an API path and its parameters.

    The string signed is the API path (without `/rest`) followed by `name + value` of every
    parameter except `sign`, sorted by name in ASCII order, with no separators; the result is
    HMAC-SHA256 with the app secret as uppercase hex.
    """
    signed = path + "".join(f"{name}{params[name]}" for name in sorted(params) if name != "sign")
    digest = hmac.new(secret.encode("utf-8"), signed.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest().upper()


def signed_params(
    path: str,
    business: Mapping[str, Any],
    *,
    app_key: str,
    app_secret: str,
    access_token: str | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    """Return the business parameters with the system parameters and `sign` added."""
    params = {name: str(value) for name, value in business.items() if value is not None}
    params["app_key"] = str(app_key)
    params["timestamp"] = str(timestamp_ms if timestamp_ms is not None else now_ms())
    params["sign_method"] = SIGN_METHOD
    if access_token:
        params["access_token"] = str(access_token)
    params["sign"] = sign_request(path, params, app_secret)
    return params


def now_ms() -> int:
    """The current time in epoch milliseconds (Lazada's `timestamp` unit)."""
    return int(time.time() * 1000)


def stock_payload(updates: Sequence[StockUpdate]) -> str:
    """Return the UpdateSellableQuantity XML `payload` setting each update's quantity.

    An update without a `warehouse_code` is a `<Sku>` of its own in the single-warehouse form;
    the updates of one SKU that name warehouses make one `<Sku>` in the multi-warehouse form,
    a `<MultiWarehouseInventory>` per warehouse (a warehouse named twice keeps its last
    quantity). Text is XML-escaped; `SellerSku` is left out when the listing has none.
    """
    entries: dict[Any, list[StockUpdate]] = {}
    for index, update in enumerate(updates):
        entries.setdefault(_warehouse_sku(update.keys) or index, []).append(update)
    skus = []
    for group in entries.values():
        keys = group[0].keys
        parts = [
            f"<ItemId>{escape(str(keys['item_id']))}</ItemId>",
            f"<SkuId>{escape(str(keys['sku_id']))}</SkuId>",
        ]
        seller_sku = next((u.keys["seller_sku"] for u in group if u.keys.get("seller_sku")), "")
        if seller_sku:
            parts.append(f"<SellerSku>{escape(str(seller_sku))}</SellerSku>")
        if not keys.get("warehouse_code"):
            parts.append(f"<SellableQuantity>{_sellable_quantity(group[0])}</SellableQuantity>")
        else:
            warehouses = {str(u.keys["warehouse_code"]): _sellable_quantity(u) for u in group}
            rows = "".join(
                f"<MultiWarehouseInventory><WarehouseCode>{escape(code)}</WarehouseCode>"
                f"<SellableQuantity>{quantity}</SellableQuantity></MultiWarehouseInventory>"
                for code, quantity in warehouses.items()
            )
            parts.append(f"<MultiWarehouseInventories>{rows}</MultiWarehouseInventories>")
        skus.append(f"<Sku>{''.join(parts)}</Sku>")
    return f"<Request><Product><Skus>{''.join(skus)}</Skus></Product></Request>"


def _sellable_quantity(update: StockUpdate) -> int:
    # An oversold listing offers nothing: Lazada refuses a negative sellable quantity.
    return max(0, int(update.quantity))


def _warehouse_sku(keys: Mapping[str, Any]) -> str | None:
    """The SKU a warehouse listing belongs to (its updates share one `<Sku>` and one call);
    None for a listing that names no warehouse."""
    if not keys.get("warehouse_code"):
        return None
    return json.dumps([str(keys.get("item_id", "")), str(keys.get("sku_id", ""))])


def push_signature(*, app_key: str, app_secret: str, body: bytes) -> str:
    """Return the `Authorization` header Lazada sends with a push: lowercase hex
    HMAC-SHA256 (key: app secret) of the app key followed by the raw body."""
    message = str(app_key).encode("utf-8") + body
    return hmac.new(str(app_secret).encode("utf-8"), message, hashlib.sha256).hexdigest()


def classify_code(code: str, message: str = "") -> tuple[Outcome, bool]:
    """Return how a non-zero Lazada answer code ends a call, and whether the token expired.

    Lazada answers an expired token and an unknown one alike (`IllegalAccessToken`, "The
    specified access token is invalid or expired"): any `IllegalAccessToken` whose message
    mentions expiry counts as expired, so the pipeline refreshes once; a revoked grant then
    fails the refresh and ends as `auth` for good.
    """
    if code in THROTTLE_CODES:
        return Outcome.THROTTLED, False
    if code in TOKEN_CODES:
        expired = code == "IllegalAccessToken" and "expired" in message.lower()
        return Outcome.AUTH, expired
    if code in CREDENTIAL_CODES:
        return Outcome.AUTH, False
    if code in RETRYABLE_CODES:
        return Outcome.RETRYABLE, False
    return Outcome.PERMANENT, False


def _throttle_wait(message: str) -> float:
    """Seconds to wait after a throttle: the ban length when the gateway names it, else the
    documented "retry in the next second"."""
    match = _BAN_SECONDS.search(message or "")
    return float(match.group(1)) if match else THROTTLE_WAIT


def push_event(body: bytes) -> ChannelEvent:
    """Parse a Lazada push body into a channel event (never raises).

    A trade order message (`message_type` 0) reads
    `{"seller_id", "message_type": 0, "data": {"order_status", "trade_order_id",
    "trade_order_line_id", "status_update_time"}, "timestamp", "site"}`. Lazada sends no
    message id and one message per order line; the key is a digest of (order id, status,
    update time), so the messages of every line of one change make one event (the refetch
    reads the whole order anyway), a retry of the same message (Lazada resends every 30
    minutes, up to 12 times, until it gets a 200) has the same key, and a new status or a
    later change does not. Other message types (products, shallow stock, reverse orders)
    are `other`, keyed by a digest of the body; a body that is not such JSON, or whose order
    id or status is not fit to store (`answer_text`), is `unreadable`.
    """
    digest = hashlib.sha256(body).hexdigest()
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return unreadable(body)
    if not isinstance(message, dict) or "message_type" not in message:
        return unreadable(body)
    if _id_text(message.get("message_type")) != str(MESSAGE_TYPE_TRADE_ORDER):
        return ChannelEvent(topic="other", event_key=digest)
    data = message.get("data")
    if not isinstance(data, dict):
        return unreadable(body)
    order_id = _id_text(data.get("trade_order_id"))
    raw_status = data.get("order_status")
    status = answer_text(raw_status) if isinstance(raw_status, str) else ""
    if not order_id or not status:
        return unreadable(body)
    stamp = data.get("status_update_time")
    updated_at = epoch_to_datetime(stamp)
    if updated_at is None:
        # Without the update time the message still names the order: fall back to when
        # Lazada sent it (the refetch reads the order's real state either way).
        updated_at = epoch_to_datetime(message.get("timestamp"))
    return ChannelEvent(
        topic="order",
        event_key=answer_digest(order_id, status, _stamp_text(stamp)),
        order_id=order_id,
        status=status,
        updated_at=updated_at,
    )


def epoch_to_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from Lazada's epoch seconds (or milliseconds, told apart by
    size: `status_update_time` is seconds, the message `timestamp` milliseconds)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # not a number; an integer past a float's range
        return None
    if not 0 < number < 1e14:
        return None
    if number >= 1e11:  # milliseconds: 1e11 seconds is the year 5138
        number /= 1000
    return datetime.fromtimestamp(number, tz=UTC)


def _id_text(value: Any) -> str:
    """A Lazada id (a JSON number or string) as text; '' when absent or not an id fit to
    store (`answer_text`)."""
    return answer_text(value)


def _stamp_text(value: Any) -> str:
    """A push's `status_update_time` as it goes into the event key: the JSON it was sent as
    (a number or a string; '' for anything else)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return ""
    return json.dumps(value)


def order_status_of(raw_statuses: Iterable[str]) -> tuple[str, OrderStatus | None]:
    """The (raw, normalized) status of an order whose items are in these raw statuses.

    Lazada keeps a status per order item (one per unit). An order is as far as its least
    advanced open item (a paid item still holds stock while another has shipped); it is
    cancelled only when every item is, and returned when every item is cancelled or returned
    and some were returned (those units come back). Statuses that say nothing about stock
    are skipped; when no item says anything, the status is None.
    """
    raws = [str(raw) for raw in raw_statuses]
    known = [(raw, LazadaAdapter.order_status(raw)) for raw in raws]
    known = [(raw, status) for raw, status in known if status is not None]
    if not known:
        return (raws[0] if raws else ""), None
    open_items = [(raw, status) for raw, status in known if status in _OPEN_RANK]
    if open_items:
        return min(open_items, key=lambda pair: _OPEN_RANK[pair[1]])
    for raw, status in known:
        if status == OrderStatus.RETURNED:
            return raw, status
    return known[0]


def lazada_time(value: Any) -> datetime | None:
    """An aware UTC datetime from a Lazada order time (`2018-02-12 13:44:36 +0800`, or ISO
    8601); None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for layout in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S%z"):
        try:
            return datetime.strptime(text, layout).astimezone(UTC)
        except ValueError:
            continue
        except OverflowError:  # the year 1 with a positive offset falls before datetime.min
            return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # a time without an offset cannot be placed
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def iso_seconds(moment: datetime) -> str:
    """A datetime as GetOrders' time parameters take it (ISO 8601 in UTC, whole seconds)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def order_lines(items: Sequence[dict], *, cancelled: bool) -> tuple[MarketOrderLine, ...]:
    """An order's lines from its items (GetOrderItems: one item per unit).

    Items are grouped by `sku_id` into one line (`line_key` the sku id, quantity the number
    of units). A cancelled item of an order that goes on (part of it was cancelled) is not
    counted: its unit will never ship, so it must hold no stock; when the whole order is
    cancelled every unit is counted, so the line says what was released. The unit price is
    `item_price`; the discount is what the buyer did not pay of it (`item_price -
    paid_price`, the vouchers) over the counted units. Prices the money columns cannot hold
    are None. An item that names nothing to key its line by makes the whole answer
    unreadable: () (half an order would hold half its stock).
    """
    groups: dict[str, list[dict]] = {}
    for item in items:
        if not isinstance(item, dict):
            return ()
        key = (
            _id_text(item.get("sku_id"))
            or answer_text(item.get("shop_sku"), limit=ANSWER_SKU_MAX)
            or answer_text(item.get("sku"), limit=ANSWER_SKU_MAX)
            or _id_text(item.get("order_item_id"))
        )
        if not key:
            return ()
        groups.setdefault(key, []).append(item)
    lines = []
    for line_key, units in groups.items():
        first = units[0]
        counted = [unit for unit in units if cancelled or not _unit_cancelled(unit)]
        keys = {
            "item_id": _id_text(first.get("product_id")),
            "sku_id": _id_text(first.get("sku_id")),
            "seller_sku": answer_text(first.get("sku"), limit=ANSWER_SKU_MAX),
        }
        unit_price = answer_money(first.get("item_price"))
        discount = None
        paid = [answer_money(unit.get("paid_price")) for unit in counted]
        prices = [answer_money(unit.get("item_price")) for unit in counted]
        if None not in paid and None not in prices:
            discount = answer_money(
                sum((p - q for p, q in zip(prices, paid, strict=True)), Decimal(0))
            )
        lines.append(
            MarketOrderLine(
                line_key=line_key,
                sku=keys["seller_sku"],
                keys={name: value for name, value in keys.items() if value},
                quantity=Decimal(len(counted)),
                unit_price=unit_price,
                discount=discount,
                name=answer_name(first.get("name")),
            )
        )
    return tuple(lines)


def _unit_cancelled(item: dict) -> bool:
    return LazadaAdapter.order_status(answer_text(item.get("status"))) == OrderStatus.CANCELLED


def _statuses(values: Any) -> list[str]:
    """The statuses of a JSON array of them that are fit to store (others left out)."""
    return [status for status in map(answer_text, answer_list(values)) if status]


def market_order(order: dict, items: Sequence[dict]) -> MarketOrder:
    """A `MarketOrder` from GetOrder's `data` and the order's items (no lines when the
    items cannot be read: see `order_lines`)."""
    item_statuses = [
        status
        for status in (answer_text(item.get("status")) for item in items if isinstance(item, dict))
        if status
    ]
    if not item_statuses:
        # No items came back: the order's own `statuses` (its items' distinct statuses).
        item_statuses = _statuses(order.get("statuses"))
    raw_status, status = order_status_of(item_statuses)
    external_id = _id_text(order.get("order_id"))
    currencies = [item.get("currency") for item in items if isinstance(item, dict)]
    currency = next(filter(None, (answer_text(c, limit=3) for c in currencies)), "")
    customer = {
        "first_name": answer_name(order.get("customer_first_name")),
        "last_name": answer_name(order.get("customer_last_name")),
    }
    return MarketOrder(
        external_id=external_id,
        raw_status=raw_status,
        status=status,
        lines=order_lines(items, cancelled=status == OrderStatus.CANCELLED),
        placed_at=lazada_time(order.get("created_at")),
        # Lazada shows no payment time; the status says whether the order is paid.
        paid_at=None,
        updated_at=lazada_time(order.get("updated_at")),
        order_number=_id_text(order.get("order_number")) or external_id,
        customer={name: value for name, value in customer.items() if value},
        address=answer_object(order.get("address_shipping")),
        amount=answer_money(order.get("price")),
        currency=currency,
        payment_method=answer_name(order.get("payment_method"), limit=100),
        raw={"order": order, "items": list(items)},
    )


# --- The adapter ----------------------------------------------------------------------------------


class LazadaAdapter(Adapter):
    """Lazada: signed form calls, XML stock payloads, JSON answers with body error codes."""

    type = "lazada"
    label = "Lazada"
    credential_fields = (
        "app_key",
        "app_secret",
        "access_token",
        "refresh_token",
        "access_token_expires_at",
    )
    required_credentials = ("app_key", "app_secret")
    secret_fields: ClassVar[tuple[str, ...]] = ("app_secret",)  # the HMAC key of every call
    key_columns = {
        "item_id": "external_item_id",
        "sku_id": "external_variant_id",
        "seller_sku": "external_sku",
        # A multi-warehouse seller's warehouse (`WarehouseCode`): one listing per warehouse.
        "warehouse_code": "external_location_id",
    }
    required_keys = ("item_id", "sku_id")
    default_batch_size = 20  # Lazada recommends 20; more raises internal errors (code 513)
    max_batch_size = MAX_SKUS_PER_CALL
    # Inventory APIs allow 50 calls/s per seller; 40 leaves room for the seller's other tools
    # and for clock jitter between our token bucket and Lazada's counting window.
    default_rate_per_second = 40.0
    default_burst = 40
    default_auth_base_url = "https://auth.lazada.com/rest"
    webhook_signature_header = "Authorization"
    webhook_key_fields = ("app_key", "app_secret")
    # Lazada wants an HTTP 200 within 500 ms and reads nothing from the body; anything else
    # (or a slower answer) is resent every 30 minutes, up to 12 times.
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (200, b"", "text/plain")
    option_fields = ("dropshipping_warehouse",)

    @classmethod
    def options_clean(cls, options: dict[str, Any]) -> dict[str, Any]:
        """`dropshipping_warehouse`: the code of the seller's own warehouse in
        GetProductItem's `multiWarehouseInventories[]` (default `dropshipping`, UNCONFIRMED:
        see `DROPSHIPPING_WAREHOUSE`), a text of 1 to 100 characters."""
        cleaned = super().options_clean(options)
        if "dropshipping_warehouse" in cleaned:
            code = cleaned["dropshipping_warehouse"]
            text = code.strip() if isinstance(code, str) else ""
            if not text or len(text) > WAREHOUSE_CODE_MAX:
                raise ValueError(
                    "dropshipping_warehouse must be a warehouse code of 1 to "
                    f"{WAREHOUSE_CODE_MAX} characters"
                )
            cleaned["dropshipping_warehouse"] = text
        return cleaned

    @property
    def dropshipping_warehouse(self) -> str:
        """The dropshipping warehouse's code: the channel option, else `dropshipping`."""
        code = self.options.get("dropshipping_warehouse")
        return code.strip() if isinstance(code, str) and code.strip() else DROPSHIPPING_WAREHOUSE

    # --- signing ----------------------------------------------------------------------------

    def _params(
        self, path: str, business: Mapping[str, Any], *, with_token: bool = True
    ) -> dict[str, str]:
        return signed_params(
            path,
            business,
            app_key=self.credentials.get("app_key", ""),
            app_secret=self.credentials.get("app_secret", ""),
            access_token=self.credentials.get("access_token") if with_token else None,
        )

    # --- stock ------------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """Split updates into chunks (one call may mix SKUs of different products); the
        warehouse updates of one SKU stay in one call, as they make one `<Sku>`."""
        size = max(1, min(batch_size, self.max_batch_size, MAX_SKUS_PER_CALL))
        return chunk_groups(updates_grouped(updates, _warehouse_sku), size)

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the sellable quantity of a batch of SKUs (UpdateSellableQuantity).

        Code 501 with a `detail` naming SKUs is `partial`: the listed SKUs failed and the
        others were applied (the shape of `detail` is not documented; entries are matched by
        `sku_id`, else by `seller_sku`).
        """
        updates = list(updates)
        params = self._params(API_STOCK_UPDATE, {"payload": stock_payload(updates)})
        started = time.perf_counter()
        try:
            response, latency = self._request("POST", self.base_url + API_STOCK_UPDATE, data=params)
        except OutboundError as exc:
            return self.transport_failure(exc, int((time.perf_counter() - started) * 1000))
        return self._push_result(updates, response, latency)

    def _push_result(self, updates: list[StockUpdate], response: Any, latency: int) -> CallResult:
        status = response.status_code
        body = answer_json(response)
        result = CallResult(outcome=Outcome.OK, http_status=status, latency_ms=latency)
        code = str(body.get("code", "")) if body else ""
        message = str(body.get("message", "")) if body else ""
        if code == "0" and status < 400:
            result.items = [ItemResult(listing_id=u.listing_id, ok=True) for u in updates]
            return result
        result.error = self.excerpt(response.content)
        if code in THROTTLE_CODES or status == 429:
            header = self.retry_after_seconds(response.headers.get("Retry-After"))
            result.outcome = Outcome.THROTTLED
            result.retry_after = header if header is not None else _throttle_wait(message)
            return result
        if status >= 500 or body is None or not code:
            # A gateway page or an answer without a code: a 4xx is our request's fault,
            # anything else may not have reached Lazada's stock service at all.
            result.outcome = Outcome.PERMANENT if 400 <= status < 500 else Outcome.RETRYABLE
            return result
        if code == PER_SKU_CODE:
            items = self._per_sku_items(updates, body.get("detail"))
            if items is not None:
                result.outcome = Outcome.PARTIAL
                result.items = items
                return result
        result.outcome, result.token_expired = classify_code(code, message)
        return result

    @staticmethod
    def _per_sku_items(updates: list[StockUpdate], detail: Any) -> list[ItemResult] | None:
        """Item results from a 501 `detail`, or None when it names none of the updates."""
        if not isinstance(detail, list):
            return None
        by_sku_id: dict[str, dict] = {}
        by_seller_sku: dict[str, dict] = {}
        for entry in detail:
            if not isinstance(entry, dict):
                continue
            sku_id = str(entry.get("sku_id") or entry.get("SkuId") or "")
            seller_sku = str(entry.get("seller_sku") or entry.get("SellerSku") or "")
            if sku_id:
                by_sku_id.setdefault(sku_id, entry)
            if seller_sku:
                by_seller_sku.setdefault(seller_sku, entry)
        items, matched = [], False
        for update in updates:
            entry = by_sku_id.get(str(update.keys.get("sku_id", "")))
            if entry is None and update.keys.get("seller_sku"):
                entry = by_seller_sku.get(str(update.keys["seller_sku"]))
            if entry is None:
                # Whether a 501 applied the SKUs it does not name is not documented: send
                # them again (an absolute quantity, so a second send is harmless).
                items.append(
                    ItemResult(
                        listing_id=update.listing_id,
                        ok=False,
                        error="not confirmed by a failed call",
                        retryable=True,
                    )
                )
                continue
            matched = True
            entry_code = str(entry.get("code", ""))
            text = str(entry.get("message") or entry_code or "update failed")
            if entry.get("field"):
                text = f"{entry['field']}: {text}"
            retryable = entry_code in THROTTLE_CODES or entry_code in RETRYABLE_CODES
            items.append(
                ItemResult(
                    listing_id=update.listing_id,
                    ok=False,
                    error=text[:500],
                    retryable=retryable,
                )
            )
        return items if matched else None

    def read_batches(self, keys: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
        """One group per item (GetProductItem reads one item), at most `size` keys each."""
        size = max(1, size)
        by_item: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            by_item.setdefault(str(key.get("item_id", "")), []).append(key)
        return [
            group[start : start + size]
            for group in by_item.values()
            for start in range(0, len(group), size)
        ]

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read SKU quantities back with GetProductItem, one call per item.

        The quantity is the sellable quantity (what UpdateSellableQuantity sets), per
        warehouse (`_sellable`): a listing's own warehouse's entry in
        `multiWarehouseInventories[]`, the dropshipping warehouse's (`dropshipping_warehouse`)
        for a listing naming none. Items (208) or SKUs (207) the shop does not know are left
        out, and so is a listing naming no warehouse of a SKU in several warehouses none of
        which has the dropshipping code (logged as `lazada.dropshipping_unmatched`).
        """
        wanted: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            wanted.setdefault(str(key["item_id"]), []).append(key)
        observed = []
        for item_id, item_keys in wanted.items():
            skus = self._item_skus(item_id)
            if skus is None:
                continue
            by_id = {str(sku.get("SkuId", "")): sku for sku in skus if isinstance(sku, dict)}
            by_seller = {
                str(sku.get("SellerSku", "")): sku
                for sku in skus
                if isinstance(sku, dict) and sku.get("SellerSku")
            }
            for key in item_keys:
                sku = by_id.get(str(key.get("sku_id", "")))
                if sku is None and key.get("seller_sku"):
                    sku = by_seller.get(str(key["seller_sku"]))
                quantity = (
                    _sellable(
                        sku,
                        str(key.get("warehouse_code") or ""),
                        dropshipping=self.dropshipping_warehouse,
                        item_id=item_id,
                    )
                    if sku is not None
                    else None
                )
                quantity = stock_observed(quantity, channel_type=self.type, keys=key)
                if quantity is not None:
                    observed.append(ObservedStock(keys=dict(key), quantity=quantity))
        return observed

    def _item_skus(self, item_id: str) -> list | None:
        """The `skus` of one item (None: not on this shop). Raises `AdapterError`."""
        params = self._params(API_ITEM_GET, {"item_id": item_id})
        try:
            response, _ = self._request("GET", self.base_url + API_ITEM_GET, params=params)
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        body = answer_json(response)
        code = str(body.get("code", "")) if body else ""
        if code == "0" and response.status_code < 400:
            data = body.get("data") or {}
            skus = data.get("skus") if isinstance(data, dict) else None
            return skus if isinstance(skus, list) else []
        if code in NOT_FOUND_CODES:
            return None
        text = f"GetProductItem {item_id}: {self.excerpt(response.content)}"
        message = str(body.get("message", "")) if body else ""
        if code in THROTTLE_CODES or response.status_code == 429:
            header = self.retry_after_seconds(response.headers.get("Retry-After"))
            raise AdapterError(
                text,
                outcome=Outcome.THROTTLED,
                retry_after=header if header is not None else _throttle_wait(message),
            )
        if response.status_code >= 500 or not code:
            raise AdapterError(text, outcome=Outcome.RETRYABLE)
        outcome, expired = classify_code(code, message)
        raise AdapterError(text, outcome=outcome, token_expired=expired)

    # --- tokens -----------------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Refresh the access token (`/auth/token/refresh` on the auth base).

        Lazada refresh tokens are reusable until they expire and a refresh does not extend
        them; whatever refresh token the answer carries is kept (the old one if none).
        """
        refresh = self.credentials.get("refresh_token")
        if not refresh:
            raise AdapterError("no refresh token: authorise the shop again", outcome=Outcome.AUTH)
        params = self._params(API_TOKEN_REFRESH, {"refresh_token": refresh}, with_token=False)
        try:
            response, _ = self._request("POST", self.auth_base_url + API_TOKEN_REFRESH, data=params)
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        body = answer_json(response)
        code = str(body.get("code", "")) if body else ""
        text = f"token refresh: {self.excerpt(response.content)}"
        if response.status_code >= 500 or body is None:
            raise AdapterError(text, outcome=Outcome.RETRYABLE)
        if code != "0" or not body.get("access_token"):
            outcome, _ = classify_code(code, str(body.get("message", "")))
            if outcome in (Outcome.THROTTLED, Outcome.RETRYABLE):
                raise AdapterError(text, outcome=Outcome.RETRYABLE)
            raise AdapterError(text, outcome=Outcome.AUTH)
        self.credentials["access_token"] = str(body["access_token"])
        self.credentials["refresh_token"] = str(body.get("refresh_token") or refresh)
        try:
            lifetime = float(body.get("expires_in"))
        except (TypeError, ValueError):
            lifetime = None
        if lifetime is not None:
            self.credentials["access_token_expires_at"] = self.expires_iso(lifetime)
        else:
            self.credentials.pop("access_token_expires_at", None)
        return dict(self.credentials)

    # --- webhooks ---------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """Lowercase hex HMAC-SHA256 of app key + raw body (Lazada push `Authorization`)."""
        return push_signature(
            app_key=self.credentials.get("app_key", ""),
            app_secret=self.credentials.get("app_secret", ""),
            body=body,
        )

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified push (see `push_event`); never raises."""
        return push_event(body)

    # --- orders -----------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of a Lazada order (item) status (see `ORDER_STATUSES`)."""
        return ORDER_STATUSES.get(str(raw_status or "").strip().lower())

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until), through all pages of GetOrders.

        GetOrders filters by `update_after` / `update_before` ("on or after", "on or before",
        whole seconds) and pages by `offset` and `limit` (at most 100), sorted here by
        `updated_at` ascending; no `status` is sent (without it every status is listed).
        Offsets shift when an order in the range is updated while we page (it leaves the
        range for the present), so each next page starts again at the last update time seen
        with offset 0, and the orders already seen are skipped: an order moving away cannot
        make the next page skip one. An offset is used only when a whole page shares one
        second (there is no other way past it). The range is then cut to [since, until)
        exactly (Lazada's bounds are inclusive).

        Raises `AdapterError`; `retryable` when the walk does not end (more than
        `ORDERS_PAGES_MAX` pages, or a page within one second that adds no new order: a
        server ignoring the offset would be asked for the same page for ever).
        """
        if until <= since:
            return []
        since_second = since.astimezone(UTC).replace(microsecond=0)
        refs: dict[str, OrderRef] = {}
        after, offset = since_second, 0
        for _page in range(ORDERS_PAGES_MAX):
            business = {
                "update_after": iso_seconds(after),
                "update_before": iso_seconds(until),
                "sort_by": "updated_at",
                "sort_direction": "ASC",
                "offset": offset,
                "limit": ORDERS_PAGE_LIMIT,
            }
            data = self._order_call(API_ORDERS_GET, business, "GetOrders")
            rows = answer_rows(data, "orders", what="GetOrders")
            data = data if isinstance(data, dict) else {}
            page = [order for order in rows if isinstance(order, dict)]
            new_ids = 0
            stamps = []
            for order in page:
                external_id = _id_text(order.get("order_id"))
                updated_at = lazada_time(order.get("updated_at"))
                if not external_id or updated_at is None:
                    continue
                stamps.append(updated_at)
                new_ids += external_id not in refs
                raw_status, _ = order_status_of(_statuses(order.get("statuses")))
                refs[external_id] = OrderRef(external_id, raw_status, updated_at)
            if data.get("countTotal") is not None:
                total = _int(data.get("countTotal"))
            else:
                # No count: only a full page says there may be more.
                total = offset + len(page) + (len(page) >= ORDERS_PAGE_LIMIT)
            if not page or offset + len(page) >= total:
                break
            last = max(stamps, default=None)
            if last is not None and last > after:
                after, offset = last, 0
                continue
            # Every order of this page shares one second: go on through that second.
            if offset and not new_ids:
                raise AdapterError(
                    "GetOrders: a further page within one second added no new order",
                    outcome=Outcome.RETRYABLE,
                )
            offset += len(page)
        else:
            raise AdapterError(
                f"GetOrders had more than {ORDERS_PAGES_MAX} pages in one range",
                outcome=Outcome.RETRYABLE,
            )
        return sorted(
            (ref for ref in refs.values() if since <= ref.updated_at < until),
            key=lambda ref: (ref.updated_at, ref.external_id),
        )

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The current detail of these orders: GetOrder for each, and their items through
        GetMultipleOrderItems, 50 orders a call.

        Lazada has no batch form of GetOrder (the order's status, times, buyer and amount),
        so each order costs one call; its items (one per unit) come for 50 orders at a time,
        so n orders take n + n/50 calls instead of the 2n of GetOrder + GetOrderItems. Orders
        Lazada does not know are left out, and so are orders whose items did not come back
        or cannot be read (an order without lines would hold no stock): a later fetch takes
        them. Raises `AdapterError`.
        """
        wanted = list(dict.fromkeys(filter(None, map(_id_text, external_ids))))
        fetched = []
        for start in range(0, len(wanted), ORDER_ITEMS_BATCH):
            batch = wanted[start : start + ORDER_ITEMS_BATCH]
            headers = {}
            for external_id in batch:
                data = self._order_call(
                    API_ORDER_GET, {"order_id": external_id}, "GetOrder", missing_ok=True
                )
                if isinstance(data, dict) and _id_text(data.get("order_id")):
                    headers[external_id] = data
            if not headers:
                continue
            items = self._order_items(list(headers))
            for external_id, header in headers.items():
                if not items.get(external_id):
                    continue
                order = market_order(header, items[external_id])
                if order.lines:
                    fetched.append(order)
        return fetched

    def _order_items(self, external_ids: list[str]) -> dict[str, list[dict]]:
        """The items of up to 50 orders by order id (GetMultipleOrderItems)."""
        ids = ",".join(external_ids)
        data = self._order_call(
            API_MULTIPLE_ORDER_ITEMS_GET,
            {"order_ids": f"[{ids}]"},
            "GetMultipleOrderItems",
            missing_ok=True,
        )
        items: dict[str, list[dict]] = {}
        for entry in answer_list(data):
            if isinstance(entry, dict):
                # Items that are not objects stay in the list: `order_lines` refuses them.
                items[_id_text(entry.get("order_id"))] = answer_list(entry.get("order_items"))
        return items

    def _order_call(
        self, path: str, business: Mapping[str, Any], name: str, *, missing_ok: bool = False
    ) -> Any:
        """A signed GET of an order API; its `data` (None when `missing_ok` and Lazada does
        not know the order). Failures raise `AdapterError` classified like a stock call:
        transport, 5xx and server codes are `retryable`, throttling `throttled` (with the
        ban's length), refused tokens `auth` (`token_expired` for an expired one)."""
        params = self._params(path, business)
        try:
            response, _ = self._request("GET", self.base_url + path, params=params)
        except OutboundError as exc:
            raise AdapterError(f"{name}: {exc}", outcome=Outcome.RETRYABLE) from None
        status = response.status_code
        body = answer_json(response)
        code = str(body.get("code", "")) if body else ""
        if code == "0" and status < 400:
            return body.get("data")
        text = f"{name}: {self.excerpt(response.content)}"
        message = str(body.get("message", "")) if body else ""
        if code in THROTTLE_CODES or status == 429:
            header = self.retry_after_seconds(response.headers.get("Retry-After"))
            wait = header if header is not None else _throttle_wait(message)
            raise AdapterError(text, outcome=Outcome.THROTTLED, retry_after=wait)
        if status >= 500 or body is None or not code:
            outcome = Outcome.PERMANENT if 400 <= status < 500 else Outcome.RETRYABLE
            raise AdapterError(text, outcome=outcome)
        if missing_ok and code in ORDER_NOT_FOUND_CODES:
            return None
        outcome, expired = classify_code(code, message)
        raise AdapterError(text, outcome=outcome, token_expired=expired)


def _sellable(
    sku: dict,
    warehouse_code: str = "",
    *,
    dropshipping: str = DROPSHIPPING_WAREHOUSE,
    item_id: str = "",
) -> int | None:
    """A SKU's sellable quantity in one warehouse from a GetProductItem answer.

    `warehouse_code` names the warehouse (a multi-warehouse listing): its
    `multiWarehouseInventories[]` entry, None when the SKU has none there. Without one, the
    warehouse the single-warehouse form writes: the entry coded `dropshipping` (the channel's
    code for it, UNCONFIRMED by the vendor docs), else the only entry; with several
    warehouses and none so coded there is nothing to compare with (None, logged as
    `lazada.dropshipping_unmatched`: the channel's `dropshipping_warehouse` option is likely
    wrong). A SKU without `multiWarehouseInventories` reads `Available`, else
    `quantity`. None when a figure is not a whole number (no observation rather than a
    made-up zero).
    """
    warehouses = [
        warehouse
        for warehouse in answer_list(sku.get("multiWarehouseInventories"))
        if isinstance(warehouse, dict)
    ]
    if warehouses:
        by_code = {str(warehouse.get("warehouseCode", "")): warehouse for warehouse in warehouses}
        if warehouse_code:
            chosen = by_code.get(warehouse_code)
        else:
            chosen = by_code.get(dropshipping)
            if chosen is None and len(warehouses) == 1:
                chosen = warehouses[0]
            elif chosen is None:
                logger.warning(
                    "lazada.dropshipping_unmatched",
                    item_id=item_id,
                    sku_id=answer_text(sku.get("SkuId")),
                    dropshipping_warehouse=dropshipping,
                    warehouse_codes=sorted(by_code),
                )
        if chosen is None:
            return None
        return answer_int(chosen.get("sellableQuantity", chosen.get("quantity")))
    if warehouse_code:
        return None
    if sku.get("Available") is not None:
        return answer_int(sku["Available"])
    return answer_int(sku.get("quantity"))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


__all__ = [
    "LazadaAdapter",
    "classify_code",
    "epoch_to_datetime",
    "lazada_time",
    "market_order",
    "order_lines",
    "order_status_of",
    "push_event",
    "push_signature",
    "sign_request",
    "signed_params",
    "stock_payload",
]
