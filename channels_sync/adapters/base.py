"""The interface every marketplace adapter implements, and what its calls return.

An adapter speaks one marketplace's wire format: request signing, token refresh, the stock
update in the marketplace's batch shape, reading stock back, classifying errors, webhook
verification and parsing (`ChannelEvent`), and the order calls (`OrderRef` for a list of
orders updated in a time range, `MarketOrder` for an order's detail). It never touches the
database: the services hand it credentials and record what comes back. Transport failures
(`core.http.OutboundError`) are turned into a `retryable` `CallResult`, never raised.
"""

import enum
import functools
import hashlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.http import OutboundError, http_session

logger = structlog.get_logger(__name__)

# Refresh a token this long before it expires.
REFRESH_MARGIN = timedelta(minutes=30)
LISTING_KEY_COLUMNS = (
    "external_item_id",
    "external_variant_id",
    "external_sku",
    "external_location_id",
)
ERROR_EXCERPT = 500

# What an answer or a webhook may put in the database. Ids, statuses and listing keys are
# at most 100 characters (the order and event columns hold 100; no marketplace id comes
# near it), SKUs at most 200 (the line column).
ANSWER_ID_MAX = 100
ANSWER_SKU_MAX = 200
# A line's quantity is a whole number of units, and what an order line holds.
QUANTITY_MAX = 99_999_999
# Money columns are Decimal(14, 4): under 10^10 either way.
MONEY_LIMIT = Decimal(10) ** 10
# Integers in answers and webhooks (ids, codes, epoch times) have at most this many digits;
# a longer string is no such number (and Python refuses to parse past 4300 digits).
_WIRE_INT = re.compile(r"-?[0-9]{1,30}")


class Outcome(enum.StrEnum):
    """How a call ended, as the push pipeline acts on it."""

    OK = "ok"  # every item applied
    PARTIAL = "partial"  # some items failed (see the item results); the rest applied
    THROTTLED = "throttled"  # rate limited: wait (retry_after) and send again, no attempt used
    RETRYABLE = "retryable"  # 5xx, timeout, connection error: back off and retry
    PERMANENT = "permanent"  # the request itself is wrong: retrying will not help
    AUTH = "auth"  # the credentials were refused (see `token_expired`)


class AdapterError(Exception):
    """A call that could not be made or understood (token refresh, reading stock, orders).

    `token_expired` (with outcome `auth`): an expired, not revoked, token: refresh and call
    again. `retry_after` (with outcome `throttled`): seconds the marketplace asked to wait.
    """

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome = Outcome.RETRYABLE,
        token_expired: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.token_expired = token_expired
        self.retry_after = retry_after


@dataclass(frozen=True)
class StockUpdate:
    """Set one listing's quantity on the marketplace."""

    listing_id: int
    keys: dict[str, str]  # the marketplace's keys, as `Adapter.key_fields` names them
    quantity: int
    # What the channel shows for this listing as far as we know (`ChannelListing.
    # channel_quantity`: the last confirmed push or a later observation; never cleared by a
    # failed call; None: unknown). Adapters with compare-and-set send it as the expected
    # current value.
    expected: int | None = None
    # Sent only because its push group must be whole (`Adapter.push_group`): a listing the
    # push does not manage (excluded), at `quantity`, the figure the channel shows as far as
    # we know. An adapter that reads the group just before the write sends the figure read
    # instead. Its result is never recorded as a push of ours.
    passenger: bool = False


@dataclass(frozen=True)
class ItemResult:
    """What happened to one update of a call."""

    listing_id: int
    ok: bool
    error: str = ""
    # A per-item failure is permanent (dead-lettered at once) unless the marketplace says
    # to try again (a per-row rate limit, a busy item).
    retryable: bool = False
    # Compare-and-set refused: the channel's quantity was not `StockUpdate.expected`; it
    # shows `observed` (None: not read). The push records it and plans the listing again.
    stale: bool = False
    observed: int | None = None
    # Not applied, through no fault of its own: another update of the same call was refused
    # and the marketplace applied none of them. Sent again soon, no attempt used (with
    # `ok=False, retryable=True`; a call whose every update says so counts as retryable).
    requeue: bool = False


