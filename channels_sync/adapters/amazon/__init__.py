"""Amazon Seller Central, through the Selling Partner API (SP-API).

- Auth: Login with Amazon refresh token -> access token (`client.SpApiClient.token_refresh`),
  sent as `x-amz-access-token`; no request signing (`client`).
- Stock: up to `AMAZON_FEED_THRESHOLD` updates go as one patchListingsItem per SKU, paced
  under its 5/s, burst 5 (`listings`); more go as one JSON_LISTINGS_FEED (`feeds`). Both set
  the merchant-fulfilled (`DEFAULT`) quantity; Amazon has no compare-and-set, so
  `StockUpdate.expected` is not sent, and no idempotency key (none exists for these calls:
  every message sets an absolute quantity, so a repeat is harmless).
- Read-back: getListingsItem with `includedData=fulfillmentAvailability`, one SKU a call.
- Orders: polled only (`orders`): Amazon delivers notifications to SQS or EventBridge, never
  to an HTTP endpoint, so every HTTP webhook is refused (see `webhook_verify`).

Listing key: `seller_sku` (stored as the item id). The patch body's `productType` is the
channel option `product_type` ("PRODUCT", the generic type Amazon documents for offer-only
updates, when not set): a channel whose listings need their real product type names it
there. The option `quantity_op` chooses `replace` (the default) or `merge` (Amazon's
2025-06-16 operation that changes `quantity` alone, keeping the offer's handling time and
restock date).
"""

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings

from channels_sync.adapters.amazon.client import SpApiClient
from channels_sync.adapters.amazon.feeds import FEED_MAX_MESSAGES, feed_push, feeds_pending
from channels_sync.adapters.amazon.listings import fetch_quantities, patch_push
from channels_sync.adapters.amazon.orders import (
    ORDER_STATUSES,
    ORDERS_LAG,
    ORDERS_LAG_MARGIN,
    ORDERS_MAX_WINDOW,
    OrdersReader,
    order_status,
    when,
)
from channels_sync.adapters.base import (
    Adapter,
    CallResult,
    ChannelEvent,
    MarketOrder,
    ObservedStock,
    OrderRef,
    OrderStatus,
    Outcome,
    StockReport,
    StockUpdate,
    answer_digest,
    answer_int,
    answer_text,
    stock_observed,
    unreadable,
)

DEFAULT_PRODUCT_TYPE = "PRODUCT"
QUANTITY_OPS = ("replace", "merge")
# SQS notification types read (Notifications API "Notification Type Values").
ORDER_CHANGE = "ORDER_CHANGE"
MFN_QUANTITY_CHANGE = "LISTINGS_ITEM_MFN_QUANTITY_CHANGE"

__all__ = ["ORDER_STATUSES", "AmazonAdapter"]


