"""Shopee orders: pushes (the sandbox's notifications through the adapter), order statuses,
the order list and detail calls, and their error classification."""

import hashlib
import hmac
import itertools
import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from django.conf import settings

from channels_sync.adapters.base import AdapterError, ChannelEvent, OrderStatus, Outcome
from channels_sync.adapters.shopee import (
    ORDER_DETAIL_PATH,
    ORDER_LIST_PATH,
    ORDER_STATUSES,
    ShopeeAdapter,
)
from channels_sync.models import ChannelListing
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import Fault, SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.inventory.factories import ProductFactory

LINES = [
    {"keys": {"item_id": "1000", "model_id": "5000"}, "sku": "SKU-A", "quantity": 2},
    {"keys": {"item_id": "1001", "model_id": "0"}, "sku": "SKU-B", "quantity": 1},
]


class Receiver(SandboxApp):
    """Our webhook endpoint stand-in: records each push and answers 200 with no body."""

    name = "receiver"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(200, b"", content_type="text/plain")


@pytest.fixture(scope="module")
def receiver():
    with SandboxServer(Receiver()) as server:
        yield server


@pytest.fixture
def inbox(receiver):
    """The receiver, emptied; `inbox.url` is where the sandbox delivers."""
    receiver.app.reset()
    return receiver


def channel_url(channel) -> str:
    """The channel's webhook URL as registered with Shopee (and signed by it)."""
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{channel.type}/{channel.pk}/"


def adapter_for(server) -> ShopeeAdapter:
    return ShopeeAdapter(base_url=server.url, credentials=server.app.credentials(), timeout=5)


def placed(server, status="READY_TO_SHIP", **kwargs):
    """An order placed in the sandbox whose push is dropped (so nothing is delivered)."""
    return server.app.order_create(
        lines=LINES, status=status, faults=NotifyFaults(drop=True), **kwargs
    )


# --- pushes -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_shopee_notification_verifies_with_the_channel_url_and_parses(shopee, wire):
    # given: a channel on the sandbox, whose webhook URL the sandbox pushes to
    channel = wire(shopee, "shopee")
    url = channel_url(channel)
    shopee.app.configure(webhook_url=url)
    order = placed(shopee, status="READY_TO_SHIP")

    # when
    body, headers = shopee.app.notification(order, bad_signature=False)
    adapter = channel_adapter(channel)

    # then: Shopee's code 3 body, signed over url|body
    message = json.loads(body)
    assert message["code"] == 3
    assert message["shop_id"] == shopee.app.shop_id
    assert message["data"]["ordersn"] == order.order_id
    assert adapter.webhook_verify(headers=headers, body=body, url=url)
    assert not adapter.webhook_verify(headers=headers, body=body, url=url + "x")
    event = adapter.webhook_parse(body=body)
    assert event.topic == "order"
    assert event.order_id == order.order_id
    assert event.status == "READY_TO_SHIP"
    assert event.updated_at == datetime.fromtimestamp(int(order.updated), tz=UTC)
    assert event.updated_at.tzinfo is UTC
    assert len(event.event_key) == 64


@pytest.mark.django_db
def test_shopee_notification_with_a_bad_signature_fails_verification(shopee, wire):
    channel = wire(shopee, "shopee")
    url = channel_url(channel)
    shopee.app.configure(webhook_url=url)
    order = placed(shopee)

    body, headers = shopee.app.notification(order, bad_signature=True)

    assert not channel_adapter(channel).webhook_verify(headers=headers, body=body, url=url)


def test_shopee_order_id_new_looks_like_an_order_sn(shopee):
    ids = {shopee.app.order_id_new() for _ in range(50)}

    assert len(ids) == 50
    for order_sn in ids:
        assert len(order_sn) == 14
        assert order_sn[:6].isdigit()
        assert order_sn.isalnum()
        assert order_sn == order_sn.upper()


def test_shopee_unpaid_orders_have_no_pay_time_until_paid(shopee):
    order = placed(shopee, status="UNPAID")
    assert order.paid is None

    shopee.app.order_update(order.order_id, status="READY_TO_SHIP", faults=NotifyFaults(drop=True))

    assert order.paid == order.updated