@dataclass
class CallResult:
    """The classified answer to one stock-update call."""

    outcome: Outcome
    http_status: int | None = None
    items: list[ItemResult] = field(default_factory=list)  # for ok and partial: one per update
    retry_after: float | None = None  # seconds, for throttled (None: the pipeline decides)
    error: str = ""  # excerpt of the marketplace's error, for the attempt row
    latency_ms: int = 0
    token_expired: bool = False  # auth: an expired (not revoked) token; refresh and resend
    # The calls per second the marketplace says apply to this call (Amazon's
    # `x-amzn-RateLimit-Limit`): the push keeps under it for the rest of the run.
    rate_per_second: float | None = None


@dataclass(frozen=True)
class ObservedStock:
    """A listing's quantity as the marketplace reports it."""

    keys: dict[str, str]
    quantity: int


class OrderStatus(enum.StrEnum):
    """An order's state, the same for every marketplace (adapters map their statuses here).

    The order is the rank: a state never follows a higher one, except that `cancelled`
    and `returned` end an order from any open state (see `orders.services`).
    """

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    READY_TO_SHIP = "ready_to_ship"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


@dataclass(frozen=True)
class StockReport:
    """One listing's stock as a webhook reports it: its keys (as `key_columns` name them)
    and the quantity, or None when the notification only names the listing (the stock is
    then read back through `fetch_stock`)."""

    keys: dict[str, str]
    quantity: int | None = None


@dataclass(frozen=True)
class ChannelEvent:
    """A verified webhook, parsed: what it is about and the key that makes it unique.

    `event_key` is unique per channel: the marketplace's notification id where it sends one
    (TikTok's `tts_notification_id`), else a digest of (order id, status, update time).
    `topic` is `order` for an order's status change (then `order_id` is set), `stock` for a
    report of listings' stock (then `stock` names them; `updated_at` is when the marketplace
    saw that stock), `other` for notifications the product does not act on (stored and
    marked ignored), `unreadable` for a body that is not the marketplace's JSON (its key is
    a digest of the body).
    """

    topic: str
    event_key: str
    order_id: str = ""
    status: str = ""  # the marketplace's raw status, as notified
    updated_at: datetime | None = None
    stock: tuple[StockReport, ...] = ()


@dataclass(frozen=True)
class OrderRef:
    """An order as a list of recently updated orders names it."""

    external_id: str
    raw_status: str = ""
    updated_at: datetime | None = None


@dataclass(frozen=True)
class MarketOrderLine:
    """One line of a marketplace order, as the marketplace describes it.

    `line_key` is stable for the order (the marketplace's line id, or its listing keys when
    one line stands for several rows, as TikTok's one row per unit); `keys` are the listing
    keys as the adapter's `key_columns` name them (what matches a `ChannelListing`); `sku` is
    the seller SKU as sent (what matches a product when no listing does).
    """

    line_key: str
    sku: str
    keys: dict[str, str]
    quantity: Decimal
    unit_price: Decimal | None = None
    discount: Decimal | None = None
    name: str = ""


