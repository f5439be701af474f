"""eBay orders through the Sell Fulfillment API.

- List (`getOrders`, https://developer.ebay.com/api-docs/sell/fulfillment/resources/order/methods/getOrders):
  `GET /sell/fulfillment/v1/order?filter=lastmodifieddate:[from..to]&limit=&offset=`, times
  ISO-8601 UTC with milliseconds; pages by `offset` while `next` is given, up to `total`.
  Detail: the same call with `orderIds=a,b` (at most 50); ids eBay does not know come back
  as warnings and are left out. Only orders whose checkout is complete appear
  ("Discovering unfulfilled orders", https://developer.ebay.com/api-docs/sell/static/orders/discovering-unfulfilled-orders.html).
- Status: three fields say it; the raw status stored is
  `orderFulfillmentStatus|orderPaymentStatus|cancelStatus.cancelState` and is mapped by
  `order_status` (the enum values are eBay's `OrderFulfillmentStatus`, `OrderPaymentStatusEnum`
  and `CancelStateEnum` type pages; not all were confirmed against live answers):
  cancelState CANCELED -> cancelled; CANCEL_REQUESTED / IN_PROGRESS (a buyer's request the
  seller may still refuse) -> nothing by itself; payment FULLY_REFUNDED before shipping ->
  cancelled, after shipping -> nothing by itself (a refund without a return leaves the stock
  with the buyer; returns are eBay's Post-Order API); PENDING or FAILED payment -> pending
  payment; paid (PAID, PARTIALLY_REFUNDED) NOT_STARTED -> paid, IN_PROGRESS (some line items
  shipped) -> ready to ship, FULFILLED -> shipped.
- Lines: `lineItems[]{lineItemId, sku, legacyItemId, quantity, lineItemCost, title}`. A line
  names no offer: the offer is found among the SKU's offers (`getOffers`) as the one whose
  `listing.listingId` is the line's `legacyItemId`, else the SKU's only offer. A SKU with
  several offers none of which is the line's listing gives the line the SKU alone: it then
  matches the product with that SKU, never a guessed listing.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from channels_sync.adapters.base import (
    ANSWER_SKU_MAX,
    AdapterError,
    MarketOrder,
    MarketOrderLine,
    OrderRef,
    OrderStatus,
    Outcome,
    answer_list,
    answer_money,
    answer_name,
    answer_object,
    answer_quantity,
    answer_rows,
    answer_text,
)
from channels_sync.adapters.ebay.notifications import EbayNotifications, _iso_datetime

ORDERS_PATH = "/sell/fulfillment/v1/order"
OFFERS_PATH = "/sell/inventory/v1/offer"
ORDERS_PAGE_SIZE = 200
ORDER_IDS_MAX = 50  # `orderIds` takes at most 50 ids
# A guard against a list that never ends: 200 000 orders changed in one polled range.
ORDERS_PAGES_MAX = 1000

CANCELLED_STATES = frozenset({"CANCELED"})
CANCEL_REQUEST_STATES = frozenset({"CANCEL_REQUESTED", "IN_PROGRESS"})
UNPAID = frozenset({"PENDING", "FAILED"})
PAID = frozenset({"PAID", "PARTIALLY_REFUNDED"})
FULFILMENT_STATUSES = {
    "NOT_STARTED": OrderStatus.PAID,
    "IN_PROGRESS": OrderStatus.READY_TO_SHIP,
    "FULFILLED": OrderStatus.SHIPPED,
}


def raw_status_of(order: dict[str, Any]) -> str:
    """`orderFulfillmentStatus|orderPaymentStatus|cancelState` of a Fulfillment API order."""
    cancel = order.get("cancelStatus") if isinstance(order.get("cancelStatus"), dict) else {}
    parts = (
        answer_text(order.get("orderFulfillmentStatus"), limit=30),
        answer_text(order.get("orderPaymentStatus"), limit=30),
        answer_text(cancel.get("cancelState"), limit=30),
    )
    return "|".join(parts) if any(parts) else ""


def iso_ms(moment: datetime) -> str:
    """`2016-03-21T08:25:43.511Z`: UTC with milliseconds, as eBay's date filters take."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class EbayOrders(EbayNotifications):
    """Orders: the changed-orders list, the detail, and the status mapping."""

    @classmethod
    def order_status(cls, raw_status: str) -> OrderStatus | None:
        """The normalized status of `fulfillment|payment|cancel` (see the module)."""
        parts = [part.strip().upper() for part in str(raw_status or "").split("|")]
        if len(parts) != 3:
            return None
        fulfillment, payment, cancel = parts
        if cancel in CANCELLED_STATES:
            return OrderStatus.CANCELLED
        if cancel in CANCEL_REQUEST_STATES:
            return None
        if payment == "FULLY_REFUNDED":
            return OrderStatus.CANCELLED if fulfillment == "NOT_STARTED" else None
        if payment in UNPAID:
            return OrderStatus.PENDING_PAYMENT
        if payment in PAID:
            return FULFILMENT_STATUSES.get(fulfillment)
        return None

    def orders_updated(self, *, since: datetime, until: datetime) -> list[OrderRef]:
        """Every order modified in [since, until) (eBay's range is inclusive at both ends, in
        milliseconds: the end is taken a millisecond early, so an order is never listed by
        two adjacent ranges for one change). Raises `AdapterError`."""
        end = until - timedelta(milliseconds=1)
        params = {
            "filter": f"lastmodifieddate:[{iso_ms(since)}..{iso_ms(max(end, since))}]",
            "limit": str(ORDERS_PAGE_SIZE),
        }
        refs: dict[str, OrderRef] = {}
        offset = 0
        for _page in range(ORDERS_PAGES_MAX):
            _status, body = self._read(
                ORDERS_PATH, what="order list", params={**params, "offset": str(offset)}
            )
            page = answer_rows(body, "orders", what="order list")
            for order in page:
                external_id = answer_text(order.get("orderId")) if isinstance(order, dict) else ""
                if external_id:
                    refs[external_id] = OrderRef(
                        external_id=external_id,
                        raw_status=raw_status_of(order),
                        updated_at=_iso_datetime(order.get("lastModifiedDate")),
                    )
            if not page or not (body or {}).get("next"):
                return list(refs.values())
            offset += len(page)
        raise AdapterError(
            f"order list had more than {ORDERS_PAGES_MAX} pages in one range",
            outcome=Outcome.RETRYABLE,
        )

    def orders_fetch(self, external_ids: Sequence[str]) -> list[MarketOrder]:
        """The detail of these orders, 50 ids a call; unknown ids are left out, and so are
        orders without line items or with a line that cannot be read (no line id, no
        quantity): a later fetch takes them. Raises `AdapterError`."""
        ids = list(dict.fromkeys(str(i).strip() for i in external_ids if str(i).strip()))
        raws: list[dict[str, Any]] = []
        for start in range(0, len(ids), ORDER_IDS_MAX):
            chunk = ids[start : start + ORDER_IDS_MAX]
            _status, body = self._read(
                ORDERS_PATH, what="order detail", params={"orderIds": ",".join(chunk)}
            )
            raws.extend(o for o in answer_rows(body, "orders", what="order detail") if o)
        offers: dict[str, list[dict[str, Any]]] = {}
        orders = []
        for raw in raws:
            order = self._market_order(raw, offers) if isinstance(raw, dict) else None
            if order is not None:
                orders.append(order)
        return orders

    def sku_offers(self, sku: str) -> list[dict[str, Any]]:
        """The offers of a SKU (`getOffers`); [] for a SKU eBay does not know."""
        status, body = self._read(OFFERS_PATH, what="offers", params={"sku": sku})
        if status == 404:
            return []
        return [offer for offer in answer_rows(body, "offers", what="offers") if offer]

    def _line_offer(self, sku: str, listing_id: str, offers: dict[str, list[dict]]) -> str:
        """The offer id of a line (see the module), '' when it cannot be told."""
        if sku not in offers:
            offers[sku] = self.sku_offers(sku)
        known = [o for o in offers[sku] if isinstance(o, dict) and answer_text(o.get("offerId"))]
        for offer in known:
            listing = offer.get("listing") if isinstance(offer.get("listing"), dict) else {}
            if listing_id and answer_text(listing.get("listingId")) == listing_id:
                return answer_text(offer["offerId"])
        return answer_text(known[0]["offerId"]) if len(known) == 1 else ""

    def _market_order(
        self, raw: dict[str, Any], offers: dict[str, list[dict]]
    ) -> MarketOrder | None:
        external_id = answer_text(raw.get("orderId"))
        rows = answer_list(raw.get("lineItems"))
        if not external_id or not rows:
            return None
        lines = []
        for item in rows:
            if not isinstance(item, dict):
                return None
            line_id = answer_text(item.get("lineItemId"))
            quantity = answer_quantity(item.get("quantity"))
            if not line_id or quantity is None:
                return None  # half an order would hold half its stock: take it later
            sku = answer_text(item.get("sku"), limit=ANSWER_SKU_MAX)
            keys: dict[str, str] = {}
            if sku:
                keys["sku"] = sku
                offer_id = self._line_offer(sku, answer_text(item.get("legacyItemId")), offers)
                if offer_id:
                    keys["offer_id"] = offer_id
            cost = item.get("lineItemCost") if isinstance(item.get("lineItemCost"), dict) else {}
            total = answer_money(cost.get("value"))
            lines.append(
                MarketOrderLine(
                    line_key=line_id,
                    sku=sku,
                    keys=keys,
                    quantity=quantity,
                    # lineItemCost is the line's price before discounts, for all its units.
                    unit_price=(total / quantity).quantize(Decimal("0.0001"))
                    if total is not None
                    else None,
                    name=answer_name(item.get("title"), limit=255),
                )
            )
        raw_status = raw_status_of(raw)
        pricing = raw.get("pricingSummary") if isinstance(raw.get("pricingSummary"), dict) else {}
        total = pricing.get("total") if isinstance(pricing.get("total"), dict) else {}
        return MarketOrder(
            external_id=external_id,
            raw_status=raw_status,
            status=self.order_status(raw_status),
            lines=tuple(lines),
            placed_at=_iso_datetime(raw.get("creationDate")),
            paid_at=_paid_at(raw),
            updated_at=_iso_datetime(raw.get("lastModifiedDate")),
            order_number=answer_text(raw.get("salesRecordReference"))
            or answer_text(raw.get("legacyOrderId")),
            customer=_customer(raw),
            address=_ship_to(raw),
            amount=answer_money(total.get("value")),
            currency=answer_text(total.get("currency"), limit=3),
            payment_method=_payment_method(raw),
            raw=raw,
        )


