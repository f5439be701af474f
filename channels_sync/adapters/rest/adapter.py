"""The custom REST shop adapter: auth, the stock call and its answer, read-back, webhooks."""

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import structlog

from channels_sync.adapters.base import (
    AdapterError,
    CallResult,
    ChannelEvent,
    ItemResult,
    MarketOrder,
    ObservedStock,
    OrderRef,
    OrderStatus,
    Outcome,
    StockUpdate,
    answer_int,
    answer_text,
    stock_observed,
)
from channels_sync.adapters.rest import orders as rest_orders
from channels_sync.adapters.rest.answers import event_parse, item_failures, json_answer
from channels_sync.adapters.rest.auth import (
    CredentialRefused,
    auth_headers,
    credential_problem,
    credentials_missing,
)
from channels_sync.adapters.rest.options import options_check
from channels_sync.adapters.rest.paths import (
    AnswerPath,
    AnswerUnreadable,
    path_parse,
    path_rows,
    path_value,
    template_fill,
    text_fill,
)
from channels_sync.adapters.rest.webhooks import RestWebhooks
from core.http import OutboundError

logger = structlog.get_logger(__name__)


def _quote(value: str) -> str:
    return quote(value, safe="")


class RestAdapter(RestWebhooks):
    """A merchant's own shop (or any system) with a JSON API, configured in `options`."""

    type = "rest"
    label = "Custom REST shop"
    credential_fields = (
        "token",
        "username",
        "password",
        "api_key",
        "hmac_secret",
        "webhook_secret",
    )
    secret_fields = credential_fields
    # Which ones are needed depends on `options.auth`: a missing one refuses the call (auth).
    required_credentials = ()
    # The SKU is the shop's listing id: it is stored as the listing's item id (what makes a
    # listing unique on its channel, with its location).
    key_columns: ClassVar[dict[str, str]] = {
        "sku": "external_item_id",
        "variant_id": "external_variant_id",
        "location": "external_location_id",
    }
    required_keys = ("sku",)
    # The type's maximum is generous: the channel's own `batch_size` says what its shop takes.
    default_batch_size = 50
    max_batch_size = 1000
    # A merchant's own server is rarely sized for bursts: start gently.
    default_rate_per_second = 5.0
    default_burst = 5
    option_fields = ("auth", "api_key_header", "stock", "read", "orders")
    webhook_ack = (200, b'{"received":true}', "application/json")
    max_read_batch_size = 500

    @classmethod
    def options_clean(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options checked, defaults filled in (see `channels_sync.adapters.rest`)."""
        return options_check(options)

    @classmethod
    def credentials_clean(cls, credentials: dict[str, Any]) -> dict[str, Any]:
        """The base checks, and: every credential is text; those sent as header values
        (`token`, `api_key`) are header-safe (`credential_problem`); `username` holds no
        colon (RFC 7617: it ends at the first one)."""
        cleaned = super().credentials_clean(credentials)
        for name, value in cleaned.items():
            problem = credential_problem(name, value)
            if problem:
                raise ValueError(problem)
        return cleaned

    @classmethod
    def settings_check(cls, options: dict[str, Any], credentials: dict[str, Any]) -> None:
        """The credentials `options.auth` needs are all there."""
        mode = str(options.get("auth") or "")
        missing = credentials_missing(mode, credentials)
        if missing:
            raise ValueError(f"auth {mode} needs the credential {', '.join(missing)}")

    @property
    def conf(self) -> dict[str, Any]:
        """The channel's options, checked (`AdapterError` permanent when they do not hold)."""
        cached = self.__dict__.get("_conf")
        if cached is None:
            try:
                cached = options_check(self.options)
            except ValueError as exc:
                raise AdapterError(f"invalid options: {exc}", outcome=Outcome.PERMANENT) from None
            self.__dict__["_conf"] = cached
        return cached

    # --- credentials --------------------------------------------------------------------------

    def token_needs_refresh(self, now: datetime | None = None) -> bool:
        return False  # nothing to refresh: a refused credential needs new credentials

    def token_refresh(self) -> dict[str, Any]:
        raise AdapterError(
            "a custom REST shop's credentials cannot be refreshed: enter new ones",
            outcome=Outcome.AUTH,
        )

    def auth_headers(self, body: bytes) -> dict[str, str]:
        """The headers that authenticate a call with this body; `AdapterError` (auth) when a
        credential the auth mode needs is missing or unusable (`rest.auth.auth_headers`)."""
        try:
            return auth_headers(self.conf, self.credentials, body)
        except CredentialRefused as exc:
            raise AdapterError(str(exc), outcome=Outcome.AUTH) from None

    # --- calls --------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        idempotency_key: str = "",
    ) -> tuple[Any, int]:
        """Send one call (JSON body, the auth headers); raises `OutboundError`, and
        `AdapterError` for options or credentials that cannot make it."""
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Accept": "application/json", **self.auth_headers(raw)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            # Stripe's convention (https://docs.stripe.com/api/idempotent_requests).
            headers["Idempotency-Key"] = idempotency_key
        return self._request(
            method,
            f"{self.base_url}{path}",
            params=query or None,
            data=raw or None,
            headers=headers,
        )

    @staticmethod
    def outcome_of(status: int) -> Outcome | None:
        """How a call's HTTP status ends it (None: 2xx, read the answer)."""
        if 200 <= status < 300:
            return None
        if status == 429:
            return Outcome.THROTTLED
        if status in (401, 403):
            return Outcome.AUTH
        if status >= 500 or status == 408:
            return Outcome.RETRYABLE
        return Outcome.PERMANENT

    def failed(self, response: Any, what: str) -> AdapterError:
        """The `AdapterError` of a call that failed as a whole."""
        outcome = self.outcome_of(response.status_code) or Outcome.RETRYABLE
        return AdapterError(
            f"{what}: HTTP {response.status_code} {self.excerpt(response.content)}",
            outcome=outcome,
            retry_after=(
                self.retry_after_seconds(response.headers.get("Retry-After"))
                if outcome == Outcome.THROTTLED
                else None
            ),
        )

    # --- stock --------------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """One listing a call in mode `per_item`, else chunks of `batch_size`."""
        try:
            per_item = self.conf["stock"]["mode"] == "per_item"
        except AdapterError:
            per_item = True  # push_stock refuses each call with the options' error
        return super().batches(updates, 1 if per_item else batch_size)

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Send one call (one listing in mode `per_item`, a list in mode `batch`) and
        classify the answer (see the package docstring). Never raises."""
        if not updates:
            return CallResult(outcome=Outcome.OK)
        started = time.perf_counter()
        try:
            stock = self.conf["stock"]
            if stock["mode"] == "per_item" and len(updates) != 1:
                return CallResult(
                    outcome=Outcome.PERMANENT,
                    error="mode per_item sends one listing a call: split with batches()",
                )
            path, body = self._stock_request(stock, updates, idempotency_key)
            response, latency_ms = self.call(
                stock["method"], path, body=body, idempotency_key=idempotency_key
            )
        except OutboundError as exc:
            return self.transport_failure(exc, int((time.perf_counter() - started) * 1000))
        except AdapterError as exc:
            return CallResult(outcome=exc.outcome, error=str(exc)[:500])
        except Exception as exc:
            # Nothing foreseen: the call may not have gone out. Retried with backoff, and
            # dead-lettered when it keeps failing; never an exception out of the push.
            return self._unforeseen(exc, "request")
        outcome = self.outcome_of(response.status_code)
        if outcome is not None:
            return self.call_failed(
                outcome, response, error=self.excerpt(response.content), latency_ms=latency_ms
            )
        try:
            failures = item_failures(stock, response, updates)
        except AnswerUnreadable as exc:
            logger.warning("adapter.rest.answer_unreadable", error=str(exc)[:300])
            return CallResult(
                outcome=Outcome.RETRYABLE,
                http_status=response.status_code,
                error=f"{exc} ({self.excerpt(response.content)[:300]})"[:500],
                latency_ms=latency_ms,
            )
        except Exception as exc:
            return self._unforeseen(exc, "answer", http_status=response.status_code)
        items = [
            ItemResult(listing_id=u.listing_id, ok=True)
            if i not in failures
            else ItemResult(listing_id=u.listing_id, ok=False, error=failures[i][:500])
            for i, u in enumerate(updates)
        ]
        return CallResult(
            outcome=Outcome.PARTIAL if failures else Outcome.OK,
            http_status=response.status_code,
            items=items,
            error="; ".join(sorted(set(failures.values())))[:500] if failures else "",
            latency_ms=latency_ms,
        )

    def _unforeseen(self, exc: Exception, stage: str, *, http_status: int | None = None):
        logger.warning(
            "adapter.rest.push_failed",
            stage=stage,
            error=type(exc).__name__,
            http_status=http_status,
            exc_info=True,
        )
        return CallResult(
            outcome=Outcome.RETRYABLE,
            http_status=http_status,
            error=f"{stage}: unexpected {type(exc).__name__}: {str(exc)[:300]}"[:500],
        )

    @staticmethod
    def _item_values(update: StockUpdate, idempotency_key: str) -> dict[str, Any]:
        keys = update.keys
        return {
            "sku": keys.get("sku"),
            "variant_id": keys.get("variant_id"),
            "location": keys.get("location"),
            "quantity": max(int(update.quantity), 0),
            "expected": update.expected,
            "idempotency_key": idempotency_key,
        }

    def _stock_request(
        self, stock: dict[str, Any], updates: Sequence[StockUpdate], key: str
    ) -> tuple[str, Any]:
        if stock["mode"] == "per_item":
            values = self._item_values(updates[0], key)
            return text_fill(stock["path"], values, _quote), template_fill(stock["body"], values)
        items = [template_fill(stock["item"], self._item_values(u, key)) for u in updates]
        envelope = {"items": items, "count": len(items), "idempotency_key": key}
        path = text_fill(stock["path"], envelope, _quote)
        return path, template_fill(stock["body"], envelope)

    def read_batches(self, keys: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
        """One listing a call in read mode `per_item`, else `read.batch_size` at most."""
        try:
            read = self.conf["read"]
        except AdapterError:
            return super().read_batches(keys, 1)
        limit = 1 if read["mode"] == "per_item" else min(size, read["batch_size"])
        return super().read_batches(keys, limit)

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read quantities back (per listing, or per `read.batch_size` SKUs). A listing the
        shop answers 404 for, or leaves out of a batch answer, is left out."""
        read = self.conf["read"]
        quantity_path = path_parse(read["quantity"], where="options.read.quantity")
        observed = []
        for group in self.read_batches(list(keys), read.get("batch_size", 1)):
            if read["mode"] == "per_item":
                values: dict[str, Any] = {name: group[0].get(name) for name in self.key_columns}
            else:
                values = {"skus": [k.get("sku") for k in group]}
            answer = self._read_call(read, values, quantity_path)
            if answer is None:
                continue
            if read["mode"] == "per_item":
                rows = [(group[0], path_value(answer, quantity_path))]
            else:
                sku_path = path_parse(read["sku"], where="options.read.sku")
                wanted = {str(k.get("sku")): k for k in group}
                rows = []
                for row in path_rows(answer, sku_path):
                    sku = answer_text(path_value(row, sku_path), limit=200)
                    if sku in wanted:
                        rows.append((wanted.pop(sku), path_value(row, quantity_path)))
            for key, raw in rows:
                quantity = answer_int(raw)
                if quantity is None:
                    raise AdapterError(
                        f"read-back: answer path `{quantity_path.text}` is not a whole number "
                        f"for SKU {str(key.get('sku'))[:60]}",
                        outcome=Outcome.RETRYABLE,
                    )
                quantity = stock_observed(quantity, channel_type=self.type, keys=key)
                if quantity is not None:
                    observed.append(ObservedStock(keys=dict(key), quantity=quantity))
        return observed

    def _read_call(self, read: dict[str, Any], values: dict[str, Any], path: AnswerPath) -> Any:
        query = {name: text_fill(t, values) for name, t in (read.get("query") or {}).items()}
        body = template_fill(read["body"], values) if "body" in read else None
        try:
            response, _ = self.call(
                read["method"], text_fill(read["path"], values, _quote), body=body, query=query
            )
        except OutboundError as exc:
            raise AdapterError(f"read-back: {exc}", outcome=Outcome.RETRYABLE) from None
        if response.status_code == 404 and read["mode"] == "per_item":
            return None  # the shop does not know this listing
        if self.outcome_of(response.status_code) is not None:
            raise self.failed(response, "read-back")
        try:
            return json_answer(response, path)
        except AnswerUnreadable as exc:
            raise AdapterError(f"read-back: {exc}", outcome=Outcome.RETRYABLE) from None

    # --- webhooks -----------------------------------------------------------------------------

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Read `{"id", "type", "created", "data"}` (see the package docstring)."""
        return event_parse(body, orders=self._orders_configured())

    def _orders_configured(self) -> bool:
        try:
            return "orders" in self.conf
        except AdapterError:
            return False

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """Our status spelled as ours (the channel's `status_map` maps the shop's own)."""
        try:
            return OrderStatus(str(raw_status or "").strip())
        except ValueError:
            return None

    def status_of(self, raw_status: str) -> OrderStatus | None:
        """The channel's `orders.status_map` reading of a shop status (None: unknown, or one
        that says nothing about stock)."""
        mapped = self.conf.get("orders", {}).get("status_map", {}).get(raw_status)
        return OrderStatus(mapped) if mapped else None

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Orders updated in [since, until) (none when `orders` is not configured)."""
        if "orders" not in self.conf:
            return []
        return rest_orders.orders_updated(self, since=since, until=until)

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """Each order's detail, one call per order (none when `orders` is not configured)."""
        if "orders" not in self.conf:
            return []
        return rest_orders.orders_fetch(self, external_ids)
