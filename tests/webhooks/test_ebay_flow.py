"""eBay end to end: the endpoint check, signed notifications into orders, polling."""

import hashlib
import json
import time
from decimal import Decimal

import pytest
from django.test import Client

from channels_sync.sandbox.base import NotifyFaults
from inventory.models import Reservation
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent
from webhooks.services.polling import orders_poll_channel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(ebay, hooked, stocked, warehouse):
    """An eBay channel with one listed product holding 10, notifications to the live server."""
    product = stocked(10, sku="EBAY-PRODUCT-0")
    channel = hooked(ebay, "ebay", warehouses=[warehouse], products=[product])
    return ebay, channel, product


def place(server, status: str = "PAID", quantity: int = 2, **faults):
    keys = listing_keys("ebay", 0)
    return server.app.order_create(
        lines=[{"keys": keys, "sku": keys["sku"], "quantity": quantity}],
        status=status,
        faults=NotifyFaults(**faults) if faults else None,
    )


def reserved(product) -> Decimal:
    rows = Reservation.objects.filter(level__product=product, status="active")
    return sum((r.quantity for r in rows), Decimal(0))


def test_ebay_endpoint_check_through_the_webhook_url(shop):
    server, _channel, _product = shop
    # when eBay checks the endpoint it was given
    status, ok = server.app.endpoint_validate()
    # then the answer is the challenge response eBay computes for that URL
    assert (status, ok) == (200, True)


def test_ebay_endpoint_check_without_a_code_is_a_json_400(shop):
    _server, channel, _product = shop
    response = Client().get(f"/webhooks/ebay/{channel.pk}/")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "challenge_code_missing"
    assert set(body) == {"code", "message", "details", "correlation_id"}


def test_ebay_endpoint_check_with_a_nul_in_the_query_is_a_json_400(shop):
    _server, channel, _product = shop
    response = Client().get(f"/webhooks/ebay/{channel.pk}/?challenge_code=A%00B")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body) == {"code", "message", "details", "correlation_id"}


def test_get_on_a_channel_type_without_an_endpoint_check_is_a_json_405(tiktok, wire):
    channel = wire(tiktok, "tiktok")
    response = Client().get(f"/webhooks/tiktok/{channel.pk}/", {"challenge_code": "x"})
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "POST"


def test_ebay_notification_reserves_and_is_acknowledged_with_204(shop):
    server, channel, product = shop
    # when eBay confirms a paid order
    order = place(server, quantity=3)
    # then the notification was verified, stored, answered 204 and processed
    [delivery] = server.app.deliveries
    assert delivery.http_status == 204
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.notified_status, event.status) == (
        "order",
        "ORDER_CONFIRMATION",
        WebhookEvent.Status.PROCESSED,
    )
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    [line] = row.lines.all()
    assert (line.product_id, line.quantity) == (product.pk, Decimal(3))
    assert line.keys == listing_keys("ebay", 0)
    assert reserved(product) == Decimal(3)


def test_ebay_duplicate_and_badly_signed_notifications(shop):
    server, channel, _product = shop
    order = place(server, copies=3)
    assert [d.http_status for d in server.app.deliveries] == [204, 204, 204]
    assert WebhookEvent.objects.filter(channel=channel).count() == 1
    server.app.order_update(
        order.order_id, status="FULFILLED", faults=NotifyFaults(bad_signature=True)
    )
    assert server.app.deliveries[-1].http_status == 401
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_ebay_shipped_notification_commits(shop):
    server, channel, product = shop
    order = place(server, quantity=2)
    server.app.order_update(order.order_id, status="FULFILLED")
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "shipped"
    assert reserved(product) == Decimal(0)
    assert product.stock_levels.get().on_hand == Decimal(8)


def test_ebay_polling_finds_a_dropped_order_and_a_cancellation(shop):
    server, channel, product = shop
    # given an order whose confirmation is lost
    order = place(server, quantity=4, drop=True)
    assert not WebhookEvent.objects.filter(channel=channel).exists()
    # when the channel is polled
    orders_poll_channel(channel_id=channel.pk)
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert (row.status, reserved(product)) == ("paid", Decimal(4))
    # and a cancellation (eBay sends no notification for it) is found by the next poll
    server.app.order_update(order.order_id, status="CANCELED")
    # (the sandbox stamps a change at least a second after the last one: let that pass)
    time.sleep(max(0.0, order.updated - time.time()) + 0.05)
    orders_poll_channel(channel_id=channel.pk)
    row.refresh_from_db()
    assert (row.status, reserved(product)) == ("cancelled", Decimal(0))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff",
        b'{"metadata": {"topic": "X"}, "notification": {"data": {"orderId": "\\u0000"}}}',
        b'{"metadata": {}, "notification": {"data": {"orderId": "\\ud800"}}}',
        b"[" * 100_000,
        b'{"metadata": {}, "notification": {"notificationId": 1' + b"0" * 5000 + b"}}",
    ],
)
def test_ebay_hostile_bodies_signed_by_ebay_are_stored_unreadable(shop, body):
    server, channel, _product = shop
    headers = {
        "Content-Type": "application/json",
        "X-EBAY-SIGNATURE": server.app.signature_header(body),
    }
    response = Client().post(
        f"/webhooks/ebay/{channel.pk}/",
        data=body,
        content_type="application/json",
        HTTP_X_EBAY_SIGNATURE=headers["X-EBAY-SIGNATURE"],
    )
    assert response.status_code == 204
    event = WebhookEvent.objects.get(channel=channel)
    assert event.topic == "unreadable"
    assert json.dumps(event.headers)  # kept headers are storable


def test_ebay_key_on_an_unsupported_curve_is_a_401_never_a_500(shop):
    from tests.channels_sync.test_ebay import _unsupported_curve_pem

    server, channel, _product = shop
    server.app.public_key_serve(server.app.kid, _unsupported_curve_pem())
    body, headers = server.app.signed_notification({"metadata": {}, "notification": {}})
    for _ in range(2):
        response = Client().post(
            f"/webhooks/ebay/{channel.pk}/",
            data=body,
            content_type="application/json",
            HTTP_X_EBAY_SIGNATURE=headers["X-EBAY-SIGNATURE"],
        )
        assert (response.status_code, response.json()["code"]) == (401, "invalid_signature")
    assert not WebhookEvent.objects.exists()


def test_ebay_notification_without_an_id_re_spaced_is_one_event(shop):
    server, channel, _product = shop
    message = {
        "metadata": {"topic": "ITEM_AVAILABILITY"},
        "notification": {"eventDate": "2026-01-01T00:00:00.000Z", "data": {"itemId": "1"}},
    }
    # eBay signs the compact form; a body re-spaced in transit verifies through it too
    compact = json.dumps(message, separators=(",", ":")).encode()
    signature = server.app.signature_header(compact)
    for body in (compact, json.dumps(message).encode(), json.dumps(message, indent=2).encode()):
        response = Client().post(
            f"/webhooks/ebay/{channel.pk}/",
            data=body,
            content_type="application/json",
            HTTP_X_EBAY_SIGNATURE=signature,
        )
        assert response.status_code == 204
    [event] = WebhookEvent.objects.filter(channel=channel)
    assert event.event_key == hashlib.sha256(compact).hexdigest()