def push(code=3, **data) -> bytes:
    message = {
        "data": {"items": [], "completed_scenario": "", **data},
        "shop_id": 1,
        "code": code,
        "timestamp": 1660123130,
    }
    return json.dumps(message).encode()


def test_shopee_event_key_is_stable_for_the_same_change_and_differs_otherwise():
    adapter = ShopeeAdapter(base_url="http://shopee.invalid", credentials={})
    base = {"ordersn": "220815ABCDEFGH", "status": "PROCESSED", "update_time": 1660123127}

    first = adapter.webhook_parse(body=push(**base))
    # A redelivery: same change, other timestamp and key order in the body.
    again = json.loads(push(**base))
    again["timestamp"] = 1660199999
    again = adapter.webhook_parse(body=json.dumps(dict(reversed(again.items()))).encode())
    others = [
        adapter.webhook_parse(body=push(**{**base, "status": "SHIPPED"})),
        adapter.webhook_parse(body=push(**{**base, "update_time": 1660123128})),
        adapter.webhook_parse(body=push(**{**base, "ordersn": "220815ABCDEFGJ"})),
    ]
    other_shop = json.loads(push(**base))
    other_shop["shop_id"] = 2
    others.append(adapter.webhook_parse(body=json.dumps(other_shop).encode()))

    assert first.event_key == again.event_key
    expected = json.dumps(["1", "3", "220815ABCDEFGH", "PROCESSED", "1660123127"])
    assert first.event_key == hashlib.sha256(expected.encode()).hexdigest()
    keys = {first.event_key} | {event.event_key for event in others}
    assert len(keys) == 5


def test_shopee_webhook_parse_other_codes_and_unreadable_bodies():
    adapter = ShopeeAdapter(base_url="http://shopee.invalid", credentials={})

    tracking = adapter.webhook_parse(
        body=push(code=4, ordersn="220815ABCDEFGH", tracking_no="SPX123")
    )
    tracking_again = adapter.webhook_parse(
        body=push(code=4, ordersn="220815ABCDEFGH", tracking_no="SPX124")
    )
    assert tracking.topic == "other"
    assert tracking.event_key != tracking_again.event_key

    for body in (
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"code": 3}',
        b'{"code": "x", "data": {}}',
        push(status="SHIPPED", update_time=1),  # no ordersn
        push(ordersn="22\\u0000", status="SHIPPED", update_time=1),
        push(ordersn="\\ud800", status="SHIPPED", update_time=1),
        push(ordersn="x" * 65, status="SHIPPED", update_time=1),
    ):
        body = body.replace(b"\\\\u", b"\\u")
        event = adapter.webhook_parse(body=body)
        assert event == ChannelEvent(
            topic="unreadable", event_key=hashlib.sha256(body).hexdigest()
        ), body


def test_shopee_webhook_ack_is_2xx_with_an_empty_body():
    status, body, _content_type = ShopeeAdapter.webhook_ack

    assert 200 <= status < 300
    assert body == b""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UNPAID", OrderStatus.PENDING_PAYMENT),
        ("PENDING", OrderStatus.PENDING_PAYMENT),
        ("READY_TO_SHIP", OrderStatus.PAID),
        ("INVOICE_PENDING", OrderStatus.PAID),
        ("PROCESSED", OrderStatus.READY_TO_SHIP),
        ("RETRY_SHIP", OrderStatus.READY_TO_SHIP),
        ("SHIPPED", OrderStatus.SHIPPED),
        ("TO_CONFIRM_RECEIVE", OrderStatus.SHIPPED),
        ("COMPLETED", OrderStatus.COMPLETED),
        ("IN_CANCEL", None),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("TO_RETURN", OrderStatus.RETURNED),
        ("SOMETHING_NEW", None),
        ("", None),
    ],
)
def test_shopee_order_status_maps_every_documented_status(raw, expected):
    assert ShopeeAdapter.order_status(raw) is expected


def test_shopee_order_status_table_covers_the_documented_statuses():
    documented = {
        "UNPAID",
        "PENDING",
        "READY_TO_SHIP",
        "INVOICE_PENDING",
        "PROCESSED",
        "RETRY_SHIP",
        "SHIPPED",
        "TO_CONFIRM_RECEIVE",
        "IN_CANCEL",
        "CANCELLED",
        "TO_RETURN",
        "COMPLETED",
    }
    assert set(ORDER_STATUSES) == documented


