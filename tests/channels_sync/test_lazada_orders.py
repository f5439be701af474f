"""Lazada orders: push notifications, the order list and detail, against the Lazada sandbox
over real HTTP on localhost."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.conf import settings

from channels_sync.adapters.base import ChannelEvent
from channels_sync.adapters.lazada import push_event
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.channels_sync.conftest import listing_keys


class Receiver(SandboxApp):
    """A webhook endpoint that records what it is sent and answers 200 with no body."""

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


@pytest.fixture
def channel(lazada, wire, receiver):
    """A Lazada channel on the sandbox, which pushes to the receiver."""
    channel = wire(lazada, "lazada")
    lazada.app.configure(webhook_url=f"{receiver.url}/webhooks/lazada/{channel.pk}/")
    return channel


def webhook_url(channel) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/lazada/{channel.pk}/"


def line(n: int, quantity: int = 1, price: str = "10.00") -> dict:
    keys = listing_keys("lazada", n)
    return {
        "keys": {"item_id": keys["item_id"], "sku_id": keys["sku_id"]},
        "sku": keys["seller_sku"],
        "quantity": quantity,
        "price": price,
    }


def received(receiver) -> list[SandboxRequest]:
    return list(receiver.app.requests)


# --- notifications ----------------------------------------------------------------------------


def test_lazada_notification_verifies_and_parses_to_the_order_event(lazada, channel, receiver):
    # given
    adapter = channel_adapter(channel)

    # when
    order = lazada.app.order_create(lines=[line(0, quantity=2)], status="pending")

    # then
    (request,) = received(receiver)
    assert request.path == f"/webhooks/lazada/{channel.pk}/"
    url = webhook_url(channel)
    assert adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
    message = json.loads(request.body)
    assert message["message_type"] == 0
    assert message["data"]["trade_order_id"] == order.order_id
    event = adapter.webhook_parse(body=request.body)
    assert event.topic == "order"
    assert event.order_id == order.order_id
    assert event.status == "pending"
    assert event.updated_at == datetime.fromtimestamp(int(order.updated), tz=UTC)
    assert event.updated_at.tzinfo is UTC
    assert len(event.event_key) == 64
    assert adapter.webhook_ack == (200, b"", "text/plain")


def test_lazada_notification_with_a_bad_signature_fails_verification(lazada, channel, receiver):
    adapter = channel_adapter(channel)

    lazada.app.order_create(
        lines=[line(0)], status="unpaid", faults=NotifyFaults(bad_signature=True)
    )

    (request,) = received(receiver)
    assert not adapter.webhook_verify(
        headers=request.headers, body=request.body, url=webhook_url(channel)
    )
    assert lazada.app.deliveries[-1].bad_signature
    # The same body signed by the sandbox with the right key does verify.
    assert adapter.webhook_verify(
        headers=lazada.app.push_headers(request.body), body=request.body, url=webhook_url(channel)
    )


def test_lazada_notification_ids_look_like_lazadas(lazada, channel, receiver):
    order = lazada.app.order_create(lines=[line(0), line(1, quantity=3)], status="unpaid")

    data = json.loads(received(receiver)[0].body)["data"]
    assert order.order_id.isdigit()
    assert len(order.order_id) == 15
    assert data["trade_order_line_id"].isdigit()
    assert data["trade_order_line_id"] != order.order_id
    assert isinstance(data["status_update_time"], int)
    assert lazada.app.status_is_paid("unpaid") is False
    assert lazada.app.status_is_paid("pending") is True


def test_lazada_event_keys_are_stable_for_the_same_change_and_differ_otherwise(
    lazada, channel, receiver
):
    adapter = channel_adapter(channel)
    order = lazada.app.order_create(lines=[line(0)], status="unpaid", faults=NotifyFaults(copies=2))
    lazada.app.order_update(order.order_id, status="pending")
    lazada.app.order_update(order.order_id, status="pending")

    events = [adapter.webhook_parse(body=request.body) for request in received(receiver)]

    assert [event.status for event in events] == ["unpaid", "unpaid", "pending", "pending"]
    keys = [event.event_key for event in events]
    assert keys[0] == keys[1]  # a resent copy
    assert len({keys[1], keys[2], keys[3]}) == 3  # a new status; the same status later
    assert events[2].updated_at < events[3].updated_at


def test_lazada_event_key_is_a_digest_of_line_status_and_time():
    def body(line_id="1", status="pending", stamp=1603698638, order_id="260422900198363"):
        return json.dumps(
            {
                "seller_id": "1",
                "message_type": 0,
                "data": {
                    "order_status": status,
                    "trade_order_id": order_id,
                    "trade_order_line_id": line_id,
                    "status_update_time": stamp,
                },
                "timestamp": 1603766859530,
                "site": "lazada_vn",
            }
        ).encode()

    base = push_event(body())
    # The push time and the JSON layout are not part of the key.
    same = push_event(body().replace(b"1603766859530", b"1603766999999").replace(b", ", b","))

    assert base.event_key == same.event_key
    assert push_event(body(line_id="2")).event_key != base.event_key
    assert push_event(body(status="packed")).event_key != base.event_key
    assert push_event(body(stamp=1603698639)).event_key != base.event_key
    assert base.updated_at == datetime(2020, 10, 26, 7, 50, 38, tzinfo=UTC)
    assert base.order_id == "260422900198363"


@pytest.mark.parametrize(
    ("body", "topic"),
    [
        (b"not json", "unreadable"),
        (b"\xff\xfe", "unreadable"),
        (b"[1, 2]", "unreadable"),
        (b'{"data": {}}', "unreadable"),
        (b'{"message_type": 0, "data": "x"}', "unreadable"),
        (b'{"message_type": 0, "data": {"order_status": "pending"}}', "unreadable"),
        (b'{"message_type": 0, "data": {"trade_order_id": "1", "order_status": 5}}', "unreadable"),
        (b"[" * 100000, "unreadable"),
        (b'{"message_type": 3, "data": {"item_id": 1}}', "other"),
        (b'{"message_type": 10, "data": {"reverse_order_id": 1}}', "other"),
    ],
)
def test_lazada_webhook_parse_never_raises(body, topic):
    event = push_event(body)

    assert event == ChannelEvent(topic=topic, event_key=hashlib.sha256(body).hexdigest())


def test_lazada_webhook_parse_falls_back_to_the_push_time():
    body = json.dumps(
        {
            "message_type": 0,
            "data": {"order_status": "unpaid", "trade_order_id": 260422900198363},
            "timestamp": 1603766859530,
        }
    ).encode()

    event = push_event(body)

    assert event.topic == "order"
    assert event.order_id == "260422900198363"
    assert event.updated_at == datetime(2020, 10, 27, 2, 47, 39, 530000, tzinfo=UTC)


# --- delivery faults --------------------------------------------------------------------------


def test_lazada_notification_faults_copy_drop_hold_and_release(lazada, channel, receiver):
    adapter = channel_adapter(channel)
    order = lazada.app.order_create(
        lines=[line(0)], status="unpaid", faults=NotifyFaults(hold=True)
    )
    lazada.app.order_update(order.order_id, status="pending", faults=NotifyFaults(copies=3))
    lazada.app.order_update(order.order_id, status="packed", faults=NotifyFaults(drop=True))
    assert [adapter.webhook_parse(body=r.body).status for r in received(receiver)] == [
        "pending",
        "pending",
        "pending",
    ]

    released = lazada.app.notifications_release()

    statuses = [adapter.webhook_parse(body=r.body).status for r in received(receiver)]
    assert statuses == ["pending", "pending", "pending", "unpaid"]  # the held one, late
    assert [d.http_status for d in released] == [200]
    assert ("packed", None, "dropped") in [
        (d.status, d.http_status, d.error) for d in lazada.app.deliveries
    ]
    assert all(
        adapter.webhook_verify(headers=r.headers, body=r.body, url=webhook_url(channel))
        for r in received(receiver)
    )
