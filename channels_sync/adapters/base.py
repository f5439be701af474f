"""The interface every marketplace adapter implements, and what its calls return.

An adapter speaks one marketplace's wire format: request signing, token refresh, the stock
update in the marketplace's batch shape, reading stock back, classifying errors, webhook
verification and parsing (`ChannelEvent`), and the order calls (`OrderRef` for a list of
orders updated in a time range, `MarketOrder` for an order's detail). It never touches the
database: the services hand it credentials and record what comes back. Transport failures
(`core.http.OutboundError`) are turned into a `retryable` `CallResult`, never raised.
"""

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.http import OutboundError, http_session

# Refresh a token this long before it expires.
REFRESH_MARGIN = timedelta(minutes=30)
LISTING_KEY_COLUMNS = (
    "external_item_id",
    "external_variant_id",
    "external_sku",
    "external_location_id",
)
ERROR_EXCERPT = 500


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


@dataclass(frozen=True)
class ItemResult:
    """What happened to one update of a call."""

    listing_id: int
    ok: bool
    error: str = ""
    # A per-item failure is permanent (dead-lettered at once) unless the marketplace says
    # to try again (a per-row rate limit, a busy item).
    retryable: bool = False


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
class ChannelEvent:
    """A verified webhook, parsed: what it is about and the key that makes it unique.

    `event_key` is unique per channel: the marketplace's notification id where it sends one
    (TikTok's `tts_notification_id`), else a digest of (order id, status, update time).
    `topic` is `order` for an order's status change (then `order_id` is set), `other` for
    notifications the product does not act on (stored and marked ignored), `unreadable` for
    a body that is not the marketplace's JSON (its key is a digest of the body).
    """

    topic: str
    event_key: str
    order_id: str = ""
    status: str = ""  # the marketplace's raw status, as notified
    updated_at: datetime | None = None


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
    """One marketplace. Subclasses set the class attributes and implement the methods."""

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

    def __init__(
        self,
        *,
        base_url: str,
        credentials: dict[str, Any],
        auth_base_url: str = "",
        timeout: float | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth_base_url = (auth_base_url or self.default_auth_base_url or base_url).rstrip("/")
        self.credentials = dict(credentials)
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
        """Split updates into calls the marketplace accepts (at most `batch_size` each)."""
        size = max(1, min(batch_size, self.max_batch_size))
        return [list(updates[i : i + size]) for i in range(0, len(updates), size)]

    @abstractmethod
    def push_stock(self, updates: Sequence[StockUpdate]) -> CallResult:
        """Send one batch (as made by `batches`) and classify the answer.

        Never raises for the marketplace's answers or transport failures: those become the
        result's outcome. For `ok` and `partial`, `items` has one result per update.
        """

    @abstractmethod
    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read the quantities of the given listings back from the marketplace.

        Raises `AdapterError` when the call fails; listings the marketplace does not know
        are left out of the answer.
        """

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
        expected = self.webhook_signature(body=body, url=url)
        return hmac.compare_digest(given.encode(), expected.encode())

    webhook_signature_header: ClassVar[str] = "Authorization"
    # What the marketplace wants back for an accepted webhook: (status, body, content type).
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (200, b"", "text/plain")

    @abstractmethod
    def webhook_parse(self, *, body: bytes) -> ChannelEvent:
        """Parse a verified webhook's raw body. Never raises: a body that cannot be read is
        a `ChannelEvent` of topic `unreadable` keyed by a digest of the body."""

    # --- orders ---------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of a marketplace status (None: one the adapter does not know;
        the order services then record it and change nothing)."""

    @abstractmethod
    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until), through all pages of the marketplace's list.

        Raises `AdapterError` when a call fails (classified like a stock call's outcome).
        """

    @abstractmethod
    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The current detail of these orders (batched as the marketplace allows).

        Orders the marketplace does not know are left out. Raises `AdapterError`.
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


def _header(headers: dict[str, str], name: str) -> str:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return ""