class AmazonAdapter(Adapter):
    """Amazon Seller Central (SP-API): one seller in one marketplace."""

    type = "amazon"
    label = "Amazon Seller Central"
    credential_fields = (
        "lwa_client_id",
        "lwa_client_secret",
        "refresh_token",
        "seller_id",
        "marketplace_id",
        "endpoint",
        "access_token",
        "access_token_expires_at",
    )
    secret_fields = ("lwa_client_secret", "refresh_token", "access_token")
    required_credentials = (
        "lwa_client_id",
        "lwa_client_secret",
        "refresh_token",
        "seller_id",
        "marketplace_id",
    )
    key_columns: ClassVar[dict[str, str]] = {"seller_sku": "external_item_id"}
    required_keys = ("seller_sku",)
    option_fields = ("product_type", "quantity_op")
    # One call is one feed of up to 5,000 SKUs (a push page); a feed takes up to 25,000.
    default_batch_size = 5000
    max_batch_size = FEED_MAX_MESSAGES
    # One push call is one feed or up to AMAZON_FEED_THRESHOLD paced patches; the patches
    # and every other operation are paced per operation inside the adapter.
    default_rate_per_second = 5.0
    default_burst = 5
    default_auth_base_url = "https://api.amazon.com"
    max_read_batch_size = 10  # one paced getListingsItem per key; burst 10
    webhook_signature_header = ""
    # getOrders lists nothing updated in the last two minutes: polls stop short of it (and
    # of a margin for clocks apart).
    orders_lag_seconds = (ORDERS_LAG + ORDERS_LAG_MARGIN).total_seconds()
    # getOrders' 20-call burst must cover a window's pages: the poll walks hour by hour.
    orders_max_window_seconds = ORDERS_MAX_WINDOW.total_seconds()

    def __init__(self, *, base_url: str, auth_base_url: str = "", **kwargs: Any) -> None:
        super().__init__(
            base_url=base_url,
            auth_base_url=auth_base_url or settings.AMAZON_AUTH_BASE_URL,
            **kwargs,
        )
        endpoint = str(self.credentials.get("endpoint") or "").strip()
        if endpoint:
            # The seller's region (EU, FE) has its own host; the credentials name it.
            self.base_url = endpoint.rstrip("/")
        self.client = SpApiClient(self)
        self.orders = OrdersReader(self, self.client)

    # --- checks -----------------------------------------------------------------------------

    @classmethod
    def credentials_clean(cls, credentials: dict[str, Any]) -> dict[str, Any]:
        """The credentials, checked; `endpoint` must be an http(s) URL with a host."""
        cleaned = super().credentials_clean(credentials)
        endpoint = cleaned.get("endpoint")
        if endpoint is not None:
            parts = urlsplit(str(endpoint))
            if parts.scheme not in ("https", "http") or not parts.netloc:
                raise ValueError("endpoint must be the SP-API host's URL (https://...)")
        return cleaned

    @classmethod
    def options_clean(cls, options: dict[str, Any]) -> dict[str, Any]:
        """`product_type`: a non-empty text of at most 100 characters; `quantity_op`:
        `replace` or `merge`."""
        cleaned = super().options_clean(options)
        product_type = cleaned.get("product_type")
        if product_type is not None and (
            not isinstance(product_type, str) or not answer_text(product_type)
        ):
            raise ValueError("product_type must be Amazon's product type name, e.g. PRODUCT")
        op = cleaned.get("quantity_op")
        if op is not None and op not in QUANTITY_OPS:
            raise ValueError("quantity_op must be replace or merge")
        return cleaned

    @property
    def product_type(self) -> str:
        return answer_text(self.options.get("product_type")) or DEFAULT_PRODUCT_TYPE

    @property
    def quantity_op(self) -> str:
        op = self.options.get("quantity_op")
        return op if op in QUANTITY_OPS else "replace"

    # --- tokens and stock -------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Exchange the refresh token at `{auth}/auth/o2/token` (see `SpApiClient`)."""
        return self.client.token_refresh()

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the quantities: patches up to `AMAZON_FEED_THRESHOLD` SKUs, a feed beyond.

        First the seller's feeds still remembered as live are asked about (`feeds_pending`):
        while one is queued or processing, nothing is sent and the call is `throttled`
        (retry-after `AMAZON_FEED_POLL_SECONDS`, no attempt used), so its older quantities
        can never land after newer ones. A feed is waited for in place at most
        `AMAZON_FEED_MAX_WAIT_SECONDS` (never past `CHANNEL_PUSH_INLINE_WAIT_SECONDS`), then
        left to Amazon and remembered: the call is `throttled` the same way. The memory is
        the shared cache; with the cache down it is this process's (see `inflight`).

        `idempotency_key` is not sent (Amazon takes none; every message sets an absolute
        quantity). `rate_per_second` is the rate Amazon named for the operation that
        decides the call's pace: patchListingsItem, or createFeed for a feed.
        """
        if not updates:
            return CallResult(outcome=Outcome.OK)
        poll_seconds = max(0.0, float(settings.AMAZON_FEED_POLL_SECONDS))
        pending = feeds_pending(self, self.client, poll_seconds=poll_seconds)
        if pending is not None:
            return pending
        skus = {str(update.keys.get("seller_sku", "")) for update in updates}
        if len(skus) > max(1, int(settings.AMAZON_FEED_THRESHOLD)):
            max_wait = min(
                float(settings.AMAZON_FEED_MAX_WAIT_SECONDS),
                float(settings.CHANNEL_PUSH_INLINE_WAIT_SECONDS),
            )
            return feed_push(
                self,
                self.client,
                updates,
                product_type=self.product_type,
                op=self.quantity_op,
                poll_seconds=poll_seconds,
                max_wait=max(0.0, max_wait),
            )
        return patch_push(
            self, self.client, updates, product_type=self.product_type, op=self.quantity_op
        )

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read the merchant-fulfilled quantities back, one paced getListingsItem per SKU."""
        return fetch_quantities(self, self.client, keys)

    # --- webhooks ---------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """'' : Amazon signs no HTTP notification (it sends none, see `webhook_verify`)."""
        return ""

    def webhook_verify(self, *, headers: dict[str, str], body: bytes, url: str = "") -> bool:
        """Refuse every HTTP webhook.

        Amazon delivers notifications only to an SQS queue or an EventBridge bus
        (Notifications API v1, `createDestination`: `resourceSpecification` holds `sqs` or
        `eventBridge`, nothing else), and their authenticity is AWS's (the queue's access
        policy), with no signature in the payload. No secret this product holds could prove
        that an HTTP request to the webhook URL came from Amazon, so none is accepted:
        orders arrive by polling.
        """
        return False

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Read an SP-API notification envelope, as an SQS message body carries it (never
        raises): `ORDER_CHANGE` is an `order` event, `LISTINGS_ITEM_MFN_QUANTITY_CHANGE` a
        `stock` event with the SKU's new merchant-fulfilled quantity, other types `other`,
        anything else `unreadable`. The key is `NotificationMetadata.NotificationId`."""
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):
            return unreadable(body)
        if not isinstance(envelope, dict) or not answer_text(envelope.get("NotificationType")):
            return unreadable(body)
        kind = answer_text(envelope.get("NotificationType"))
        payload = envelope.get("Payload") if isinstance(envelope.get("Payload"), dict) else {}
        metadata = envelope.get("NotificationMetadata")
        notification_id = (
            answer_text(metadata.get("NotificationId")) if isinstance(metadata, dict) else ""
        )
        event_time = when(envelope.get("EventTime"))
        if kind == ORDER_CHANGE:
            change = payload.get("OrderChangeNotification")
            change = change if isinstance(change, dict) else {}
            order_id = answer_text(change.get("AmazonOrderId"))
            if not order_id:
                return unreadable(body)
            summary = change.get("Summary") if isinstance(change.get("Summary"), dict) else {}
            status = answer_text(summary.get("OrderStatus"))
            key = notification_id or answer_digest(
                order_id, status, event_time.isoformat() if event_time else ""
            )
            return ChannelEvent(
                topic="order",
                event_key=key,
                order_id=order_id,
                status=status,
                updated_at=event_time,
            )
        key = notification_id or hashlib.sha256(body).hexdigest()
        if kind == MFN_QUANTITY_CHANGE:
            sku = answer_text(payload.get("Sku"))
            if sku and answer_text(payload.get("FulfillmentChannelCode")) in ("", "DEFAULT"):
                quantity = stock_observed(
                    answer_int(payload.get("Quantity")),
                    channel_type=self.type,
                    keys={"seller_sku": sku},
                )
                return ChannelEvent(
                    topic="stock",
                    event_key=key,
                    updated_at=event_time,
                    stock=(StockReport(keys={"seller_sku": sku}, quantity=quantity),),
                )
        return ChannelEvent(topic="other", event_key=key)

    # --- orders -----------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of an Orders API `OrderStatus` (see `ORDER_STATUSES`)."""
        return order_status(raw_status)

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Merchant-fulfilled orders updated in [since, until) (until cut to two minutes
        and `ORDERS_LAG_MARGIN` ago, as getOrders requires)."""
        return self.orders.updated(since=since, until=until)

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The orders' detail and items (see `OrdersReader.fetch`)."""
        return self.orders.fetch(external_ids)