# --- delivery faults ----------------------------------------------------------------------------


def delivered(inbox, adapter, url) -> list[ChannelEvent]:
    """The pushes the receiver got, each verified, parsed, in arrival order."""
    events = []
    for request in inbox.app.requests:
        assert adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
        events.append(adapter.webhook_parse(body=request.body))
    return events


def test_shopee_notify_delivers_copies_with_one_event_key(shopee, inbox):
    url = inbox.url + "/webhooks/shopee/1/"
    shopee.app.configure(webhook_url=url)
    adapter = adapter_for(shopee)

    order = shopee.app.order_create(
        lines=LINES, status="READY_TO_SHIP", faults=NotifyFaults(copies=3)
    )

    events = delivered(inbox, adapter, url)
    assert len(events) == 3
    assert {event.event_key for event in events} == {events[0].event_key}
    assert events[0].order_id == order.order_id
    assert [d.http_status for d in shopee.app.deliveries] == [200, 200, 200]


def test_shopee_notify_drop_sends_nothing(shopee, inbox):
    shopee.app.configure(webhook_url=inbox.url + "/webhooks/shopee/1/")

    order = shopee.app.order_create(lines=LINES, status="UNPAID", faults=NotifyFaults(drop=True))

    assert inbox.app.requests == []
    assert [(d.order_id, d.http_status, d.error) for d in shopee.app.deliveries] == [
        (order.order_id, None, "dropped")
    ]


def test_shopee_notify_hold_and_release_arrive_out_of_order(shopee, inbox):
    # given: the UNPAID push is held back, the paid one goes out at once
    url = inbox.url + "/webhooks/shopee/1/"
    shopee.app.configure(webhook_url=url)
    adapter = adapter_for(shopee)
    order = shopee.app.order_create(lines=LINES, status="UNPAID", faults=NotifyFaults(hold=True))
    shopee.app.order_update(order.order_id, status="READY_TO_SHIP")
    assert [event.status for event in delivered(inbox, adapter, url)] == ["READY_TO_SHIP"]

    # when: the held push is released over the control route
    answer = requests.post(shopee.url + "/_sandbox/notifications/release", timeout=5)

    # then: it arrives last, older than what came before it
    assert answer.status_code == 200
    events = delivered(inbox, adapter, url)
    assert [event.status for event in events] == ["READY_TO_SHIP", "UNPAID"]
    assert events[1].updated_at < events[0].updated_at
    assert events[0].event_key != events[1].event_key


def test_shopee_notify_bad_signature_is_refused_by_the_adapter(shopee, inbox):
    url = inbox.url + "/webhooks/shopee/1/"
    shopee.app.configure(webhook_url=url)

    shopee.app.order_create(lines=LINES, status="UNPAID", faults=NotifyFaults(bad_signature=True))

    (request,) = inbox.app.requests
    assert not adapter_for(shopee).webhook_verify(
        headers=request.headers, body=request.body, url=url
    )
    assert shopee.app.deliveries[0].bad_signature


def test_shopee_control_route_creates_and_updates_orders_with_pushes(shopee, inbox):
    url = inbox.url + "/webhooks/shopee/1/"
    shopee.app.configure(webhook_url=url)

    created = requests.post(
        shopee.url + "/_sandbox/orders",
        json={"lines": LINES, "status": "UNPAID", "faults": {"copies": 2}},
        timeout=5,
    )
    order_sn = created.json()["order_id"]
    updated = requests.post(
        shopee.url + f"/_sandbox/orders/{order_sn}", json={"status": "CANCELLED"}, timeout=5
    )

    assert created.status_code == 201
    assert updated.status_code == 200
    events = delivered(inbox, adapter_for(shopee), url)
    assert [(e.order_id, e.status) for e in events] == [
        (order_sn, "UNPAID"),
        (order_sn, "UNPAID"),
        (order_sn, "CANCELLED"),
    ]


# --- order list ---------------------------------------------------------------------------------


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def calls(server, path: str) -> list[SandboxRequest]:
    return [request for request in server.app.requests if request.path == path]


