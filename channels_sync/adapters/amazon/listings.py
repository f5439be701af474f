"""Amazon Listings Items API v2021-08-01: a quantity per SKU, set and read one SKU a call.

- Set: `PATCH /listings/2021-08-01/items/{sellerId}/{sku}?marketplaceIds=..` with
  `{"productType", "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
  "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": N}]}]}` ("Listings Items API
  v2021-08-01 reference", patchListingsItem; "Merge a listing" for `op: merge`, which keeps the
  offer's handling time and restock date). The answer is `{sku, status, submissionId, issues}`:
  `ACCEPTED` (queued for processing) or `INVALID`; an issue of severity `ERROR` refuses the
  SKU. 5/s, burst 5 (`AMAZON_PATCH_BURST`).
- Read: `GET` of the same path with `includedData=fulfillmentAvailability` answers
  `fulfillmentAvailability[{fulfillmentChannelCode, quantity}]`; the merchant-fulfilled stock
  is the `DEFAULT` channel's. 404 is a SKU the seller does not have. 5/s, burst 10.

SKUs go URL-encoded (every reserved character, `/` too) in the path, as the reference asks.
"""

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from channels_sync.adapters.amazon.client import SpApiClient, Throttled
from channels_sync.adapters.base import (
    AdapterError,
    CallResult,
    ItemResult,
    ObservedStock,
    Outcome,
    StockUpdate,
    answer_int,
    answer_list,
    answer_text,
    stock_observed,
)
from core.http import OutboundError

LISTINGS_PATH = "/listings/2021-08-01/items/{seller_id}/{sku}"
QUANTITY_PATH = "/attributes/fulfillment_availability"
FULFILLMENT_CHANNEL = "DEFAULT"  # merchant-fulfilled stock (FBA stock has its own codes)
# A SKU answered 429 within a call waits (one token's time) and is tried again this often
# before the rest of the call is given back to the push as "try again".
THROTTLE_RETRIES = 3


def listing_path(seller_id: str, sku: str) -> str:
    """The listing's path, the seller id and the SKU URL-encoded (`/` included)."""
    return LISTINGS_PATH.format(seller_id=quote(seller_id, safe=""), sku=quote(sku, safe=""))


def quantity_patch(*, op: str, quantity: int) -> dict[str, Any]:
    """The patch that sets the merchant-fulfilled quantity."""
    return {
        "op": op,
        "path": QUANTITY_PATH,
        "value": [{"fulfillment_channel_code": FULFILLMENT_CHANNEL, "quantity": quantity}],
    }


def patch_body(*, product_type: str, op: str, quantity: int) -> dict[str, Any]:
    return {"productType": product_type, "patches": [quantity_patch(op=op, quantity=quantity)]}


def item_errors(body: dict | None) -> list[str]:
    """The `ERROR` issues of a listings answer or a feed message, as `code: message`."""
    errors = []
    for issue in answer_list((body or {}).get("issues")):
        if isinstance(issue, dict) and answer_text(issue.get("severity")).upper() == "ERROR":
            code = answer_text(issue.get("code"))
            message = str(issue.get("message") or "")[:300]
            errors.append(f"{code}: {message}".strip(": "))
    return errors


def patch_push(
    adapter: Any, client: SpApiClient, updates: Sequence[StockUpdate], *, product_type: str, op: str
) -> CallResult:
    """Set each SKU's quantity with its own patch, paced; classify the call (never raises).

    A SKU sent twice in one batch is patched once (the last quantity wins). A whole-call
    outcome (throttled, retryable, auth) is returned only while no SKU has been answered;
    after that, what could not be sent comes back per item as "try again" (a retryable
    item), so the SKUs applied are confirmed. An auth refusal always ends the call: the push
    refreshes the token and sends the batch again (absolute quantities: harmless). A SKU
    Amazon refuses (`INVALID` with an `ERROR` issue, 404, 400) fails alone, for good.

    `ACCEPTED` means queued for processing, not applied ("Listings Items API v2021-08-01
    reference": the submission is validated and processed later). It is the only answer
    the call gets, so the SKU is reported pushed. A submission that fails later (the
    listing's processing finds an issue) changes nothing on Amazon: the channel's
    reconciliation (`channel_reconcile`) reads the quantity back with getListingsItem,
    finds it differs from the confirmed push, and opens a stock conflict for it, which the
    channel's conflict policy resolves.
    """
    by_sku: dict[str, list[StockUpdate]] = {}
    for update in updates:
        by_sku.setdefault(str(update.keys.get("seller_sku", "")), []).append(update)
    skus = list(by_sku)
    results: dict[str, tuple[bool, str, bool]] = {}  # sku -> (ok, error, retryable)
    started = time.perf_counter()
    last_status: int | None = None
    for index, sku in enumerate(skus):
        quantity = max(0, int(by_sku[sku][-1].quantity))
        body = patch_body(product_type=product_type, op=op, quantity=quantity)
        result, stop, status = _patch_one(adapter, client, sku, body, may_wait=index > 0)
        last_status = status or last_status
        if result is not None:
            results[sku] = result
            continue
        if not results or stop.outcome == Outcome.AUTH:
            stop.latency_ms = int((time.perf_counter() - started) * 1000)
            stop.rate_per_second = client.rates.get("patchListingsItem")
            return stop
        for rest in skus[index:]:
            results[rest] = (False, f"not sent ({stop.outcome}): {stop.error}"[:500], True)
        break
    items = []
    for sku, group in by_sku.items():
        ok, error, retryable = results[sku]
        items.extend(
            ItemResult(listing_id=u.listing_id, ok=ok, error=error, retryable=retryable)
            for u in group
        )
    failed = [item for item in items if not item.ok]
    return CallResult(
        outcome=Outcome.PARTIAL if failed else Outcome.OK,
        http_status=last_status,
        items=items,
        error=failed[0].error if failed else "",
        latency_ms=int((time.perf_counter() - started) * 1000),
        rate_per_second=client.rates.get("patchListingsItem"),
    )


