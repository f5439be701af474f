"""eBay (Sell Inventory API, Sell Fulfillment API, Notification API).

A listing is an offer of an inventory item: keys `sku` (the seller's inventory item SKU,
`external_item_id`) and `offer_id` (`external_variant_id`). What a listing shows is the
smaller of the inventory item's quantity and the offer's `availableQuantity` ("Bulk updates",
https://developer.ebay.com/api-docs/sell/static/inventory/bulk-updates.html), so a push sets
both.

Stock: `POST /sell/inventory/v1/bulk_update_price_quantity` ("bulkUpdatePriceQuantity",
https://developer.ebay.com/api-docs/sell/inventory/resources/inventory_item/methods/bulkUpdatePriceQuantity)
with one SKU per call, as the method page says (the type pages allow 25: the stricter
rule is kept), and up to 25 of its offers:
`{"requests": [{"sku", "shipToLocationAvailability": {"quantity"}, "offers": [{"offerId",
"availableQuantity"}]}]}`; no price is sent. When a SKU's offers are to show different
quantities, the inventory item gets the largest and each offer its own `availableQuantity`,
so every listing shows exactly its own. `batches` keeps a SKU's offers in one call (a split
would let the second call's item quantity cut the first call's offers). A listing pushed
without its sibling offers sets the item to its own quantity: a sibling asked to show more
then shows at most that (less, never more, than it should) until it is pushed itself.

The answer (HTTP 200, or 207 when rows differ) holds `responses[]{statusCode, sku, offerId,
errors[], warnings[]}`, one per offer (a row without `offerId` is the inventory item's own,
and its failure fails every offer of the SKU). Row errors: 25001 (system error) and 25025
(concurrent access) are retried; a row with a 429 or 5xx status too. Anything else, 25002
(user error), 25709 (invalid value), 25713 (offer not available), 25097 (listing on hold),
25759 (quantity under an auction's allocation) and 25019 ("cannot revise the listing",
which covers the 250-revisions-a-day limit), is permanent: the revision limit lifts only the
next calendar day, far past the push's retries, so the listing is dead-lettered (a staff
retry from the console, or the next stock change, sends it again). An offer the answer does
not mention is retried (its fate is unknown; setting a quantity twice is harmless).

Read-back: `GET /sell/inventory/v1/inventory_item/{sku}` (`availability.
shipToLocationAvailability.quantity`, "getInventoryItem") and `GET /sell/inventory/v1/offer?
sku=` (`availableQuantity` per offer, "getOffers"): two calls per SKU, so `read_batches`
makes one group per SKU. A listing reads min(item quantity, its offer's availableQuantity),
the item quantity alone for an offer without one.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from channels_sync.adapters.base import (
    AdapterError,
    CallResult,
    ItemResult,
    ObservedStock,
    Outcome,
    StockUpdate,
    answer_int,
    answer_json,
    answer_list,
    answer_text,
    stock_observed,
)
from channels_sync.adapters.ebay.client import (
    RETRYABLE_ERROR_IDS,
    app_tokens_forget,
    call_outcome,
    errors_text,
    path_segment,
)
from channels_sync.adapters.ebay.notifications import challenge_response, pem_rebuild
from channels_sync.adapters.ebay.orders import EbayOrders
from core.http import OutboundError

BULK_UPDATE_PATH = "/sell/inventory/v1/bulk_update_price_quantity"
INVENTORY_ITEM_PATH = "/sell/inventory/v1/inventory_item/{sku}"
OFFERS_PER_CALL = 25


class EbayAdapter(EbayOrders):
    """eBay: one SKU per stock call, the item's quantity and each offer's."""

    type = "ebay"
    label = "eBay"
    key_columns: ClassVar[dict[str, str]] = {
        "sku": "external_item_id",
        "offer_id": "external_variant_id",
    }
    required_keys = ("sku", "offer_id")
    default_batch_size = OFFERS_PER_CALL
    max_batch_size = OFFERS_PER_CALL
    max_read_batch_size = OFFERS_PER_CALL
    # eBay's Sell API quotas are per day (the Inventory API's figure is not published);
    # this keeps bursts of pushes polite without slowing a normal day.
    default_rate_per_second = 5.0
    default_burst = 10

    # --- stock ------------------------------------------------------------------------------

    def batches(self, updates: Sequence[StockUpdate], batch_size: int) -> list[list[StockUpdate]]:
        """One call per SKU, holding its offers (25 at most a call; a SKU is never split
        below that, whatever `batch_size`: see the module). Order of first appearance kept;
        an offer named twice keeps its last update."""
        skus: dict[str, dict[str, StockUpdate]] = {}
        for update in updates:
            offers = skus.setdefault(str(update.keys.get("sku", "")), {})
            offers.pop(str(update.keys.get("offer_id", "")), None)
            offers[str(update.keys.get("offer_id", ""))] = update
        batches = []
        for offers in skus.values():
            group = list(offers.values())
            for start in range(0, len(group), OFFERS_PER_CALL):
                batches.append(group[start : start + OFFERS_PER_CALL])
        return batches

    def push_stock(
        self, updates: Sequence[StockUpdate], *, idempotency_key: str = ""
    ) -> CallResult:
        """Set one SKU's item quantity (the largest asked) and its offers' quantities;
        classify the answer (never raises). eBay takes no idempotency key: the call sets
        absolute quantities, so sending it twice is harmless."""
        if not updates:
            return CallResult(outcome=Outcome.OK)
        skus = {str(update.keys.get("sku", "")) for update in updates}
        offer_ids = [str(update.keys.get("offer_id", "")) for update in updates]
        if len(skus) != 1 or len(set(offer_ids)) != len(offer_ids):
            return CallResult(
                outcome=Outcome.PERMANENT,
                error="one call updates one SKU's offers, each once: split with batches()",
            )
        quantities = [max(0, int(update.quantity)) for update in updates]
        body = {
            "requests": [
                {
                    "sku": skus.pop(),
                    "shipToLocationAvailability": {"quantity": max(quantities)},
                    "offers": [
                        {"offerId": offer_id, "availableQuantity": quantity}
                        for offer_id, quantity in zip(offer_ids, quantities, strict=True)
                    ],
                }
            ]
        }
        try:
            response, latency_ms = self._call("POST", BULK_UPDATE_PATH, body=body)
        except OutboundError as exc:
            return self.transport_failure(exc)
        answer = answer_json(response)
        outcome = call_outcome(response.status_code, answer)
        if outcome is not None:
            return self.call_failed(
                outcome,
                response,
                error=self.excerpt(response.content),
                latency_ms=latency_ms,
                token_expired=response.status_code == 401,
            )
        items = _row_results(answer, updates)
        failed = any(not item.ok for item in items)
        return CallResult(
            outcome=Outcome.PARTIAL if failed else Outcome.OK,
            http_status=response.status_code,
            items=items,
            error=self.excerpt(response.content) if failed else "",
            latency_ms=latency_ms,
        )

    def read_batches(self, keys: Sequence[dict[str, str]], size: int) -> list[list[dict[str, str]]]:
        """One group per SKU (its two read calls), at most `size` listings a group."""
        size = max(1, min(size, self.max_read_batch_size))
        skus: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            skus.setdefault(str(key.get("sku", "")), []).append(key)
        return [
            group[start : start + size]
            for group in skus.values()
            for start in range(0, len(group), size)
        ]

    def fetch_stock(self, keys: Sequence[dict[str, str]]) -> list[ObservedStock]:
        """Read each SKU's item quantity and its offers' quantities back (two calls a SKU);
        a SKU or offer eBay does not know is left out. Raises `AdapterError`."""
        by_sku: dict[str, list[dict[str, str]]] = {}
        for key in keys:
            if key.get("sku") and key.get("offer_id"):
                by_sku.setdefault(str(key["sku"]), []).append(key)
        observed = []
        for sku, listings in by_sku.items():
            status, item = self._read(
                INVENTORY_ITEM_PATH.format(sku=path_segment(sku)), what="inventory item"
            )
            item_quantity = _item_quantity(item) if status != 404 else None
            if item_quantity is None:
                continue
            offers = {
                answer_text(offer.get("offerId")): offer
                for offer in self.sku_offers(sku)
                if isinstance(offer, dict)
            }
            for listing in listings:
                offer = offers.get(str(listing["offer_id"]))
                if offer is None:
                    continue
                available = answer_int(offer.get("availableQuantity"))
                quantity = item_quantity if available is None else min(item_quantity, available)
                quantity = stock_observed(quantity, channel_type=self.type, keys=listing)
                if quantity is not None:
                    observed.append(ObservedStock(keys=dict(listing), quantity=quantity))
        return observed


def _item_quantity(item: Any) -> int | None:
    """`availability.shipToLocationAvailability.quantity` of an inventory item (None:
    absent or not a number)."""
    availability = item.get("availability") if isinstance(item, dict) else None
    if not isinstance(availability, dict):
        return None
    ship_to = availability.get("shipToLocationAvailability")
    return answer_int(ship_to.get("quantity")) if isinstance(ship_to, dict) else None


def _row_results(answer: dict[str, Any], updates: Sequence[StockUpdate]) -> list[ItemResult]:
    """One result per update from the answer's `responses[]` rows (see the module)."""
    by_offer: dict[str, dict[str, Any]] = {}
    item_failure: tuple[str, bool] | None = None
    for row in answer_list(answer.get("responses")):
        if not isinstance(row, dict):
            continue
        offer_id = answer_text(row.get("offerId"))
        if offer_id:
            by_offer[offer_id] = row
        elif _row_failure(row) is not None:
            item_failure = _row_failure(row)
    results = []
    for update in updates:
        row = by_offer.get(str(update.keys.get("offer_id", "")))
        failure = item_failure
        if failure is None:
            failure = ("not in the answer", True) if row is None else _row_failure(row)
        if failure is None:
            results.append(ItemResult(listing_id=update.listing_id, ok=True))
        else:
            results.append(
                ItemResult(
                    listing_id=update.listing_id,
                    ok=False,
                    error=failure[0],
                    retryable=failure[1],
                )
            )
    return results


def _row_failure(row: dict[str, Any]) -> tuple[str, bool] | None:
    """(error, retryable) of a failed row; None for a row that succeeded."""
    status = answer_int(row.get("statusCode"))
    if status is not None and 200 <= status < 300 and not answer_list(row.get("errors")):
        return None
    ids = {
        answer_int(error.get("errorId"))
        for error in answer_list(row.get("errors"))
        if isinstance(error, dict)
    }
    retryable = status == 429 or (status or 0) >= 500 or bool(ids & RETRYABLE_ERROR_IDS)
    text = f"{status if status is not None else '?'} {errors_text(row.get('errors'))}".strip()
    return text[:500], retryable


__all__ = [
    "AdapterError",
    "EbayAdapter",
    "app_tokens_forget",
    "challenge_response",
    "pem_rebuild",
]