def test_shopee_orders_updated_walks_every_page(shopee):
    # given: five orders, pages of two
    shopee.app.configure(order_page_size=2)
    orders = [placed(shopee, status="READY_TO_SHIP") for _ in range(5)]
    shopee.app.order_update(orders[0].order_id, status="CANCELLED", faults=NotifyFaults(drop=True))
    now = time.time()

    # when
    refs = adapter_for(shopee).orders_updated(since=at(now - 60), until=at(now + 60))

    # then: every order once, with its status, through three pages
    assert sorted(ref.external_id for ref in refs) == sorted(o.order_id for o in orders)
    statuses = {ref.external_id: ref.raw_status for ref in refs}
    assert statuses[orders[0].order_id] == "CANCELLED"
    assert statuses[orders[1].order_id] == "READY_TO_SHIP"
    lists = calls(shopee, ORDER_LIST_PATH)
    assert [r.query.get("cursor", [""])[0] for r in lists] == ["", "2", "4"]
    assert {r.query["time_range_field"][0] for r in lists} == {"update_time"}
    assert {r.query["page_size"][0] for r in lists} == {"100"}


def test_shopee_orders_updated_filters_by_update_time_half_open(shopee):
    # given: orders last updated at t-100, t-50 and t-10 (Shopee stamps whole seconds)
    t = int(time.time())
    old, middle, recent = (placed(shopee) for _ in range(3))
    for order, updated in ((old, t - 100), (middle, t - 50), (recent, t - 10)):
        order.updated = float(updated)
    adapter = adapter_for(shopee)

    # when / then: [since, until) on whole seconds
    def ids(since, until):
        refs = adapter.orders_updated(since=at(since), until=at(until))
        return sorted(ref.external_id for ref in refs)

    assert ids(t - 50, t - 10) == [middle.order_id]
    assert ids(t - 50.5, t - 9.5) == sorted([middle.order_id, recent.order_id])
    assert ids(t - 49.5, t - 10) == []
    assert ids(t - 200, t) == sorted([old.order_id, middle.order_id, recent.order_id])
    assert ids(t, t - 200) == []


def test_shopee_orders_updated_splits_ranges_longer_than_15_days(shopee):
    # given: orders updated 40, 20 and 1 days ago
    now = int(time.time())
    days = 86400
    orders = [placed(shopee) for _ in range(3)]
    for order, age in zip(orders, (40, 20, 1), strict=True):
        order.updated = float(now - age * days)
    since, until = at(now - 45 * days), at(now)

    # when
    refs = adapter_for(shopee).orders_updated(since=since, until=until)

    # then: all three, asked for in contiguous windows of at most 15 days
    assert sorted(ref.external_id for ref in refs) == sorted(o.order_id for o in orders)
    windows = [
        (int(r.query["time_from"][0]), int(r.query["time_to"][0]))
        for r in calls(shopee, ORDER_LIST_PATH)
    ]
    assert len(windows) == 3
    assert windows[0][0] == now - 45 * days
    assert windows[-1][1] == now - 1
    assert all(0 <= end - start <= 15 * days for start, end in windows)
    assert all(nxt[0] == prev[1] + 1 for prev, nxt in itertools.pairwise(windows))


def test_shopee_sandbox_refuses_a_list_range_over_15_days(shopee):
    adapter = adapter_for(shopee)
    now = int(time.time())
    params = {
        "time_range_field": "update_time",
        "time_from": str(now - 15 * 86400 - 1),
        "time_to": str(now),
        "page_size": "100",
    }

    with pytest.raises(AdapterError) as caught:
        adapter._order_call(ORDER_LIST_PATH, params)

    assert caught.value.outcome == Outcome.PERMANENT
    assert "error_param" in str(caught.value)


def test_shopee_orders_updated_refuses_a_cursor_that_never_moves(shopee):
    body = {"error": "", "message": "", "response": {"more": True, "order_list": []}}
    shopee.app.inject(Fault(status=200, body=json.dumps(body)))

    with pytest.raises(AdapterError) as caught:
        adapter_for(shopee).orders_updated(since=at(time.time() - 60), until=at(time.time()))

    assert caught.value.outcome == Outcome.RETRYABLE