def _patch_one(
    adapter: Any, client: SpApiClient, sku: str, body: dict[str, Any], *, may_wait: bool
) -> tuple[tuple[bool, str, bool] | None, CallResult | None, int | None]:
    """Patch one SKU: (its item result, None, status) or (None, the call's stop, status).

    With `may_wait` (part of the call is answered already) a 429 waits one token's time
    and asks again, `THROTTLE_RETRIES` times, rather than give the whole call back (unless
    that time is longer than a worker may sleep in place: then the throttle is the stop).
    """
    path = listing_path(str(adapter.credentials.get("seller_id", "")), sku)
    params = {"marketplaceIds": str(adapter.credentials.get("marketplace_id", ""))}
    for attempt in range(THROTTLE_RETRIES + 1):
        try:
            answer = client.call(
                "PATCH", path, operation="patchListingsItem", params=params, json_body=body
            )
        except Throttled as exc:
            return None, CallResult(Outcome.THROTTLED, error=str(exc), retry_after=exc.wait), None
        except OutboundError as exc:
            return None, CallResult(Outcome.RETRYABLE, error=str(exc)[:500]), None
        if (
            answer.outcome == Outcome.THROTTLED
            and may_wait
            and attempt < THROTTLE_RETRIES
            and client.throttle_pause("patchListingsItem") is not None
        ):
            continue
        break
    excerpt = adapter.excerpt(answer.response.content)
    if answer.outcome is None:
        if answer.body is None:
            return None, CallResult(Outcome.RETRYABLE, answer.status, error=excerpt), answer.status
        status = answer_text(answer.body.get("status")).upper()
        errors = item_errors(answer.body)
        if status == "ACCEPTED" and not errors:
            return (True, "", False), None, answer.status
        detail = "; ".join(errors) or f"status {status or 'missing'}"
        return (False, f"{status or 'refused'}: {detail}"[:500], False), None, answer.status
    if answer.status == 404 or answer.outcome == Outcome.PERMANENT:
        # No such SKU, or a request Amazon refuses for this SKU (400 InvalidInput).
        return (False, f"HTTP {answer.status}: {excerpt}"[:500], False), None, answer.status
    retry_after = None
    if answer.outcome == Outcome.THROTTLED:
        retry_after = client.throttle_wait("patchListingsItem")
    stop = CallResult(
        outcome=answer.outcome,
        http_status=answer.status,
        error=excerpt,
        token_expired=answer.token_expired,
        retry_after=retry_after,
    )
    return None, stop, answer.status


def fetch_quantities(
    adapter: Any, client: SpApiClient, keys: Sequence[dict[str, str]]
) -> list[ObservedStock]:
    """Read each listing's `DEFAULT` quantity back, one paced call per SKU.

    A SKU Amazon does not know (404), or one without a merchant-fulfilled entry, is left
    out. A 429 waits one token's time and asks again (`THROTTLE_RETRIES` times, when that
    time is short enough to sleep in place); raises
    `AdapterError` (throttled with the wait, auth, retryable, permanent) otherwise.
    """
    seller_id = str(adapter.credentials.get("seller_id", ""))
    params = {
        "marketplaceIds": str(adapter.credentials.get("marketplace_id", "")),
        "includedData": "fulfillmentAvailability",
    }
    observed = []
    for listing in keys:
        sku = str(listing.get("seller_sku") or "")
        if not sku:
            continue
        what = f"getListingsItem {sku}"
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                answer = client.call(
                    "GET", listing_path(seller_id, sku), operation="getListingsItem", params=params
                )
            except Throttled as exc:
                raise AdapterError(
                    f"{what}: {exc}", outcome=Outcome.THROTTLED, retry_after=exc.wait
                ) from None
            except OutboundError as exc:
                raise AdapterError(f"{what}: {exc}", outcome=Outcome.RETRYABLE) from None
            if (
                answer.outcome == Outcome.THROTTLED
                and attempt < THROTTLE_RETRIES
                and client.throttle_pause("getListingsItem") is not None
            ):
                continue
            break
        if answer.status == 404:
            continue
        if answer.outcome is not None:
            raise client.answer_error(answer, what=what, operation="getListingsItem")
        if answer.body is None:
            raise AdapterError(f"{what}: the answer is not a JSON object")
        quantity = None
        for row in answer_list(answer.body.get("fulfillmentAvailability")):
            if isinstance(row, dict) and row.get("fulfillmentChannelCode") == FULFILLMENT_CHANNEL:
                quantity = answer_int(row.get("quantity"))
        quantity = stock_observed(quantity, channel_type=adapter.type, keys=listing)
        if quantity is not None:
            observed.append(ObservedStock(keys=dict(listing), quantity=quantity))
    return observed
