"""Shopee Open Platform v2: signed stock updates, stock read-back, token refresh, webhooks,
orders.

Every call carries the common parameters in the query string (`partner_id`, `timestamp` in
Unix seconds, `sign`, and for shop calls `access_token` and `shop_id`); the POST body holds
only business parameters. `sign` is the lowercase hex HMAC-SHA256 of
`partner_id + path + timestamp [+ access_token + shop_id]` keyed with the partner key
(marketplaces.md 1.2). Shopee answers errors as a string in the body's `error` field (empty
on success); the HTTP status convention is undocumented, so the body is read first and the
status only decides when the body says nothing.
"""

import hashlib
import hmac
import json
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

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
    answer_quantity,
    answer_rows,
    answer_text,
    stock_observed,
    unreadable,
)
from channels_sync.adapters.shopee_errors import (
    NOT_FOUND_ERRORS,
    PARTIAL_ERROR,
    SIGN_ERROR,
    classify,
    error_code,
    pause_seconds,
)
from core.http import OutboundError

UPDATE_STOCK_PATH = "/api/v2/product/update_stock"
MODEL_LIST_PATH = "/api/v2/product/get_model_list"
ITEM_BASE_INFO_PATH = "/api/v2/product/get_item_base_info"
ORDER_LIST_PATH = "/api/v2/order/get_order_list"
ORDER_DETAIL_PATH = "/api/v2/order/get_order_detail"
REFRESH_PATH = "/api/v2/auth/access_token/get"
CODE_EXCHANGE_PATH = "/api/v2/auth/token/get"

MODELS_PER_CALL = 50  # `stock_list` holds 1-50 models of one item
ITEMS_PER_READ = 50  # `item_id_list` of get_item_base_info
# v2.order.get_order_list (https://open.shopee.com/documents/v2/v2.order.get_order_list?
# module=94&type=1): `page_size` 1-100, `time_from`/`time_to` at most 15 days apart;
# v2.order.get_order_detail (.../v2.order.get_order_detail?module=94&type=1): `order_sn_list`
# holds 1-50 order numbers joined by commas.
ORDER_PAGE_SIZE = 100
ORDER_RANGE_SECONDS = 15 * 24 * 3600
ORDERS_PER_DETAIL = 50
# A guard against a cursor that never ends (100 000 orders in one range at 100 a page).
ORDER_PAGES_MAX = 1000
# get_order_detail returns these only when asked. `order_sn`, `order_status`, `currency`,
# `create_time` and `update_time` come back always (they are not in the optional list).
ORDER_DETAIL_FIELDS = (
    "buyer_user_id,buyer_username,recipient_address,item_list,pay_time,total_amount,payment_method"
)

# Push (webhook) codes, from the Push Mechanism guide (open.shopee.com, "Push Mechanism" >
# push list): 3 is "order_status_push" (data: ordersn, status, update_time, ...).
PUSH_ORDER_STATUS = 3
# 8 is "reserved_stock_change_push": a model's reserved stock changed (an order placed or
# cancelled, a promotion). Its `data` names `item_id` and the model (`variation_id`; some
# hosts `model_id`) with `action` and `changed_values` [{name, old, new}] of the reserved
# stock, not the seller stock `update_stock` sets (field names from community handlers: the
# guide lists the code, not the body), so the stock is read back (`fetch_stock`).
PUSH_RESERVED_STOCK_CHANGE = 8
# An `ordersn` is 14 characters ("220815ABCDEFGH"); anything much longer is not one.
MAX_IDENTIFIER = 64

# Shopee order statuses (the `order_status` of v2.order.get_order_detail and the
# order_status_push, https://open.shopee.com/documents/v2/v2.order.get_order_detail?module=94&type=1)
# and what each means for stock.
ORDER_STATUSES: dict[str, OrderStatus | None] = {
    "UNPAID": OrderStatus.PENDING_PAYMENT,
    # PENDING (returned only with `request_order_status_pending=true`) is an order waiting
    # for a payment or an antifraud check to finish: not paid yet.
    "PENDING": OrderStatus.PENDING_PAYMENT,
    "READY_TO_SHIP": OrderStatus.PAID,
    # INVOICE_PENDING (Brazil) is a paid order waiting for the seller's fiscal invoice before
    # it can be arranged for shipment: paid, not yet ready to ship.
    "INVOICE_PENDING": OrderStatus.PAID,
    # PROCESSED: shipment arranged (tracking number issued); RETRY_SHIP: the first pickup
    # failed and the parcel waits for another one. Both still sit with the seller.
    "PROCESSED": OrderStatus.READY_TO_SHIP,
    "RETRY_SHIP": OrderStatus.READY_TO_SHIP,
    "SHIPPED": OrderStatus.SHIPPED,
    # TO_CONFIRM_RECEIVE: delivered, the buyer has not confirmed receipt. The stock left
    # with the parcel, so it counts as shipped, not completed (the buyer may still return).
    "TO_CONFIRM_RECEIVE": OrderStatus.SHIPPED,
    "COMPLETED": OrderStatus.COMPLETED,
    # IN_CANCEL is the buyer's cancellation *request*: the seller may still refuse it and
    # ship, so the order keeps its stock until CANCELLED arrives.
    "IN_CANCEL": None,
    "CANCELLED": OrderStatus.CANCELLED,
    # TO_RETURN: the buyer asked for a return/refund after delivery.
    "TO_RETURN": OrderStatus.RETURNED,
}

