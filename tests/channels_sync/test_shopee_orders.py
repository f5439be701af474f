"""Shopee orders: pushes (the sandbox's notifications through the adapter), order statuses,
the order list and detail calls, and their error classification."""

import hashlib
import json
from datetime import UTC, datetime

import pytest
from django.conf import settings

from channels_sync.adapters.base import ChannelEvent, OrderStatus
from channels_sync.adapters.shopee import ORDER_STATUSES, ShopeeAdapter
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse, SandboxServer

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
    import requests

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
    import requests

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