# --- order detail -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_shopee_orders_fetch_maps_lines_to_the_channels_listings(shopee, wire):
    # given: a channel with two listings (one a model, one an item without models)
    products = ProductFactory.create_batch(2)
    channel = wire(shopee, "shopee", products=products)
    listings = list(ChannelListing.objects.filter(channel=channel).order_by("pk"))
    listings[1].external_variant_id = "0"
    listings[1].save(update_fields=["external_variant_id"])
    lines = [
        {
            "keys": ShopeeAdapter.keys_from_listing(listing),
            "sku": product.sku,
            "quantity": quantity,
            "price": price,
        }
        for listing, product, quantity, price in zip(
            listings, products, (2, 1), ("12.90", "5.05"), strict=True
        )
    ]
    order = shopee.app.order_create(
        lines=lines, status="READY_TO_SHIP", faults=NotifyFaults(drop=True)
    )

    # when
    (fetched,) = channel_adapter(channel).orders_fetch([order.order_id])

    # then
    assert fetched.external_id == order.order_id
    assert fetched.raw_status == "READY_TO_SHIP"
    assert fetched.status is OrderStatus.PAID
    assert fetched.placed_at == at(int(order.created))
    assert fetched.paid_at == at(int(order.paid))
    assert fetched.updated_at == at(int(order.updated))
    assert fetched.amount == Decimal("30.85")
    assert fetched.currency == "SGD"
    assert fetched.address["name"] == "Sandbox Buyer"
    assert [line.sku for line in fetched.lines] == [p.sku for p in products]
    assert [line.quantity for line in fetched.lines] == [Decimal(2), Decimal(1)]
    assert [line.unit_price for line in fetched.lines] == [Decimal("12.90"), Decimal("5.05")]
    assert fetched.lines[1].keys["model_id"] == "0"
    for line, listing in zip(fetched.lines, listings, strict=True):
        matched = ChannelListing.objects.get(
            channel=channel, **ShopeeAdapter.keys_to_columns(line.keys)
        )
        assert matched == listing
    assert len({line.line_key for line in fetched.lines}) == 2
    (request,) = calls(shopee, ORDER_DETAIL_PATH)
    asked = set(request.query["response_optional_fields"][0].split(","))
    assert {"item_list", "pay_time", "total_amount", "recipient_address"} <= asked


def test_shopee_orders_fetch_unpaid_order_has_no_paid_at(shopee):
    order = placed(shopee, status="UNPAID")

    (fetched,) = adapter_for(shopee).orders_fetch([order.order_id])

    assert fetched.status is OrderStatus.PENDING_PAYMENT
    assert fetched.paid_at is None


def test_shopee_orders_fetch_leaves_out_unknown_orders(shopee):
    order = placed(shopee)

    fetched = adapter_for(shopee).orders_fetch(["240101UNKNOWN0", order.order_id, order.order_id])

    assert [o.external_id for o in fetched] == [order.order_id]


def test_shopee_orders_fetch_batches_50_order_sn_a_call(shopee):
    orders = [placed(shopee) for _ in range(120)]

    fetched = adapter_for(shopee).orders_fetch([o.order_id for o in orders])

    assert sorted(o.external_id for o in fetched) == sorted(o.order_id for o in orders)
    sizes = [len(r.query["order_sn_list"][0].split(",")) for r in calls(shopee, ORDER_DETAIL_PATH)]
    assert sizes == [50, 50, 20]


def test_shopee_orders_fetch_repeated_model_lines_and_discounts(shopee):
    # given: Shopee's own detail shape, one model bought twice (plainly and in a bundle)
    entry = {
        "item_id": 3000,
        "item_name": "Mug",
        "item_sku": "MUG",
        "model_id": 4000,
        "model_name": "Blue",
        "model_sku": "MUG-BLUE",
        "model_quantity_purchased": 3,
        "model_original_price": 10.5,
        "model_discounted_price": 8.4,
    }
    no_model = {**entry, "model_id": 0, "model_sku": "", "model_quantity_purchased": 1}
    detail = {
        "order_sn": "240101ABCDEFGH",
        "order_status": "IN_CANCEL",
        "create_time": 1704067200,
        "update_time": 1704067300,
        "pay_time": 0,
        "item_list": [entry, {**entry, "model_quantity_purchased": 1}, no_model],
    }
    body = {"error": "", "message": "", "response": {"order_list": [detail]}}
    shopee.app.inject(Fault(status=200, body=json.dumps(body)))

    # when
    (order,) = adapter_for(shopee).orders_fetch(["240101ABCDEFGH"])

    # then
    assert order.status is None
    assert order.paid_at is None
    assert [line.line_key for line in order.lines] == ["3000:4000", "3000:4000#2", "3000:0"]
    assert [line.sku for line in order.lines] == ["MUG-BLUE", "MUG-BLUE", "MUG"]
    assert order.lines[0].unit_price == Decimal("8.4")
    assert order.lines[0].discount == Decimal("6.3")
    assert order.lines[0].keys == {"item_id": "3000", "model_id": "4000"}