# Per-model `failed_reason` texts that mean "busy, send again" rather than "refused".
RETRYABLE_REASON_MARKERS = ("try again", "too many", "busy", "system error", "timeout")


def hmac_sha256_hex(key: str, message: str | bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of `message` keyed with `key` (UTF-8)."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(key.encode("utf-8"), data, hashlib.sha256).hexdigest()


def shop_sign(
    *,
    partner_key: str,
    partner_id: int | str,
    path: str,
    timestamp: int,
    access_token: str,
    shop_id: int | str,
) -> str:
    """Return the `sign` of a shop API call: partner_id+path+timestamp+access_token+shop_id."""
    base = f"{partner_id}{path}{timestamp}{access_token}{shop_id}"
    return hmac_sha256_hex(partner_key, base)


def public_sign(*, partner_key: str, partner_id: int | str, path: str, timestamp: int) -> str:
    """Return the `sign` of a public API call (auth endpoints): partner_id+path+timestamp."""
    return hmac_sha256_hex(partner_key, f"{partner_id}{path}{timestamp}")


def push_signature(*, partner_key: str, url: str, body: bytes) -> str:
    """Return the `Authorization` value of a push: HMAC over `url + "|" + raw body`.

    The raw bytes as received: re-serialising the JSON changes them and breaks the check.
    """
    return hmac_sha256_hex(partner_key, url.encode("utf-8") + b"|" + body)


def wire_id(value: Any) -> int | str:
    """An id as Shopee's JSON wants it: an integer when it is all digits."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


class ShopeeAdapter(Adapter):
    """Shopee Open Platform v2 (shop API).

    Keys: `item_id`, `model_id` ("0" for an item without models) and optionally
    `location_id` (multi-warehouse sellers; sent inside `seller_stock`). A call updates one
    item and at most 50 of its models; `batches` groups accordingly.
    """

    type = "shopee"
    label = "Shopee"
    credential_fields = (
        "partner_id",
        "partner_key",
        "shop_id",
        "access_token",
        "refresh_token",
        "access_token_expires_at",
    )
    required_credentials = ("partner_id", "partner_key", "shop_id")
    secret_fields: ClassVar[tuple[str, ...]] = ("partner_key", "access_token", "refresh_token")
    key_columns = {
        "item_id": "external_item_id",
        "model_id": "external_variant_id",
        "location_id": "external_location_id",
    }
    required_keys = ("item_id", "model_id")
    default_batch_size = MODELS_PER_CALL
    max_batch_size = MODELS_PER_CALL
    # Shopee publishes no numeric limit (marketplaces.md 1.5: UNCONFIRMED); 10 calls a second
    # with a burst of 10 is a conservative guess, adjustable per channel.
    default_rate_per_second = 10.0
    default_burst = 10
    default_auth_base_url = ""  # the auth endpoints live on the API host
    webhook_signature_header = "Authorization"
    webhook_key_fields = ("partner_key",)

    # --- signing --------------------------------------------------------------------------------

    def _partner(self) -> tuple[str, str]:
        return str(self.credentials.get("partner_id", "")).strip(), str(
            self.credentials.get("partner_key", "")
        )

    def shop_params(self, path: str, timestamp: int | None = None) -> dict[str, str]:
        """The signed common query parameters of a shop API call to `path`."""
        partner_id, partner_key = self._partner()
        timestamp = int(time.time()) if timestamp is None else timestamp
        access_token = str(self.credentials.get("access_token", ""))
        shop_id = str(self.credentials.get("shop_id", "")).strip()
        sign = shop_sign(
            partner_key=partner_key,
            partner_id=partner_id,
            path=path,
            timestamp=timestamp,
            access_token=access_token,
            shop_id=shop_id,
        )
        return {
            "partner_id": partner_id,
            "timestamp": str(timestamp),
            "access_token": access_token,
            "shop_id": shop_id,
            "sign": sign,
        }

    def public_params(self, path: str, timestamp: int | None = None) -> dict[str, str]:
        """The signed common query parameters of a public (auth) API call to `path`."""
        partner_id, partner_key = self._partner()
        timestamp = int(time.time()) if timestamp is None else timestamp
        sign = public_sign(
            partner_key=partner_key, partner_id=partner_id, path=path, timestamp=timestamp
        )
        return {"partner_id": partner_id, "timestamp": str(timestamp), "sign": sign}

    # --- stock ----------------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """Group updates by item (one item per call), at most `batch_size` models a call.

        A model's updates (one per `location_id` of a multi-location seller) stay in one
        call: they make one `stock_list` entry. Items keep the order in which they first
        appear; so do the models within an item.
        """
        size = max(1, min(batch_size, self.max_batch_size, MODELS_PER_CALL))
        by_item: dict[str, dict[str, list[StockUpdate]]] = {}
        for update in updates:
            models = by_item.setdefault(str(update.keys.get("item_id", "")).strip(), {})
            models.setdefault(_model_of(update), []).append(update)
        batches = []
        for models in by_item.values():
            groups = list(models.values())
            for start in range(0, len(groups), size):
                batches.append(
                    [update for group in groups[start : start + size] for update in group]
                )
        return batches

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set the stock of one item's models with `product/update_stock`.

        The batch must hold one item and at most 50 models (as `batches` makes them); any
        other batch is answered `permanent` without a call. A model's updates go as one
        `stock_list` entry, a `seller_stock` row per location (Shopee refuses a model named
        twice in one `stock_list`). Models named in `failure_list` fail with Shopee's
        `failed_reason`; the rest of the batch applied. Error codes are read without their
        module prefix (`product.error_busi_update_stock_failed`).
        """
        if not updates:
            return CallResult(outcome=Outcome.OK)
        items = {str(update.keys.get("item_id", "")).strip() for update in updates}
        if len(items) != 1 or len({_model_of(update) for update in updates}) > MODELS_PER_CALL:
            return CallResult(
                outcome=Outcome.PERMANENT,
                error="a Shopee stock call holds one item_id and at most 50 models",
            )
        body = {"item_id": wire_id(items.pop()), "stock_list": stock_list(updates)}
        url = self.base_url + UPDATE_STOCK_PATH
        started = time.perf_counter()
        try:
            response, latency_ms = self._request(
                "POST",
                url,
                params=self.shop_params(UPDATE_STOCK_PATH),
                data=json.dumps(body, separators=(",", ":")),
                headers={"Content-Type": "application/json"},
            )
        except OutboundError as exc:
            return self.transport_failure(exc, int((time.perf_counter() - started) * 1000))
        status = response.status_code
        payload = answer_json(response)
        error = error_code(payload.get("error") or "") if payload is not None else ""
        answer = payload.get("response") if payload is not None else None
        answer = answer if isinstance(answer, dict) else {}
        failure_list = answer.get("failure_list") or []
        if payload is not None and 200 <= status < 300 and error in ("", PARTIAL_ERROR):
            return self._item_results(updates, payload, answer, status, latency_ms)
        if payload is not None and error == PARTIAL_ERROR and failure_list:
            return self._item_results(updates, payload, answer, status, latency_ms)
        return self._failure(response, payload, latency_ms)

    def _item_results(
        self,
        updates: Sequence[StockUpdate],
        payload: dict,
        answer: dict,
        status: int,
        latency_ms: int,
    ) -> CallResult:
        """One result per update from `success_list` / `failure_list`.

        A model absent from both lists applied when the call reported no error; when it
        reported `error_busi_update_stock_failed` the model is not known to have applied, so
        it fails with the call's message.
        """
        error = str(payload.get("error") or "")
        partial = error_code(error) == PARTIAL_ERROR
        message = str(payload.get("message") or error)
        failed: dict[str, str] = {}
        for row in answer.get("failure_list") or []:
            if isinstance(row, dict):
                reason = str(row.get("failed_reason") or "stock update failed")
                failed[str(row.get("model_id", 0))] = reason
        succeeded = {
            str(row.get("model_id", 0))
            for row in answer.get("success_list") or []
            if isinstance(row, dict)
        }
        results = []
        for update in updates:
            model = str(wire_id(update.keys.get("model_id") or "0"))
            if model in failed:
                reason = failed[model]
                results.append(
                    ItemResult(
                        update.listing_id,
                        ok=False,
                        error=self.excerpt(reason),
                        retryable=_reason_is_retryable(reason),
                    )
                )
            elif not partial or model in succeeded:
                results.append(ItemResult(update.listing_id, ok=True))
            else:
                results.append(ItemResult(update.listing_id, ok=False, error=self.excerpt(message)))
        all_ok = all(result.ok for result in results)
        return CallResult(
            outcome=Outcome.OK if all_ok else Outcome.PARTIAL,
            http_status=status,
            items=results,
            error="" if all_ok else self.excerpt(f"{error}: {message}"),
            latency_ms=latency_ms,
        )

    def _failure(self, response: Any, payload: dict | None, latency_ms: int) -> CallResult:
        """Classify an answer that failed as a whole."""
        status = response.status_code
        error = str(payload.get("error") or "") if payload is not None else ""
        message = str(payload.get("message") or "") if payload is not None else ""
        text = self.excerpt(f"{error}: {message}" if error else response.text)
        outcome, expired = classify(status, error, message)
        if outcome == Outcome.AUTH and error_code(error) == SIGN_ERROR:
            text = self.excerpt(f"signature refused ({error}: {message})")
        result = self.call_failed(
            outcome, response, error=text, latency_ms=latency_ms, token_expired=expired
        )
        pause = pause_seconds(error, message)
        if pause is not None:
            result.retry_after = pause  # holiday mode: the whole shop, for hours or days
        return result

    max_read_batch_size = ITEMS_PER_READ

    def read_batches(self, keys: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
        """One group per item with models (`get_model_list` reads one item), and groups of
        at most 50 items without models (`get_item_base_info`); at most `size` keys each."""
        size = max(1, min(size, ITEMS_PER_READ))
        with_models: dict[str, list[dict[str, str]]] = {}
        plain: list[dict[str, str]] = []
        for key in keys:
            model = str(key.get("model_id") or "0").strip()
            if model in ("", "0"):
                plain.append(key)
            else:
                with_models.setdefault(str(key.get("item_id", "")).strip(), []).append(key)
        groups = [
            models[start : start + size]
            for models in with_models.values()
            for start in range(0, len(models), size)
        ]
        groups.extend(plain[start : start + size] for start in range(0, len(plain), size))
        return groups

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read quantities back: `get_model_list` per item with models, `get_item_base_info`
        (50 ids a call) for items without.

        The quantity is the sum of `stock_info_v2.seller_stock[].stock` (only the listing's
        `location_id` entry when it names one): the field `update_stock` writes, so a read
        compares like with like. `summary_info.total_available_stock` (which also counts
        Shopee-warehouse stock) is used only when `seller_stock` is absent. Items Shopee does
        not know are left out.
        """
        with_models: dict[str, list[dict[str, str]]] = {}
        without_models: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            item = str(key.get("item_id", "")).strip()
            model = str(key.get("model_id") or "0").strip()
            target = without_models if model in ("", "0") else with_models
            target.setdefault(item, []).append(key)

        observed: list[ObservedStock] = []
        for item, wanted in with_models.items():
            payload = self._read(MODEL_LIST_PATH, {"item_id": item})
            if payload is None:
                continue
            models = {
                str(row.get("model_id")): row
                for row in (payload.get("response") or {}).get("model") or []
                if isinstance(row, dict)
            }
            for key in wanted:
                row = models.get(str(wire_id(key.get("model_id"))))
                quantity = _quantity(row, key.get("location_id")) if row else None
                quantity = stock_observed(quantity, channel_type=self.type, keys=key)
                if quantity is not None:
                    observed.append(ObservedStock(keys=dict(key), quantity=quantity))

        item_ids = list(without_models)
        for start in range(0, len(item_ids), ITEMS_PER_READ):
            chunk = item_ids[start : start + ITEMS_PER_READ]
            payload = self._read(ITEM_BASE_INFO_PATH, {"item_id_list": ",".join(chunk)})
            if payload is None:
                continue
            found = {
                str(row.get("item_id")): row
                for row in (payload.get("response") or {}).get("item_list") or []
                if isinstance(row, dict)
            }
            for item in chunk:
                row = found.get(str(wire_id(item)))
                for key in without_models[item]:
                    quantity = _quantity(row, key.get("location_id")) if row else None
                    quantity = stock_observed(quantity, channel_type=self.type, keys=key)
                    if quantity is not None:
                        observed.append(ObservedStock(keys=dict(key), quantity=quantity))
        return observed

    def _read(self, path: str, params: dict[str, str]) -> dict | None:
        """GET a product read; None when Shopee does not know the item. Raises AdapterError."""
        try:
            response, _latency = self._request(
                "GET", self.base_url + path, params={**params, **self.shop_params(path)}
            )
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        payload = answer_json(response)
        error = str(payload.get("error") or "") if payload is not None else ""
        if payload is not None and error_code(error) in NOT_FOUND_ERRORS:
            return None
        if payload is not None and not error and 200 <= response.status_code < 300:
            return payload
        message = str(payload.get("message") or "") if payload is not None else ""
        outcome, expired = classify(response.status_code, error, message)
        retry_after = None
        if outcome == Outcome.THROTTLED:
            retry_after = self.retry_after_seconds(response.headers.get("Retry-After"))
        detail = f"{error}: {message}" if error else response.text
        raise AdapterError(
            self.excerpt(f"Shopee {path} answered {response.status_code} {detail}"),
            outcome=outcome,
            token_expired=expired,
            retry_after=retry_after,
        )

    # --- tokens ---------------------------------------------------------------------------------

    def token_refresh(self) -> dict[str, Any]:
        """Trade the refresh token for a new pair at `auth/access_token/get`.

        Shopee's refresh token is single use: the answer's new refresh token replaces it
        (the old one is dead from now on), so the caller must store the returned credentials
        before anything else can fail.
        """
        refresh = self.credentials.get("refresh_token")
        if not refresh:
            raise AdapterError("no refresh_token to refresh with", outcome=Outcome.AUTH)
        return self._token_call(REFRESH_PATH, {"refresh_token": refresh}, "token refresh")

    def token_get(self, code: str) -> dict[str, Any]:
        """Trade a seller authorisation `code` (single use, 10 minutes) for the first tokens.

        Same answer and errors as `token_refresh`.
        """
        if not code:
            raise AdapterError("no authorisation code", outcome=Outcome.AUTH)
        return self._token_call(CODE_EXCHANGE_PATH, {"code": code}, "token exchange")

    def _token_call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        body = {
            **body,
            "partner_id": wire_id(self.credentials.get("partner_id", "")),
            "shop_id": wire_id(self.credentials.get("shop_id", "")),
        }
        try:
            response, _latency = self._request(
                "POST",
                self.auth_base_url + path,
                params=self.public_params(path),
                data=json.dumps(body, separators=(",", ":")),
                headers={"Content-Type": "application/json"},
            )
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        payload = answer_json(response)
        error = str(payload.get("error") or "") if payload is not None else ""
        status = response.status_code
        if payload is None or error or not 200 <= status < 300:
            message = str(payload.get("message") or "") if payload is not None else ""
            outcome, _expired = classify(status, error, message)
            # Any refusal of the call itself (a bad or spent token or code, a wrong shop or
            # partner) needs a new authorisation; only throttles and server trouble are worth
            # retrying.
            if outcome not in (Outcome.RETRYABLE, Outcome.THROTTLED):
                outcome = Outcome.AUTH
            detail = f"{error}: {message}" if error else response.text
            raise AdapterError(
                self.excerpt(f"Shopee {what} answered {status} {detail}"), outcome=outcome
            )
        access = payload.get("access_token")
        if not access:
            raise AdapterError(f"Shopee {what} answered no access_token")
        credentials = dict(self.credentials)
        credentials["access_token"] = access
        credentials["refresh_token"] = payload.get("refresh_token") or body.get("refresh_token")
        lifetime = payload.get("expire_in")
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool):
            credentials["access_token_expires_at"] = self.expires_iso(float(lifetime))
        else:
            credentials.pop("access_token_expires_at", None)
        self.credentials = {key: value for key, value in credentials.items() if value}
        return dict(self.credentials)

    # --- webhooks -------------------------------------------------------------------------------

    def webhook_signature(self, *, body: bytes, url: str = "") -> str:
        """The `Authorization` Shopee sends: HMAC over the callback URL, "|" and the raw body.

        Raises `ValueError` without `url`: Shopee signs the URL it called, so a check
        without it could never pass.
        """
        if not url:
            raise ValueError("a Shopee push signature covers the callback URL: pass url")
        return push_signature(partner_key=self._partner()[1], url=url, body=body)

    # Shopee wants a 2xx with an EMPTY body; anything else counts as a failed push, is
    # retried, and a low success rate disables the subscription (Push Mechanism guide).
    webhook_ack: ClassVar[tuple[int, bytes, str]] = (200, b"", "text/plain")

    def webhook_parse(self, *, body: bytes, headers: dict[str, str] | None = None) -> ChannelEvent:
        """Parse a verified push: `{"data": {...}, "shop_id", "code", "timestamp"}`.

        Code 3 (order status) becomes topic `order` with the order's `ordersn`, raw `status`
        and `update_time`; code 8 (reserved stock change) topic `stock` naming the item and
        model, without a quantity (the push carries reserved stock, not seller stock: the
        stock is read back); other codes are `other`; a body that is not such an object (or a
        code 3 push without `ordersn`/`status`) is `unreadable`, keyed by a digest of the
        body. Shopee sends no event id, so the key is a sha256 of (shop_id, code, ordersn,
        status, update_time): a redelivery of the same change gets the same key, whatever
        its top-level `timestamp`. Never raises.

        Pushes are registered per partner app, not per shop: a push naming another shop than
        the channel's `shop_id` is `other` (keyed the same way), never this channel's order.
        """
        try:
            message = json.loads(body)
        except (ValueError, RecursionError):  # bad JSON or UTF-8; absurd nesting
            message = None
        data = message.get("data") if isinstance(message, dict) else None
        code = answer_int(message.get("code")) if isinstance(message, dict) else None
        if not isinstance(data, dict) or code is None:
            return unreadable(body)
        shop_id = answer_text(message.get("shop_id"))
        order_sn = _identifier(data.get("ordersn") or data.get("order_sn"))
        status = _identifier(data.get("status"))
        update_time = answer_int(data.get("update_time"))
        own_shop = answer_text(self.credentials.get("shop_id"))
        if code == PUSH_RESERVED_STOCK_CHANGE:
            key = answer_digest(
                shop_id, code, _canonical(data), answer_text(message.get("timestamp"))
            )
            item_id = answer_text(data.get("item_id"))
            model_id = answer_text(data.get("variation_id", data.get("model_id"))) or "0"
            if not item_id or (message.get("shop_id") is not None and shop_id != own_shop):
                return ChannelEvent(topic="other", event_key=key)
            return ChannelEvent(
                topic="stock",
                event_key=key,
                updated_at=_moment(answer_int(message.get("timestamp"))),
                stock=(StockReport(keys={"item_id": item_id, "model_id": model_id}),),
            )
        if code != PUSH_ORDER_STATUS:
            # Other pushes (tracking number, shop authorisation, reserved stock...) need not
            # carry an order or an update time: their whole `data` and `timestamp` tell one
            # push from another, the same fields as a redelivery repeats.
            key = answer_digest(
                shop_id, code, _canonical(data), answer_text(message.get("timestamp"))
            )
            return ChannelEvent(topic="other", event_key=key, order_id=order_sn, status=status)
        if not order_sn or not status:
            return unreadable(body)
        key = answer_digest(shop_id, code, order_sn, status, update_time)
        if message.get("shop_id") is not None and own_shop and shop_id != own_shop:
            return ChannelEvent(topic="other", event_key=key)
        updated_at = _moment(update_time)
        return ChannelEvent(
            topic="order", event_key=key, order_id=order_sn, status=status, updated_at=updated_at
        )

    # --- orders ---------------------------------------------------------------------------------

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of a Shopee `order_status` (see `ORDER_STATUSES`).

        None for IN_CANCEL (a request that says nothing about stock yet) and for a status
        Shopee has not documented.
        """
        return ORDER_STATUSES.get(str(raw_status or "").strip().upper())

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order updated in [since, until), through all pages of `get_order_list`.

        Shopee filters on whole seconds, both ends included, at most 15 days a call: the
        range becomes `time_from = ceil(since)`, `time_to = ceil(until) - 1`, cut into
        15-day windows, each walked with `cursor` until `more` is false. The list carries
        `order_sn` and (asked for through `response_optional_fields`) `order_status`, not
        the update time, so `updated_at` is None. An order named twice comes back once.
        Raises `AdapterError` (classified as `classify` does).
        """
        time_from = math.ceil(since.timestamp())
        time_to = math.ceil(until.timestamp()) - 1
        refs: dict[str, OrderRef] = {}
        window_from = time_from
        while window_from <= time_to:
            window_to = min(window_from + ORDER_RANGE_SECONDS, time_to)
            for row in self._order_list_window(window_from, window_to):
                refs.setdefault(row.external_id, row)
            window_from = window_to + 1
        return list(refs.values())

    def _order_list_window(self, time_from: int, time_to: int) -> list[OrderRef]:
        refs = []
        cursor = ""
        for _page in range(ORDER_PAGES_MAX):
            params = {
                "time_range_field": "update_time",
                "time_from": str(time_from),
                "time_to": str(time_to),
                "page_size": str(ORDER_PAGE_SIZE),
                "cursor": cursor,
                "response_optional_fields": "order_status",
            }
            answer = self._order_call(ORDER_LIST_PATH, params)
            for row in answer_rows(answer, "order_list", what="Shopee get_order_list"):
                order_sn = _identifier(row.get("order_sn")) if isinstance(row, dict) else ""
                if order_sn:
                    refs.append(
                        OrderRef(
                            external_id=order_sn, raw_status=_identifier(row.get("order_status"))
                        )
                    )
            next_cursor = _text(answer.get("next_cursor"))
            if not answer.get("more"):
                return refs
            if not next_cursor or next_cursor == cursor:
                # `more` without a new cursor would ask for the same page for ever.
                raise AdapterError(
                    "Shopee get_order_list said more but gave no new cursor",
                    outcome=Outcome.RETRYABLE,
                )
            cursor = next_cursor
        raise AdapterError(
            f"Shopee get_order_list had more than {ORDER_PAGES_MAX} pages in one window",
            outcome=Outcome.RETRYABLE,
        )

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The current detail of these orders: `get_order_detail`, 50 order_sn a call.

        Orders Shopee does not return are left out, and so are orders whose `item_list` is
        missing, empty or has a line that cannot be read (a quantity that is not a whole
        number from 1 to 99,999,999): they come back on a later fetch instead of becoming
        orders without lines. Lines come from `item_list`: keys
        `item_id` and `model_id` (0 for an item without models), the SKU the model's
        (`model_sku`) or else the item's (`item_sku`), the quantity
        `model_quantity_purchased`; `unit_price` is `model_discounted_price` (what the buyer
        pays a unit, before vouchers) and `discount` the line's markdown,
        (`model_original_price` - `model_discounted_price`) x quantity. Raises `AdapterError`.
        """
        ids = list(dict.fromkeys(_text(order_sn) for order_sn in external_ids if order_sn))
        orders: list[MarketOrder] = []
        for start in range(0, len(ids), ORDERS_PER_DETAIL):
            chunk = ids[start : start + ORDERS_PER_DETAIL]
            params = {
                "order_sn_list": ",".join(chunk),
                "response_optional_fields": ORDER_DETAIL_FIELDS,
            }
            answer = self._order_call(ORDER_DETAIL_PATH, params)
            wanted = set(chunk)
            for row in answer_rows(answer, "order_list", what="Shopee get_order_detail"):
                if not isinstance(row, dict):
                    continue
                order = _market_order(row)
                if order is not None and order.external_id in wanted:
                    orders.append(order)
        return orders

    def _order_call(self, path: str, params: dict[str, str]) -> dict:
        """GET an order call; return its `response` object. Raises `AdapterError`."""
        try:
            response, _latency = self._request(
                "GET", self.base_url + path, params={**params, **self.shop_params(path)}
            )
        except OutboundError as exc:
            raise AdapterError(str(exc), outcome=Outcome.RETRYABLE) from None
        status = response.status_code
        payload = answer_json(response)
        error = str(payload.get("error") or "") if payload is not None else ""
        answer = payload.get("response") if payload is not None else None
        if payload is not None and not error and 200 <= status < 300:
            if isinstance(answer, dict):
                return answer
            if answer is None:
                return {}
        message = str(payload.get("message") or "") if payload is not None else ""
        # Error codes may carry a module prefix (`order.error_param`): `classify` reads the
        # last part.
        outcome, expired = classify(status, error, message)
        retry_after = None
        if outcome == Outcome.THROTTLED:
            retry_after = self.retry_after_seconds(response.headers.get("Retry-After"))
        detail = f"{error}: {message}" if error else response.text
        raise AdapterError(
            self.excerpt(f"Shopee {path} answered {status} {detail}"),
            outcome=outcome,
            token_expired=expired,
            retry_after=retry_after,
        )


def stock_list(updates: Sequence[StockUpdate]) -> list[dict[str, Any]]:
    """The `stock_list` of an `update_stock` call: one entry per model, in the order of its
    first update, with a `seller_stock` row per update (`location_id` in it when the listing
    names one; a location named twice keeps its last quantity). Shopee refuses a model named
    twice in one `stock_list`, so a multi-location model's stock goes as one entry:
    `{"model_id": m, "seller_stock": [{"location_id": a, "stock": x}, {"location_id": b, ...}]}`
    (v2.product.update_stock, `stock_list[].seller_stock[].location_id`)."""
    models: dict[str, dict[str, dict[str, Any]]] = {}
    for update in updates:
        row: dict[str, Any] = {"stock": int(update.quantity)}
        location = str(update.keys.get("location_id") or "").strip()
        if location:
            row = {"location_id": location, **row}
        models.setdefault(_model_of(update), {})[location] = row
    return [
        {"model_id": wire_id(model), "seller_stock": list(rows.values())}
        for model, rows in models.items()
    ]


def _model_of(update: StockUpdate) -> str:
    """The model an update sets, as Shopee names it ("0" for an item without models)."""
    return str(wire_id(update.keys.get("model_id") or "0"))


def _quantity(row: dict, location: str | None) -> int | None:
    """A model's (or item's) seller stock, for one location or summed over all."""
    info = row.get("stock_info_v2")
    if not isinstance(info, dict):
        return None
    seller_stock = info.get("seller_stock")
    if isinstance(seller_stock, list):
        entries = [entry for entry in seller_stock if isinstance(entry, dict)]
        if location:
            entries = [e for e in entries if str(e.get("location_id", "")) == str(location)]
            if not entries:
                return None
        stocks = [answer_int(entry.get("stock") or 0) for entry in entries]
        # A figure that is not a whole number says nothing: no observation, not a zero.
        return None if None in stocks else sum(stocks)
    summary = info.get("summary_info")
    if isinstance(summary, dict) and summary.get("total_available_stock") is not None:
        return answer_int(summary["total_available_stock"])
    return None


def _market_order(row: dict) -> MarketOrder | None:
    """A `get_order_detail` order as a `MarketOrder`; None without an `order_sn` or without
    readable lines (`_order_lines`)."""
    order_sn = _identifier(row.get("order_sn"))
    lines = _order_lines(row.get("item_list"))
    if not order_sn or not lines:
        return None
    raw_status = _identifier(row.get("order_status"))
    customer = answer_object(
        {name: row[name] for name in ("buyer_user_id", "buyer_username") if row.get(name)}
    )
    return MarketOrder(
        external_id=order_sn,
        raw_status=raw_status,
        status=ShopeeAdapter.order_status(raw_status),
        lines=tuple(lines),
        placed_at=_moment(answer_int(row.get("create_time"))),
        # Shopee sends pay_time 0 (or leaves it out) for an unpaid order.
        paid_at=_moment(answer_int(row.get("pay_time")) or None),
        updated_at=_moment(answer_int(row.get("update_time"))),
        order_number=order_sn,
        customer={name: value for name, value in customer.items() if value},
        address=answer_object(row.get("recipient_address")),
        amount=answer_money(row.get("total_amount")),
        currency=answer_text(row.get("currency"), limit=3),
        payment_method=answer_name(row.get("payment_method"), limit=100),
        raw=row,
    )


def _order_lines(item_list: Any) -> list[MarketOrderLine]:
    """`item_list` entries as lines, keyed `item_id:model_id`; [] when there is none or one
    cannot be read (no item id, a quantity that is not a whole number of units in range).

    The same model can appear twice in one order (as a plain line and inside an add-on deal
    or bundle); the second gets `#2` after its key, and so on, in Shopee's order, so each
    line keeps its key across fetches. Prices outside what the money columns hold are None.
    """
    lines = []
    seen: dict[str, int] = {}
    for entry in answer_list(item_list):
        if not isinstance(entry, dict):
            return []
        item_id = answer_text(entry.get("item_id"))
        model_id = answer_text(entry.get("model_id")) or "0"
        quantity = answer_quantity(entry.get("model_quantity_purchased"))
        if not item_id or quantity is None:
            # Half an order would reserve half its stock: leave the whole order for later.
            return []
        base = f"{item_id}:{model_id}"
        seen[base] = seen.get(base, 0) + 1
        line_key = base if seen[base] == 1 else f"{base}#{seen[base]}"
        discounted = answer_money(entry.get("model_discounted_price"))
        original = answer_money(entry.get("model_original_price"))
        unit_price = discounted if discounted is not None else original
        discount = None
        if original is not None and discounted is not None:
            discount = answer_money((original - discounted) * quantity)
        sku = answer_text(entry.get("model_sku"), limit=ANSWER_SKU_MAX) or answer_text(
            entry.get("item_sku"), limit=ANSWER_SKU_MAX
        )
        lines.append(
            MarketOrderLine(
                line_key=line_key,
                sku=sku,
                keys={"item_id": item_id, "model_id": model_id},
                quantity=quantity,
                unit_price=unit_price,
                discount=discount,
                name=" ".join(
                    part
                    for part in (
                        answer_name(entry.get("item_name")),
                        answer_name(entry.get("model_name")),
                    )
                    if part
                ),
            )
        )
    return lines


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _identifier(value: Any) -> str:
    """An order number or status fit to store (`answer_text`, at most 64 characters)."""
    return answer_text(value, limit=MAX_IDENTIFIER)


def _moment(epoch: int | None) -> datetime | None:
    """An aware UTC datetime from Unix seconds (None when absent or out of range)."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reason_is_retryable(reason: str) -> bool:
    lowered = reason.lower()
    return any(marker in lowered for marker in RETRYABLE_REASON_MARKERS)
