"""Square notifications end to end: signed by the sandbox over URL + body, received by the
live server, stored once per event id, processed into orders and stock observations; and
order polling of a Square channel."""

from decimal import Decimal

import pytest
import requests

from channels_sync.models import Conflict
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.push import channel_push
from inventory.models import Reservation
from orders.models import Order
from tests.channels_sync import square_fixtures
from tests.channels_sync.square_fixtures import square_keys
from webhooks.models import WebhookEvent
from webhooks.services.polling import orders_poll_channel

_square_server = square_fixtures._square_server
square = square_fixtures.square
square_wire = square_fixtures.square_wire

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(square, square_wire, stocked, warehouse, live_server, settings):
    """A Square channel with two listings pushed at 10 and 6, notifications to the server."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.CHANNEL_RECONCILE_SETTLE_SECONDS = 0
    products = [stocked(10), stocked(6)]
    channel = square_wire(
        square, warehouses=[warehouse], products=products, dirty=True, hooked=True
    )
    assert channel_push(channel_id=channel.pk).pushed == 2
    return square, channel, products


def reserved(product) -> Decimal:
    rows = Reservation.objects.filter(level__product=product, status="active")
    return sum((r.quantity for r in rows), Decimal(0))


def place(server, quantity: int, status: str = "OPEN", **faults):
    return server.app.order_create(
        lines=[{"keys": square_keys(0), "sku": "", "quantity": quantity, "price": "9.99"}],
        status=status,
        faults=NotifyFaults(**faults) if faults else None,
    )


def test_square_order_notification_is_stored_once_and_becomes_a_paid_order(shop):
    server, channel, (product, _) = shop
    # when Square notifies a new paid order three times (one event id)
    order = place(server, 3, copies=3)
    # then every copy is acknowledged, one event kept and processed, the order reserved
    assert [d.http_status for d in server.app.deliveries] == [200, 200, 200]
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.order_id, event.status) == (
        "order",
        order.order_id,
        WebhookEvent.Status.PROCESSED,
    )
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    assert row.lines.get().product == product
    assert reserved(product) == Decimal(3)
    # when it is cancelled, the reservation goes
    server.app.order_update(order.order_id, status="CANCELED")
    row.refresh_from_db()
    assert row.status == "cancelled"
    assert reserved(product) == Decimal(0)
    assert WebhookEvent.objects.filter(channel=channel).count() == 2


def test_square_unpaid_order_is_pending_then_paid_then_completed(shop):
    server, channel, (product, _) = shop

    order = place(server, 2, status="OPEN_UNPAID")
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "pending_payment"
    assert reserved(product) == Decimal(2)
    server.app.order_update(order.order_id, status="OPEN")
    row.refresh_from_db()
    assert row.status == "paid"
    server.app.order_update(order.order_id, status="COMPLETED")
    row.refresh_from_db()
    assert row.status == "completed"
    assert reserved(product) == Decimal(0)


def test_square_notification_with_a_bad_signature_is_refused_401_and_not_stored(shop):
    server, channel, _ = shop

    place(server, 1, bad_signature=True)

    assert [d.http_status for d in server.app.deliveries] == [401]
    assert not WebhookEvent.objects.filter(channel=channel).exists()
    assert not Order.objects.exists()


def test_square_notification_signed_for_another_url_is_refused(shop):
    server, channel, _ = shop
    body, headers = server.app.notification(place(server, 1, drop=True), bad_signature=False)
    other = server.app.sign(body, url=channel_webhook_url(channel) + "?x=1")

    refused = requests.post(
        channel_webhook_url(channel),
        data=body,
        headers={**headers, "x-square-hmacsha256-signature": other},
        timeout=10,
    )
    accepted = requests.post(channel_webhook_url(channel), data=body, headers=headers, timeout=10)

    assert refused.status_code == 401
    assert accepted.status_code == 200
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_square_inventory_count_updated_is_observed_and_opens_a_conflict(shop):
    server, channel, _ = shop

    delivery = server.app.stock_set_external(square_keys(1), 2)

    assert delivery.http_status == 200
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.status) == ("stock", WebhookEvent.Status.PROCESSED)
    listing = channel.listings.get(external_item_id=square_keys(1)["catalog_object_id"])
    assert listing.last_observed_quantity == 2
    conflict = Conflict.objects.get()
    assert (conflict.listing_id, conflict.source) == (listing.pk, Conflict.Source.WEBHOOK)
    assert (conflict.ours, conflict.theirs) == (Decimal(6), Decimal(2))


def test_square_inventory_count_agreeing_with_ours_opens_nothing(shop):
    server, channel, _ = shop

    server.app.stock_set_external(square_keys(0), 10)

    assert WebhookEvent.objects.get(channel=channel).status == WebhookEvent.Status.PROCESSED
    assert not Conflict.objects.exists()


def test_square_poll_finds_an_order_whose_notification_was_dropped(shop):
    server, channel, (product, _) = shop
    order = place(server, 4, drop=True)
    assert not Order.objects.exists()

    report = orders_poll_channel(channel_id=channel.pk)

    assert report.outcome == "ok"
    assert (report.listed, report.applied) == (1, 1)
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    assert reserved(product) == Decimal(4)
    # a second poll over the same range changes nothing
    assert orders_poll_channel(channel_id=channel.pk).outcome == "ok"
    assert reserved(product) == Decimal(4)
    assert Order.objects.count() == 1