# --- errors -------------------------------------------------------------------------------------


def shopee_error(status: int, error: str, message: str, **headers) -> Fault:
    body = {"error": error, "message": message, "request_id": "x"}
    return Fault(status=status, body=json.dumps(body), headers=headers)


def test_shopee_order_calls_with_a_bad_token_are_auth(shopee):
    adapter = ShopeeAdapter(
        base_url=shopee.url, credentials={**shopee.app.credentials(), "access_token": "nope"}
    )

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["240101ABCDEFGH"])

    # "Invalid access_token." is how Shopee words a bad token: refresh (the refresh decides).
    assert caught.value.outcome == Outcome.AUTH
    assert caught.value.token_expired is True


def test_shopee_order_calls_with_an_expired_token_say_so(shopee):
    adapter = adapter_for(shopee)
    shopee.app.expire_tokens()

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(since=at(time.time() - 60), until=at(time.time()))

    assert caught.value.outcome == Outcome.AUTH
    assert caught.value.token_expired is True


def test_shopee_order_calls_with_a_wrong_partner_key_are_auth(shopee):
    adapter = ShopeeAdapter(
        base_url=shopee.url, credentials={**shopee.app.credentials(), "partner_key": "wrong"}
    )

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["240101ABCDEFGH"])

    assert caught.value.outcome == Outcome.AUTH
    assert "error_sign" in str(caught.value)


@pytest.mark.parametrize(
    ("fault", "outcome", "retry_after"),
    [
        (
            shopee_error(
                429, "error_too_many_request", "Too many requests.", **{"Retry-After": "3"}
            ),
            Outcome.THROTTLED,
            3.0,
        ),
        (shopee_error(200, "order.error_too_many_request", "Slow down."), Outcome.THROTTLED, None),
        (shopee_error(500, "error_server", "Internal error."), Outcome.RETRYABLE, None),
        (Fault(status=503, body="<html>busy</html>"), Outcome.RETRYABLE, None),
        (shopee_error(400, "order.error_param", "Wrong order_sn."), Outcome.PERMANENT, None),
    ],
)
def test_shopee_order_call_failures_are_classified(shopee, fault, outcome, retry_after):
    order = placed(shopee)
    shopee.app.inject(fault)

    with pytest.raises(AdapterError) as caught:
        adapter_for(shopee).orders_fetch([order.order_id])

    assert caught.value.outcome == outcome
    assert caught.value.retry_after == retry_after
    assert caught.value.token_expired is False


def test_shopee_order_calls_transport_failure_is_retryable():
    with SandboxServer(Receiver()) as gone:
        url = gone.url
    adapter = ShopeeAdapter(
        base_url=url,
        credentials={"partner_id": "1", "partner_key": "k", "shop_id": "1", "access_token": "t"},
        timeout=2,
    )

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(since=at(time.time() - 60), until=at(time.time()))

    assert caught.value.outcome == Outcome.RETRYABLE


def test_shopee_order_list_is_signed_like_the_stock_calls(shopee):
    placed(shopee)
    adapter_for(shopee).orders_updated(since=at(time.time() - 60), until=at(time.time() + 1))

    (request,) = calls(shopee, ORDER_LIST_PATH)
    query = {name: values[0] for name, values in request.query.items()}
    expected = shopee.app.expected_sign(
        ORDER_LIST_PATH, query["timestamp"], query["access_token"], query["shop_id"]
    )
    assert query["sign"] == expected
    assert shopee.app.counts["bad_signature"] == 0


# --- hostile pushes and answers -----------------------------------------------------------------


