"""TikTok Shop and Tokopedia & Shop orders: notifications, order search and detail, both
through the adapter against the sandbox over real HTTP."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from channels_sync.adapters.base import OrderStatus
from channels_sync.adapters.tiktok import ORDER_STATUSES, TikTokAdapter, TokopediaAdapter
from channels_sync.models import Channel
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.channels_sync.conftest import listing_keys

DOCUMENTED = [
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
    "CANCEL",
]


class Receiver(SandboxApp):
    """A webhook endpoint that records every request and answers 200 with an empty body."""

    name = "receiver"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(200, b"", content_type="text/plain")


@pytest.fixture(scope="module")
def _receiver_server() -> Iterator[SandboxServer]:
    with SandboxServer(Receiver()) as server:
        yield server


@pytest.fixture
def receiver(_receiver_server) -> SandboxServer:
    _receiver_server.app.reset()
    return _receiver_server


def channel_url(channel: Channel) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{channel.type}/{channel.pk}/"


@pytest.fixture(params=["tiktok", "tokopedia"])
def shop(request, wire, receiver):
    """(server, channel, adapter) for a TikTok Shop or a Tokopedia & Shop channel whose
    sandbox notifies the receiver."""
    server = request.getfixturevalue(request.param)
    channel = wire(server, request.param, products=())
    server.app.configure(webhook_url=f"{receiver.url}/webhooks/{channel.type}/{channel.pk}/")
    return server, channel, channel_adapter(channel)


def line(n: int, quantity: int, price: str = "12.50") -> dict:
    keys = listing_keys("tiktok", n)
    return {"keys": keys, "sku": f"SELLER-{n}", "quantity": quantity, "price": price}


def received(receiver: SandboxServer) -> list[SandboxRequest]:
    return list(receiver.app.requests)


# --- notifications ---------------------------------------------------------------------------


def test_tiktok_notification_verifies_with_the_adapter_and_parses_to_the_order_event(
    shop, receiver
):
    server, channel, adapter = shop
    # when
    order = server.app.order_create(lines=[line(1, 2)], status="AWAITING_SHIPMENT")
    # then
    [request] = received(receiver)
    assert adapter.webhook_verify(
        headers=request.headers, body=request.body, url=channel_url(channel)
    )
    event = adapter.webhook_parse(body=request.body)
    assert event.topic == "order"
    assert event.order_id == order.order_id
    assert event.status == "AWAITING_SHIPMENT"
    assert event.updated_at == datetime.fromtimestamp(int(order.updated), tz=UTC)
    assert event.event_key == json.loads(request.body)["tts_notification_id"]
    assert adapter.order_status(event.status) == OrderStatus.PAID


def test_tiktok_notification_with_a_bad_signature_fails_verification(shop, receiver):
    server, channel, adapter = shop
    server.app.order_create(
        lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(bad_signature=True)
    )
    [request] = received(receiver)
    assert not adapter.webhook_verify(
        headers=request.headers, body=request.body, url=channel_url(channel)
    )
    # The body itself is a real notification: only the key was wrong.
    assert adapter.webhook_parse(body=request.body).topic == "order"


def test_tiktok_notification_of_a_cancelled_order_uses_the_webhook_spelling(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(lines=[line(1, 1)], status="AWAITING_SHIPMENT")
    server.app.order_update(order.order_id, status="CANCELLED")
    event = adapter.webhook_parse(body=received(receiver)[-1].body)
    assert event.status == "CANCEL"
    assert adapter.order_status(event.status) == OrderStatus.CANCELLED


def test_tiktok_notification_keys_are_stable_per_change_and_differ_between_changes(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(lines=[line(1, 1)], status="UNPAID")
    # when: the same change notified again, then two later changes
    server.app.notify(order, NotifyFaults())
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    first, again, paid, paid_later = (
        adapter.webhook_parse(body=request.body) for request in received(receiver)
    )
    # then
    assert first.event_key == again.event_key
    assert len({first.event_key, paid.event_key, paid_later.event_key}) == 3
    assert paid.status == paid_later.status
    assert paid_later.updated_at > paid.updated_at


def test_tiktok_webhook_parse_without_a_notification_id_keys_by_order_status_and_time():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})

    def body(status: str, update_time: int) -> bytes:
        data = {"order_id": "576486316948490001", "order_status": status}
        return json.dumps({"type": 1, "data": {**data, "update_time": update_time}}).encode()

    one = adapter.webhook_parse(body=body("UNPAID", 1644412885))
    assert one.topic == "order"
    assert one.event_key == adapter.webhook_parse(body=body("UNPAID", 1644412885)).event_key
    assert one.event_key != adapter.webhook_parse(body=body("UNPAID", 1644412886)).event_key
    assert one.event_key != adapter.webhook_parse(body=body("ON_HOLD", 1644412885)).event_key


def test_tiktok_webhook_parse_cancellation_request_is_an_order_event_that_changes_nothing():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    body = json.dumps(
        {
            "type": 11,
            "tts_notification_id": "7327112393057371910",
            "shop_id": "7494049642642441621",
            "timestamp": 1644412885,
            "data": {
                "order_id": "576486316948490001",
                "cancellations_role": "BUYER",
                "cancel_status": "CANCELLATION_REQUEST_PENDING",
                "cancel_id": "4035318504086604100",
                "create_time": 1627587600,
            },
        }
    ).encode()
    event = adapter.webhook_parse(body=body)
    assert event.topic == "order"
    assert event.event_key == "7327112393057371910"
    assert event.order_id == "576486316948490001"
    assert event.status == "CANCELLATION_REQUEST_PENDING"
    assert event.updated_at == datetime.fromtimestamp(1627587600, tz=UTC)
    assert adapter.order_status(event.status) is None


def test_tiktok_webhook_parse_other_types_and_unreadable_bodies():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    inventory = json.dumps(
        {
            "type": 27,
            "tts_notification_id": "7327112393057371911",
            "data": {"product_id": "1", "sku_id": "2"},
        }
    ).encode()
    event = adapter.webhook_parse(body=inventory)
    assert (event.topic, event.event_key, event.order_id) == ("other", "7327112393057371911", "")
    for body in (b"not json", b"\xff\xfe", b"[1, 2]", b"{}", b"[" * 100_000, b""):
        event = adapter.webhook_parse(body=body)
        assert event.topic == "unreadable"
        assert event.event_key == hashlib.sha256(body).hexdigest()


def test_tiktok_webhook_ack_is_200_with_an_empty_body():
    assert TikTokAdapter.webhook_ack[:2] == (200, b"")
    assert TokopediaAdapter.webhook_ack[:2] == (200, b"")


# --- delivery faults -------------------------------------------------------------------------


def test_tiktok_notification_copies_arrive_with_one_key(shop, receiver):
    server, _, adapter = shop
    server.app.order_create(lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(copies=3))
    keys = {adapter.webhook_parse(body=request.body).event_key for request in received(receiver)}
    assert len(received(receiver)) == 3
    assert len(keys) == 1


def test_tiktok_dropped_notification_never_arrives_but_the_order_search_finds_it(shop, receiver):
    server, _, adapter = shop
    before = datetime.now(tz=UTC) - timedelta(seconds=2)
    order = server.app.order_create(
        lines=[line(1, 1)], status="AWAITING_SHIPMENT", faults=NotifyFaults(drop=True)
    )
    assert received(receiver) == []
    assert server.app.deliveries[-1].error == "dropped"
    refs = adapter.orders_updated(since=before, until=datetime.now(tz=UTC) + timedelta(seconds=2))
    assert [ref.external_id for ref in refs] == [order.order_id]


def test_tiktok_held_notification_released_later_arrives_out_of_order(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(
        lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(hold=True)
    )
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    assert len(received(receiver)) == 1
    # when
    [delivery] = server.app.notifications_release()
    # then: the older change arrives last
    assert delivery.http_status == 200
    paid, unpaid = (adapter.webhook_parse(body=request.body) for request in received(receiver))
    assert (paid.status, unpaid.status) == ("AWAITING_SHIPMENT", "UNPAID")
    assert unpaid.updated_at < paid.updated_at
    assert server.app.held == []


def test_tiktok_sandbox_order_control_routes_create_and_update(shop, receiver):
    import requests

    server, _, adapter = shop
    created = requests.post(
        f"{server.url}/_sandbox/orders",
        json={"lines": [line(1, 2)], "status": "UNPAID"},
        timeout=10,
    )
    assert created.status_code == 201
    order_id = created.json()["order_id"]
    assert len(order_id) == 18
    assert order_id.isdigit()
    updated = requests.post(
        f"{server.url}/_sandbox/orders/{order_id}",
        json={"status": "AWAITING_SHIPMENT", "faults": {"copies": 2}},
        timeout=10,
    )
    assert updated.status_code == 200
    assert updated.json()["paid"] is not None
    statuses = [adapter.webhook_parse(body=r.body).status for r in received(receiver)]
    assert statuses == ["UNPAID", "AWAITING_SHIPMENT", "AWAITING_SHIPMENT"]


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UNPAID", OrderStatus.PENDING_PAYMENT),
        ("ON_HOLD", OrderStatus.PAID),
        ("AWAITING_SHIPMENT", OrderStatus.PAID),
        ("PARTIALLY_SHIPPING", OrderStatus.READY_TO_SHIP),
        ("AWAITING_COLLECTION", OrderStatus.READY_TO_SHIP),
        ("IN_TRANSIT", OrderStatus.SHIPPED),
        ("DELIVERED", OrderStatus.DELIVERED),
        ("COMPLETED", OrderStatus.COMPLETED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("CANCEL", OrderStatus.CANCELLED),
        ("cancel", OrderStatus.CANCELLED),
        ("CANCELLATION_REQUEST_PENDING", None),
        ("CANCELLATION_REQUEST_CANCELLED", None),
        ("CANCELLATION_REQUEST_SUCCESS", None),
        ("CANCELLATION_REQUEST_COMPLETE", None),
        ("SOMETHING_NEW", None),
        ("", None),
    ],
)
def test_tiktok_order_status_maps_every_documented_status(raw, expected):
    assert TikTokAdapter.order_status(raw) == expected
    assert TokopediaAdapter.order_status(raw) == expected


def test_tiktok_order_status_table_covers_every_documented_order_status():
    for raw in DOCUMENTED:
        assert ORDER_STATUSES[raw] is not None