@dataclass(frozen=True)
class MarketOrder:
    """An order's current detail, as fetched from the marketplace (normalized)."""

    external_id: str
    raw_status: str
    # None: a raw status that says nothing about stock (a cancellation request): the order
    # keeps its state (a new one opens as paid or pending payment, by `paid_at`).
    status: OrderStatus | None
    lines: tuple[MarketOrderLine, ...]
    placed_at: datetime | None = None
    paid_at: datetime | None = None
    updated_at: datetime | None = None
    order_number: str = ""  # the number shown to people; the external id when empty
    customer: dict[str, Any] = field(default_factory=dict)
    address: dict[str, Any] = field(default_factory=dict)
    amount: Decimal | None = None
    currency: str = ""
    payment_method: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class Adapter(ABC):
    """One marketplace. Subclasses set the class attributes and implement the methods.

    Every subclass's `orders_updated` and `orders_fetch` are wrapped (`_answers_guarded`) so
    that an answer the parsing did not foresee raises `AdapterError` (retryable), never a
    TypeError or the like, and its `webhook_parse` (`_parse_guarded`) so that it never
    raises: a marketplace's odd answer must not stop polling or 500 the intake.
    """

    type: ClassVar[str]
    label: ClassVar[str]
    # Credential fields; none is ever shown back, `secret_fields` are the ones that sign.
    credential_fields: ClassVar[tuple[str, ...]]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_credentials: ClassVar[tuple[str, ...]]
    # Listing keys by name, and the listing column each is stored in (`external_item_id`,
    # `external_variant_id`, `external_sku`, `external_location_id`).
    key_columns: ClassVar[dict[str, str]]
    required_keys: ClassVar[tuple[str, ...]]
    default_batch_size: ClassVar[int]
    max_batch_size: ClassVar[int]
    default_rate_per_second: ClassVar[float]
    default_burst: ClassVar[int]
    default_auth_base_url: ClassVar[str] = ""
    # Non-secret settings (`Channel.options`) the type takes; `options_clean` checks them.
    option_fields: ClassVar[tuple[str, ...]] = ()
    # How far behind now the marketplace's order list reaches (Amazon's getOrders takes no
    # `LastUpdatedBefore` within two minutes of the request): a poll lists up to
    # now - lag and moves its cursor there, so the newest orders are listed by the next one.
    orders_lag_seconds: ClassVar[float] = 0.0
    # The stock update sends `StockUpdate.expected` and the marketplace refuses it (`stale`)
    # when the quantity is another: the push records what was read back, opens the stock
    # conflict and sends again expecting it (see `push_stale`).
    compare_and_set: ClassVar[bool] = False
    # The longest window one `orders_updated` call may cover (None: any). A marketplace whose
    # order list is paced so slowly that a busy window's pages could outlast the rate limit
    # (Amazon's getOrders) sets it: the poll walks its window in slices this long, moving its
    # cursor after each one, so a throttle mid-way loses only the slice it hit.
    orders_max_window_seconds: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("orders_updated", "orders_fetch", "fetch_stock"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                setattr(cls, name, _answers_guarded(method))
        parse = cls.__dict__.get("webhook_parse")
        if callable(parse) and not getattr(parse, "__isabstractmethod__", False):
            cls.webhook_parse = _parse_guarded(parse)

    def __init__(
        self,
        *,
        base_url: str,
        credentials: dict[str, Any],
        auth_base_url: str = "",
        timeout: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_base_url = (auth_base_url or self.default_auth_base_url or base_url).rstrip("/")
        self.credentials = dict(credentials)
        self.options = dict(options or {})
        self.timeout = timeout
        self.session = http_session()

    # --- listing keys -------------------------------------------------------------------------

    @classmethod
    def keys_clean(cls, keys: dict[str, Any]) -> dict[str, str]:
        """Return the listing keys as strings, or raise `ValueError` naming what is wrong."""
        if not isinstance(keys, dict):
            raise ValueError("keys must be an object")
        unknown = sorted(set(keys) - set(cls.key_columns))
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(unknown)}")
        cleaned = {}
        for name, value in keys.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ValueError(f"{name} must be a string or an integer")
            text = str(value).strip()
            limit = 200 if cls.key_columns[name] == "external_sku" else 100
            if len(text) > limit:
                raise ValueError(f"{name} is longer than {limit} characters")
            if text:
                cleaned[name] = text
        missing = [name for name in cls.required_keys if name not in cleaned]
        if missing:
            raise ValueError(f"missing keys: {', '.join(missing)}")
        return cleaned

    @classmethod
    def keys_to_columns(cls, keys: dict[str, str]) -> dict[str, str]:
        """All four listing key columns for a set of (clean) keys; absent ones are ''."""
        columns = dict.fromkeys(LISTING_KEY_COLUMNS, "")
        for name, column in cls.key_columns.items():
            if name in keys:
                columns[column] = keys[name]
        return columns

    @classmethod
    def keys_from_listing(cls, listing: Any) -> dict[str, str]:
        """The keys of a listing (a model instance or a dict of its columns)."""
        get = listing.get if isinstance(listing, dict) else lambda c: getattr(listing, c)
        keys = {}
        for name, column in cls.key_columns.items():
            value = get(column)
            if value not in (None, ""):
                keys[name] = value
        return keys

    # --- credentials and tokens ---------------------------------------------------------------

    @classmethod
    def credentials_clean(cls, credentials: dict[str, Any]) -> dict[str, Any]:
        """Return the credentials (only known fields), or raise `ValueError`."""
        if not isinstance(credentials, dict):
            raise ValueError("credentials must be an object")
        unknown = sorted(set(credentials) - set(cls.credential_fields))
        if unknown:
            raise ValueError(f"unknown credential fields: {', '.join(unknown)}")
        missing = [name for name in cls.required_credentials if not credentials.get(name)]
        if missing:
            raise ValueError(f"missing credential fields: {', '.join(missing)}")
        expires = credentials.get("access_token_expires_at")
        if expires and parse_datetime(str(expires)) is None:
            raise ValueError("access_token_expires_at must be an ISO-8601 date and time")
        return {key: value for key, value in credentials.items() if value not in (None, "")}

    @classmethod
    def options_clean(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Return the type's settings (`Channel.options`) checked, or raise `ValueError`
        naming what is wrong. By default only `option_fields` are known (none)."""
        if not isinstance(options, dict):
            raise ValueError("options must be an object")
        unknown = sorted(set(options) - set(cls.option_fields))
        if unknown:
            raise ValueError(f"unknown options: {', '.join(unknown)}")
        return dict(options)

    @classmethod  # noqa: B027 - a hook that types override; none by default
    def settings_check(cls, options: dict[str, Any], credentials: dict[str, Any]) -> None:
        """Check what depends on the options and the credentials together (both already
        cleaned by `options_clean` and `credentials_clean`), e.g. the credentials an auth mode
        chosen in the options needs; raise `ValueError` naming the missing or wrong
        credential. By default nothing depends on both."""

    def token_expires_at(self) -> datetime | None:
        raw = self.credentials.get("access_token_expires_at")
        if not raw:
            return None
        parsed = parse_datetime(str(raw))
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed

    def token_needs_refresh(self, now: datetime | None = None) -> bool:
        """Whether the access token is missing or expires within the margin."""
        if not self.credentials.get("access_token"):
            return True
        expires = self.token_expires_at()
        if expires is None:
            return False
        return expires - (now or timezone.now()) <= REFRESH_MARGIN

    @abstractmethod
    def token_refresh(self) -> dict[str, Any]:
        """Refresh the access token through the marketplace's endpoint.

        Returns the whole new credentials dict (new access token, the new refresh token
        where the marketplace rotates it, and `access_token_expires_at` in ISO-8601) and
        updates `self.credentials`. Raises `AdapterError` (outcome `auth` when the refresh
        token is refused, `retryable` for transport or 5xx failures).
        """

    # --- stock ----------------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """Split updates into calls the marketplace accepts (at most `batch_size` each).

        The updates of one push group (`push_group`) always share a call: a group is placed
        whole, in the order of its first update, and one bigger than the size goes alone.
        """
        size = max(1, min(batch_size, self.max_batch_size))
        return chunk_groups(updates_grouped(updates, self.push_group), size)

    # The listing keys (names, as `key_columns` has them) whose values make a push group;
    # empty: the type has no groups. See `push_group`.
    push_group_keys: ClassVar[tuple[str, ...]] = ()

    def push_group(self, keys: dict[str, str]) -> str | None:
        """The push group of a listing's keys, or None (the listing stands alone).

        Listings of one group are the rows of one marketplace record (TikTok: a SKU's
        warehouses) that the marketplace wants updated together: every call names all of
        them, whichever changed. The push pipeline completes a group it sends with the
        channel's other listings of that group (at their desired quantities; excluded ones
        as passengers, at the figure the channel shows as far as we know) and `batches`
        never splits one. Members with no listing here, or no known figure, are the
        adapter's to add (TikTok reads the SKU just before the update). By default a group
        is the values of `push_group_keys`, when the listing has all of them.
        """
        if not self.push_group_keys:
            return None
        values = [str(keys.get(name) or "").strip() for name in self.push_group_keys]
        if not all(values):
            return None
        return json.dumps(values)

    @abstractmethod
    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Send one batch (as made by `batches`) and classify the answer.

        `idempotency_key` is unique to this call's attempt row (at most 64 characters):
        marketplaces that take one (Shopify's `@idempotent`, Square's `idempotency_key`)
        send it. Never raises for the marketplace's answers or transport failures: those
        become the result's outcome. For `ok` and `partial`, `items` has one result per
        update.
        """

    @abstractmethod
    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read the quantities of the given listings back from the marketplace.

        Raises `AdapterError` when the call fails (classified like a stock call's outcome:
        `throttled` with `retry_after`, `auth` with `token_expired`); listings the
        marketplace does not know are left out of the answer. Makes as many calls as the
        keys need: `read_batches` groups keys into one call each.
        """

    def read_batches(self, keys: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
        """Split listing keys into groups that `fetch_stock` reads in one call each (at most
        `size` keys a group, and never more than the marketplace's read call takes)."""
        size = max(1, min(size, self.max_read_batch_size))
        return [list(keys[i : i + size]) for i in range(0, len(keys), size)]

    # The most listings one read call takes.
    max_read_batch_size: ClassVar[int] = 50

    # --- webhooks -------------------------------------------------------------------------------

    @abstractmethod
    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """The signature the marketplace sends with a webhook of this raw body."""

    def webhook_verify(self, *, headers: dict[str, str], body: bytes, url: str = "") -> bool:
        """Whether a webhook's signature header matches its raw body (constant time)."""
        import hmac

        given = _header(headers, self.webhook_signature_header).strip()
        if not given or not given.isascii():
            return False
        if any(not str(self.credentials.get(name) or "") for name in self.webhook_key_fields):
            # An HMAC keyed with an empty secret (or over an empty app key) is one anybody
            # can compute: no signature made with it proves anything.
            return False
        expected = self.webhook_signature(body=body, url=url)
        return hmac.compare_digest(given.encode(), expected.encode())

    webhook_signature_header: ClassVar[str] = "Authorization"
    # The credentials a webhook signature is made with; with any of them empty, no webhook
    # is taken as verified.
    webhook_key_fields: ClassVar[tuple[str, ...]] = ()
    # What the marketplace wants back for an accepted webhook: (status, body, content type).
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (200, b"", "text/plain")
    # Headers the parsing reads (a topic, a delivery id), kept with the stored event so that
    # it can be parsed again later; never a signature.
    webhook_kept_headers: ClassVar[tuple[str, ...]] = ()

    # How long the intake remembers a webhook's nonce (`webhook_nonce`) against replays.
    webhook_nonce_seconds: ClassVar[int] = 600

    def webhook_nonce(self, *, headers: dict[str, str], body: bytes) -> str | None:
        """What makes a verified webhook request unique, for types that refuse a replay of
        the same signed request (the intake remembers it `webhook_nonce_seconds`); None: the
        type has none (the event key alone keeps an event once)."""
        return None

    def webhook_challenge(
        self, *, query: dict[str, str], url: str
    ) -> tuple[int, bytes, str] | None:
        """The answer to a marketplace's `GET` of the webhook URL (an endpoint check, as
        eBay's `challenge_code`): (status, body, content type), or None when the type has
        no such check (the endpoint then answers 405)."""
        return None

    @abstractmethod
    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified webhook's raw body (and the headers the type keeps, see
        `webhook_kept_headers`). Never raises: a body that cannot be read is a
        `ChannelEvent` of topic `unreadable` keyed by a digest of the body (`unreadable`).

        Ids, statuses and keys in the event are fit to store (`answer_text`); an order
        event whose order id is not is `unreadable`.
        """

    # --- orders ---------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of a marketplace status (None: one the adapter does not know;
        the order services then record it and change nothing)."""

    @abstractmethod
    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until), through all pages of the marketplace's list.

        Raises `AdapterError` when a call fails (classified like a stock call's outcome),
        `retryable` for an answer that cannot be read, and when the list does not end.
        """

    @abstractmethod
    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The current detail of these orders (batched as the marketplace allows).

        Orders the marketplace does not know are left out, and so are orders it answers
        without their lines or with a line that cannot be read (an invalid quantity): they
        are not returned yet, and the caller tries them again later. Raises `AdapterError`
        (`retryable` for an answer that cannot be read).
        """

    # --- helpers for subclasses -----------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[Any, int, float]:
        """Send a request; return (response, latency ms). Raises `OutboundError`."""
        if self.timeout is not None:
            kwargs.setdefault("timeout", self.timeout)
        started = time.perf_counter()
        response = self.session.request(method, url, **kwargs)
        return response, int((time.perf_counter() - started) * 1000)

    def call_failed(
        self,
        outcome: Outcome,
        response: Any,
        *,
        error: str,
        latency_ms: int,
        token_expired: bool = False,
    ) -> CallResult:
        """The result of an answer that failed as a whole (Retry-After read for throttles)."""
        retry_after = None
        if outcome == Outcome.THROTTLED:
            retry_after = self.retry_after_seconds(response.headers.get("Retry-After"))
        return CallResult(
            outcome=outcome,
            http_status=response.status_code,
            retry_after=retry_after,
            error=error,
            latency_ms=latency_ms,
            token_expired=token_expired,
        )

    @staticmethod
    def transport_failure(exc: OutboundError, latency_ms: int = 0) -> CallResult:
        return CallResult(
            outcome=Outcome.RETRYABLE, error=str(exc)[:ERROR_EXCERPT], latency_ms=latency_ms
        )

    @staticmethod
    def excerpt(text: str | bytes) -> str:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return text[:ERROR_EXCERPT]

    @staticmethod
    def retry_after_seconds(value: str | None) -> float | None:
        """A Retry-After header in seconds (delta form only), or None."""
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None
        return max(0.0, min(seconds, 3600.0))

    @staticmethod
    def expires_iso(seconds_from_now: float | None = None, *, epoch: float | None = None) -> str:
        """An ISO-8601 expiry from a lifetime in seconds or an absolute Unix time."""
        if epoch is not None:
            moment = datetime.fromtimestamp(epoch, tz=UTC)
        else:
            moment = timezone.now() + timedelta(seconds=seconds_from_now or 0)
        return moment.isoformat()


def updates_grouped(
    updates: Sequence[StockUpdate], group_of: Callable[[dict[str, str]], str | None]
) -> list[list[StockUpdate]]:
    """The updates in groups: those of one group (`group_of` their keys) together, in the
    order of the group's first update; an update without a group is a group of one."""
    groups: dict[Any, list[StockUpdate]] = {}
    for index, update in enumerate(updates):
        group = group_of(update.keys)
        groups.setdefault(index if group is None else ("group", group), []).append(update)
    return list(groups.values())


def chunk_groups(groups: Sequence[Sequence[StockUpdate]], size: int) -> list[list[StockUpdate]]:
    """Pack whole groups, in order, into chunks of at most `size` updates (a group bigger
    than `size` makes a chunk of its own: a group is never split)."""
    chunks: list[list[StockUpdate]] = []
    current: list[StockUpdate] = []
    for group in groups:
        if current and len(current) + len(group) > size:
            chunks.append(current)
            current = []
        current.extend(group)
    if current:
        chunks.append(current)
    return chunks


def _header(headers: dict[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""


# --- reading answers and webhooks ---------------------------------------------------------------


def answer_text(value: Any, *, limit: int = ANSWER_ID_MAX) -> str:
    """An id, status, listing key or SKU from an answer or a webhook, fit to store, else ''.

    Strings and integers are taken (ids come as either), trimmed. Anything else, an empty
    text, one longer than `limit`, and one with a character that is not printable give '':
    that covers NUL (PostgreSQL refuses it), a lone surrogate from a JSON escape (it cannot
    be encoded) and control characters.
    """
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value) if abs(value) < 10**limit else ""
    if not isinstance(value, str):
        return ""
    text = value.strip()
    if len(text) > limit or not text.isprintable():
        return ""
    return text


# The largest stock figure read back from a marketplace that is taken as an observation (a
# PostgreSQL integer): anything beyond, or below zero, says nothing true about the listing.
STOCK_MAX = 2**31 - 1


def stock_observed(quantity: int | None, *, channel_type: str, keys: Any) -> int | None:
    """A quantity read back (or reported) for a listing, or None when there is none to take.

    A figure outside 0..`STOCK_MAX` is "no observation" (logged `adapter.stock_out_of_range`),
    never a comparison: one absurd answer must not open a conflict or fail a run.
    """
    if quantity is None:
        return None
    if not 0 <= quantity <= STOCK_MAX:
        logger.warning(
            "adapter.stock_out_of_range",
            channel_type=channel_type,
            keys=repr(keys)[:200],
            quantity=str(quantity)[:40],
        )
        return None
    return quantity


def answer_int(value: Any) -> int | None:
    """An integer from an answer or a webhook (a code, an epoch time): a JSON number with no
    fraction or a string of ASCII digits, at most 30 of them; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10**30 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e30 else None
    if isinstance(value, str) and _WIRE_INT.fullmatch(value.strip()):
        return int(value.strip())
    return None


def answer_quantity(value: Any) -> Decimal | None:
    """A line's quantity: a whole number of units from 1 to `QUANTITY_MAX`, else None."""
    number = _answer_decimal(value)
    if number is None or number != number.to_integral_value():
        return None
    if not 1 <= number <= QUANTITY_MAX:
        return None
    return Decimal(int(number))


def answer_money(value: Any) -> Decimal | None:
    """An amount of money that fits the money columns (Decimal(14, 4)), else None."""
    number = _answer_decimal(value)
    if number is None or abs(number) >= MONEY_LIMIT:
        return None
    # Rounded to the column's four places it must still fit (9999999999.99999 does not).
    if abs(number.quantize(Decimal("0.0001"))) >= MONEY_LIMIT:
        return None
    return number


def answer_name(value: Any, *, limit: int = 300) -> str:
    """Free text from an answer (a product name, a payment method), fit to store: only its
    printable characters, cut to `limit`; '' for anything that is not a string or number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return ""
    text = value if isinstance(value, str) else str(value)
    return "".join(char for char in text[: limit * 4] if char.isprintable()).strip()[:limit]


def answer_object(value: Any, *, depth: int = 4) -> dict[str, Any]:
    """A JSON object of an answer (a buyer, an address), fit to store as JSON: text made
    printable (`answer_name`), numbers and booleans kept, nesting cut at `depth`; {} for
    anything that is not an object."""
    cleaned = _answer_json(value, depth)
    return cleaned if isinstance(cleaned, dict) else {}


def _answer_json(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, str):
        return answer_name(value, limit=1000)
    if depth <= 0:
        return None
    if isinstance(value, dict):
        return {
            answer_name(key, limit=100): _answer_json(item, depth - 1)
            for key, item in value.items()
            if answer_name(key, limit=100)
        }
    if isinstance(value, list):
        return [_answer_json(item, depth - 1) for item in value[:100]]
    return None


def answer_list(value: Any) -> list[Any]:
    """A JSON array of an answer as a list; [] for null or anything that is not an array."""
    return value if isinstance(value, list) else []


def answer_json(response: Any) -> dict | None:
    """A marketplace answer's JSON object (None: not JSON, absurdly nested, or not an object)."""
    try:
        payload = response.json()
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def answer_rows(container: Any, name: str, *, what: str) -> list[Any]:
    """The array `name` of an answer object: [] when it (or the object) is absent or null.

    Raises `AdapterError` (retryable) when the answer is not an object or `name` is not an
    array: read as "no rows", such an answer would let a poll step past orders unseen.
    """
    if container is None:
        return []
    value = container.get(name) if isinstance(container, dict) else container
    if value is None:
        return []
    if not isinstance(container, dict) or not isinstance(value, list):
        raise AdapterError(
            f"{what}: `{name}` in the answer is not a list", outcome=Outcome.RETRYABLE
        )
    return value


def answer_digest(*parts: Any) -> str:
    """The sha256 hex of the parts, serialised unambiguously: a JSON array of strings with
    ASCII escapes, so any text (a lone surrogate too) can be hashed."""
    text = json.dumps(["" if part is None else str(part) for part in parts])
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def unreadable(body: bytes) -> ChannelEvent:
    """The event of a webhook body that cannot be read: keyed by the body's digest."""
    return ChannelEvent(topic="unreadable", event_key=hashlib.sha256(body).hexdigest())


def _answer_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, float | str | Decimal):
        return None
    text = str(value).strip()
    if not text or len(text) > 50:
        return None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _answers_guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an order call so that an answer it could not read raises `AdapterError`.

    The parsing checks the shapes it reads; this is the last line for a shape nobody
    foresaw (a TypeError deep in a helper, absurd JSON nesting): the call is retried later
    instead of breaking the poll. `AdapterError` itself passes through untouched.
    """
    if getattr(method, "_answers_guarded", False):
        return method

    @functools.wraps(method)
    def guarded(self: "Adapter", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (AdapterError, SoftTimeLimitExceeded):
            # A task's time limit is not the marketplace's answer: its caller stops cleanly.
            raise
        except Exception as exc:
            logger.warning(
                "adapter.answer_unreadable",
                channel_type=self.type,
                call=method.__name__,
                error=type(exc).__name__,
                exc_info=True,
            )
            raise AdapterError(
                f"{self.label} {method.__name__}: the marketplace's answer could not be read "
                f"({type(exc).__name__})",
                outcome=Outcome.RETRYABLE,
            ) from exc

    guarded._answers_guarded = True  # type: ignore[attr-defined]
    return guarded


def _parse_guarded(method: Callable[..., ChannelEvent]) -> Callable[..., ChannelEvent]:
    """Wrap `webhook_parse` so that it never raises: a body it chokes on is `unreadable`."""
    if getattr(method, "_parse_guarded", False):
        return method

    @functools.wraps(method)
    def guarded(
        self: "Adapter", *, body: bytes, headers: dict[str, str] | None = None
    ) -> ChannelEvent:
        try:
            return method(self, body=body, headers=headers)
        except Exception as exc:
            logger.warning(
                "adapter.webhook_unreadable",
                channel_type=self.type,
                error=type(exc).__name__,
                exc_info=True,
            )
            return unreadable(body)

    guarded._parse_guarded = True  # type: ignore[attr-defined]
    return guarded
