"""Shopify deliveries through `/webhooks/shopify/<id>/`, and order polling, end to end."""

from decimal import Decimal

import pytest
from django.test import Client

from channels_sync.models import ChannelListing
from channels_sync.sandbox.base import NotifyFaults
from inventory.models import Reservation, StockLevel
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent
from webhooks.services.polling import orders_poll_channel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(shopify, hooked, stocked, warehouse):
    """A Shopify channel with one listed product holding 10, deliveries to the live server."""
    product = stocked(10)
    channel = hooked(shopify, "shopify", warehouses=[warehouse], products=[product])
    return shopify, channel, product


def place(server, status: str = "PAID", quantity: int = 2, **faults):
    return server.app.order_create(
        lines=[{"keys": listing_keys("shopify", 0), "sku": "SKU-0", "quantity": quantity}],
        status=status,
        faults=NotifyFaults(**faults) if faults else None,
    )


def reserved(product) -> Decimal:
    return sum(
        (r.quantity for r in Reservation.objects.filter(level__product=product, status="active")),
        Decimal(0),
    )


def test_shopify_paid_order_delivery_is_stored_and_processed(shop):
    server, channel, product = shop

    order = place(server, quantity=3)

    (delivery,) = server.app.deliveries
    assert delivery.http_status == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert (event.topic, event.order_id) == ("order", order.order_id)
    assert event.headers["X-Shopify-Topic"] == "orders/create"
    assert event.event_key == event.headers["X-Shopify-Webhook-Id"]
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    assert reserved(product) == Decimal(3)
    line = row.lines.get()
    assert line.product_id == product.pk


def test_shopify_fulfilled_order_commits_and_cancelled_releases(shop):
    server, _channel, product = shop
    shipped = place(server, quantity=2)
    cancelled = place(server, quantity=4)

    server.app.order_update(shipped.order_id, status="FULFILLED")
    server.app.order_update(cancelled.order_id, status="CANCELLED")

    assert Order.objects.get(external_id=shipped.order_id).status == "shipped"
    assert Order.objects.get(external_id=cancelled.order_id).status == "cancelled"
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (Decimal(8), Decimal(0))


def test_shopify_bad_signature_is_refused_with_401_and_not_stored(shop):
    server, _channel, _product = shop

    place(server, bad_signature=True)

    assert [d.http_status for d in server.app.deliveries] == [401]
    assert WebhookEvent.objects.count() == 0
    assert Order.objects.count() == 0


def test_shopify_delivery_for_another_shop_is_refused(shop, live_server):
    server, channel, _product = shop
    body = b'{"id": 5500000000001, "financial_status": "paid"}'
    headers = server.app.webhook_headers("orders/paid", body, "w-other")
    headers["X-Shopify-Shop-Domain"] = "another-shop.myshopify.com"
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}

    response = Client().post(
        f"/webhooks/shopify/{channel.pk}/", data=body, content_type="application/json", **extra
    )

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert WebhookEvent.objects.count() == 0


def test_shopify_duplicate_webhook_id_is_stored_once(shop):
    server, channel, product = shop

    place(server, quantity=2, copies=3)

    assert [d.http_status for d in server.app.deliveries] == [200, 200, 200]
    assert WebhookEvent.objects.filter(channel=channel).count() == 1
    assert Order.objects.count() == 1
    assert Reservation.objects.filter(level__product=product).count() == 1


def test_shopify_inventory_level_update_is_recorded_on_the_listing(shop):
    server, channel, _product = shop
    listing = channel.listings.get()

    server.app.stock_set_external(listing_keys("shopify", 0), 6)

    event = WebhookEvent.objects.get()
    assert event.topic == "stock"
    assert event.status == WebhookEvent.Status.PROCESSED
    listing = ChannelListing.objects.get(pk=listing.pk)
    assert listing.last_observed_quantity == 6
    # and it is what the next push expects the shop to show (its compare-and-set)
    assert listing.channel_quantity == 6


def test_shopify_polling_finds_a_dropped_order(shop):
    server, channel, product = shop
    order = place(server, quantity=2, drop=True)
    assert WebhookEvent.objects.count() == 0

    report = orders_poll_channel(channel_id=channel.pk)

    assert report.outcome == "ok"
    assert report.applied == 1
    assert Order.objects.get(channel=channel, external_id=order.order_id).status == "paid"
    assert reserved(product) == Decimal(2)
    queries = [r.body.decode() for r in server.app.requests]
    assert any("orders(first: $first" in q and "updated_at:>=" in q for q in queries)


def test_shopify_orders_updated_walks_pages(shop):
    server, channel, _product = shop
    server.app.configure(order_page_size=2)
    ids = {place(server, drop=True).order_id for _ in range(5)}
    from datetime import timedelta

    from django.utils import timezone

    from channels_sync.services.tokens import channel_adapter

    adapter = channel_adapter(channel)
    now = timezone.now()

    refs = adapter.orders_updated(since=now - timedelta(hours=1), until=now + timedelta(seconds=2))
    orders = adapter.orders_fetch(sorted(ids))

    assert {ref.external_id for ref in refs} == ids
    assert {ref.raw_status for ref in refs} == {"PAID/UNFULFILLED"}
    assert {o.external_id for o in orders} == ids
    line = orders[0].lines[0]
    assert line.keys == listing_keys("shopify", 0)
    assert (line.sku, line.quantity) == ("SKU-0", Decimal(2))
    assert (
        adapter.orders_updated(since=now + timedelta(hours=1), until=now + timedelta(hours=2)) == []
    )