def storable(text: str) -> bool:
    """Whether PostgreSQL takes the text (no NUL, encodable) in a 100-character column."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text and len(text) <= 100


def push_body(data: dict, **envelope) -> bytes:
    return json.dumps({"shop_id": 1, "code": 3, "timestamp": 1, "data": data, **envelope}).encode()


HOSTILE_PUSHES = [
    b'{"code": "\xc2\xb2", "data": {}}',  # "²": isdigit() is true, int() refuses it
    b'{"code": "' + b"3" * 5000 + b'", "data": {}}',
    b"[" * 100_000,
    b'{"data": ' * 5000 + b"1" + b"}" * 5000,
    push_body({"ordersn": "\u0000", "status": "READY_TO_SHIP", "update_time": 1}),
    push_body({"ordersn": "\ud800", "status": "READY_TO_SHIP", "update_time": 1}),
    push_body({"ordersn": "2503010ABCDEF", "status": "\ud800", "update_time": 1}),
    push_body({"ordersn": "2503010ABCDEF", "status": "READY\u0000", "update_time": 1}),
    push_body({"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP", "update_time": 1e300}),
    push_body({"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP", "update_time": "9" * 400}),
    push_body({"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP"}, shop_id="\ud800"),
    push_body({"ordersn": ["x"], "status": {"a": 1}}, code=4, timestamp="\ud800"),
    push_body({"ordersn": "x" * 5000, "status": "READY_TO_SHIP"}),
]


@pytest.mark.parametrize("body", HOSTILE_PUSHES)
def test_shopee_webhook_parse_never_raises_on_hostile_bodies(body):
    adapter = ShopeeAdapter(base_url="http://unused", credentials={"shop_id": "1"})

    event = adapter.webhook_parse(body=body)

    assert event.topic in {"order", "other", "unreadable"}
    assert all(storable(text) for text in (event.event_key, event.order_id, event.status))
    if event.topic == "order":
        assert event.order_id == "2503010ABCDEF"


def test_shopee_push_with_an_order_number_unfit_to_store_is_unreadable():
    adapter = ShopeeAdapter(base_url="http://unused", credentials={"shop_id": "1"})
    body = push_body({"ordersn": "2503\u0000ABC", "status": "READY_TO_SHIP", "update_time": 1})

    event = adapter.webhook_parse(body=body)

    assert event == ChannelEvent(topic="unreadable", event_key=hashlib.sha256(body).hexdigest())


def test_shopee_push_for_another_shop_is_not_this_channels_order():
    data = {"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP", "update_time": 1660123127}
    adapter = ShopeeAdapter(base_url="http://unused", credentials={"shop_id": "1"})

    own = adapter.webhook_parse(body=push_body(data, shop_id=1))
    other_shop = adapter.webhook_parse(body=push_body(data, shop_id=2))
    no_shop = adapter.webhook_parse(body=json.dumps({"code": 3, "data": data}).encode())

    assert (own.topic, own.order_id) == ("order", "2503010ABCDEF")
    assert (other_shop.topic, other_shop.order_id, other_shop.status) == ("other", "", "")
    # keyed the same way as an order push (a redelivery of it is one event)
    assert other_shop.event_key == adapter.webhook_parse(body=push_body(data, shop_id=2)).event_key
    assert other_shop.event_key != own.event_key
    assert no_shop.topic == "order"


@pytest.mark.parametrize("partner_key", ["", None])
def test_shopee_webhook_verify_refuses_every_signature_without_a_partner_key(partner_key):
    adapter = ShopeeAdapter(
        base_url="http://unused", credentials={"shop_id": "1", "partner_key": partner_key}
    )
    url = "https://example.com/webhooks/shopee/1/"
    body = push_body({"ordersn": "2503010ABCDEF", "status": "READY_TO_SHIP", "update_time": 1})
    # the HMAC anybody can make with an empty key
    signature = hmac.new(b"", url.encode() + b"|" + body, hashlib.sha256).hexdigest()

    assert adapter.webhook_verify(headers={"Authorization": signature}, body=body, url=url) is False


def answered(response: object) -> Fault:
    """A 2xx Shopee answer whose `response` is the given value."""
    return Fault(status=200, body=json.dumps({"error": "", "message": "", "response": response}))


@pytest.mark.parametrize(
    "fault",
    [
        answered({"order_list": 5, "more": False}),
        answered({"order_list": [{"order_sn": 5}, "x", None], "more": "yes"}),
        Fault(status=200, body="[" * 100_000),
        Fault(status=200, body='{"error": "", "response": ' * 3000 + "1" + "}" * 3000),
    ],
)
def test_shopee_orders_updated_odd_answers_raise_retryable_adapter_errors(shopee, fault):
    shopee.app.inject(fault)

    with pytest.raises(AdapterError) as caught:
        adapter_for(shopee).orders_updated(since=at(time.time() - 60), until=at(time.time()))

    assert caught.value.outcome == Outcome.RETRYABLE


@pytest.mark.parametrize("order_list", [5, "x", {"a": 1}])
def test_shopee_orders_fetch_odd_answer_shape_is_a_retryable_adapter_error(shopee, order_list):
    order = placed(shopee)
    shopee.app.inject(answered({"order_list": order_list}))

    with pytest.raises(AdapterError) as caught:
        adapter_for(shopee).orders_fetch([order.order_id])

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "`order_list` in the answer is not a list" in str(caught.value)


def detail_row(order_sn: str, quantity: object) -> dict:
    item = {"item_id": 1000, "model_id": 5000, "model_sku": "SKU-A", "model_discounted_price": 10}
    return {
        "order_sn": order_sn,
        "order_status": "READY_TO_SHIP",
        "update_time": 1,
        "item_list": [{**item, "model_quantity_purchased": quantity}],
    }


@pytest.mark.parametrize(
    "quantity", [-1, 0, 1.5, 10**13, 1e400, "1e13", "two", None, [2], 100_000_000]
)
def test_shopee_orders_fetch_leaves_out_an_order_with_an_invalid_quantity(shopee, quantity):
    # given: Shopee answers two orders, one with a quantity that is no whole number of units
    # (or more than an order line holds)
    rows = [detail_row("2503010BADBAD", quantity), detail_row("2503010GOODGD", 99_999_999)]
    shopee.app.inject(answered({"order_list": rows}))

    # when
    fetched = adapter_for(shopee).orders_fetch(["2503010BADBAD", "2503010GOODGD"])

    # then: the bad one is left for a later fetch; the good one comes back
    assert [o.external_id for o in fetched] == ["2503010GOODGD"]
    assert fetched[0].lines[0].quantity == Decimal(99_999_999)


def test_shopee_orders_fetch_takes_a_whole_quantity_written_as_text_or_float(shopee):
    rows = [detail_row("2503010AAAAAA", "2"), detail_row("2503010BBBBBB", 3.0)]
    shopee.app.inject(answered({"order_list": rows}))

    fetched = adapter_for(shopee).orders_fetch(["2503010AAAAAA", "2503010BBBBBB"])

    assert [o.lines[0].quantity for o in fetched] == [Decimal(2), Decimal(3)]


def test_shopee_orders_fetch_leaves_out_an_order_without_its_items(shopee):
    order = placed(shopee)
    row = {"order_sn": order.order_id, "order_status": "READY_TO_SHIP", "update_time": 1}
    shopee.app.inject(answered({"order_list": [row]}))
    shopee.app.inject(answered({"order_list": [{**row, "item_list": []}]}))
    adapter = adapter_for(shopee)

    assert adapter.orders_fetch([order.order_id]) == []
    assert adapter.orders_fetch([order.order_id]) == []
    (fetched,) = adapter.orders_fetch([order.order_id])  # the items are back
    assert len(fetched.lines) == 2


@pytest.mark.parametrize("price", ["1e400", "12345678901.5", "nan", "-1e10"])
def test_shopee_orders_fetch_prices_out_of_range_are_none(shopee, price):
    order = placed(shopee)
    order.lines[0].price = price if price != "nan" else "NaN"

    (fetched,) = adapter_for(shopee).orders_fetch([order.order_id])

    line = fetched.lines[0]
    assert (line.quantity, line.unit_price, line.discount) == (Decimal(2), None, None)
    assert fetched.lines[1].unit_price == Decimal("10.0")


def test_shopee_orders_fetch_unexpected_failure_in_parsing_is_a_retryable_adapter_error(shopee):
    class Broken(ShopeeAdapter):
        def _order_call(self, path, params):
            raise TypeError("'int' object is not iterable")

    adapter = Broken(base_url=shopee.url, credentials=shopee.app.credentials())

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["2503010ABCDEF"])

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "could not be read (TypeError)" in str(caught.value)
    assert isinstance(caught.value.__cause__, TypeError)