def _payments(raw: dict[str, Any]) -> list[dict[str, Any]]:
    summary = raw.get("paymentSummary") if isinstance(raw.get("paymentSummary"), dict) else {}
    return [p for p in answer_list(summary.get("payments")) if isinstance(p, dict)]


def _paid_at(raw: dict[str, Any]) -> datetime | None:
    if answer_text(raw.get("orderPaymentStatus")).upper() not in PAID:
        return None
    dates = [_iso_datetime(p.get("paymentDate")) for p in _payments(raw)]
    return min((d for d in dates if d is not None), default=None)


def _payment_method(raw: dict[str, Any]) -> str:
    for payment in _payments(raw):
        method = answer_name(payment.get("paymentMethod"), limit=100)
        if method:
            return method
    return ""


def _customer(raw: dict[str, Any]) -> dict[str, Any]:
    buyer = answer_object(raw.get("buyer"))
    registered = buyer.get("buyerRegistrationAddress") or {}
    phone = registered.get("primaryPhone") if isinstance(registered, dict) else {}
    fields = (
        ("username", buyer.get("username")),
        ("name", registered.get("fullName") if isinstance(registered, dict) else None),
        ("email", registered.get("email") if isinstance(registered, dict) else None),
        ("phone", phone.get("phoneNumber") if isinstance(phone, dict) else None),
    )
    return {key: value for key, value in fields if isinstance(value, str) and value}


def _ship_to(raw: dict[str, Any]) -> dict[str, Any]:
    for instruction in answer_list(raw.get("fulfillmentStartInstructions")):
        if not isinstance(instruction, dict):
            continue
        step = answer_object(instruction.get("shippingStep"))
        ship_to = step.get("shipTo")
        if isinstance(ship_to, dict) and ship_to:
            return ship_to
    return {}
