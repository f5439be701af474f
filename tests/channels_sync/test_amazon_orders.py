"""Amazon orders: getOrders paging and its two-minute lag, order detail and items, and orders
arriving by polling alone (Amazon has no HTTP webhooks)."""

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from channels_sync.adapters.amazon.orders import ORDER_STATUSES
from channels_sync.adapters.base import AdapterError, OrderStatus, Outcome
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.tokens import channel_adapter
from inventory.models import Reservation
from orders.models import Order
from webhooks import tasks as webhook_tasks
from webhooks.services.polling import poll_window

DOCUMENTED = {
    "PendingAvailability": OrderStatus.PENDING_PAYMENT,
    "Pending": OrderStatus.PENDING_PAYMENT,
    "Unshipped": OrderStatus.PAID,
    "PartiallyShipped": OrderStatus.READY_TO_SHIP,
    "Shipped": OrderStatus.SHIPPED,
    "InvoiceUnconfirmed": OrderStatus.SHIPPED,
    "Canceled": OrderStatus.CANCELLED,
    "Unfulfillable": OrderStatus.CANCELLED,
}


@pytest.fixture
def shop(amazon, wire):
    """(server, channel, adapter): an Amazon channel whose new orders are 5 minutes old."""
    channel = wire(amazon, "amazon", products=())
    amazon.app.configure(order_age=300)
    return amazon, channel, channel_adapter(channel)


def line(n: int, quantity: int, price: str = "12.50") -> dict:
    return {
        "keys": {"seller_sku": f"SKU-{n}"},
        "sku": f"SKU-{n}",
        "quantity": quantity,
        "price": price,
    }


def window() -> dict:
    now = timezone.now()
    return {"since": now - timedelta(hours=1), "until": now}


def test_amazon_order_status_maps_every_documented_status():
    assert ORDER_STATUSES == DOCUMENTED
    assert ORDER_STATUSES["Unshipped"] == OrderStatus.PAID


def test_amazon_orders_updated_walks_every_page_with_next_token_alone(shop):
    server, _channel, adapter = shop
    server.app.configure(orders_page_size=2)
    placed = [server.app.order_create(lines=[line(0, 1)], status="Unshipped") for _ in range(5)]

    refs = adapter.orders_updated(**window())

    assert sorted(ref.external_id for ref in refs) == sorted(o.order_id for o in placed)
    assert all(ref.raw_status == "Unshipped" and ref.updated_at for ref in refs)
    lists = [r for r in server.app.requests if r.path == "/orders/v0/orders"]
    assert len(lists) == 3
    first = {key: values[-1] for key, values in lists[0].query.items()}
    assert set(first) == {
        "MarketplaceIds",
        "LastUpdatedAfter",
        "LastUpdatedBefore",
        "FulfillmentChannels",
        "MaxResultsPerPage",
    }
    assert first["FulfillmentChannels"] == "MFN"
    assert set(lists[1].query) == {"MarketplaceIds", "NextToken"}


def test_amazon_orders_updated_stops_two_minutes_short_of_now(shop):
    server, _channel, adapter = shop
    server.app.configure(order_age=0)
    fresh = server.app.order_create(lines=[line(0, 1)], status="Unshipped")
    server.app.configure(order_age=600)
    old = server.app.order_create(lines=[line(0, 1)], status="Unshipped")
    amazon_fulfilled = server.app.order_create(
        lines=[line(0, 1)], status="Unshipped", fulfillment_channel="AFN"
    )

    refs = adapter.orders_updated(**window())

    # neither the order of the last two minutes nor the one Amazon fulfils is listed (the
    # sandbox refuses a LastUpdatedBefore within two minutes: the adapter cut it)
    assert [ref.external_id for ref in refs] == [old.order_id]
    assert {fresh.order_id, amazon_fulfilled.order_id} & {ref.external_id for ref in refs} == set()
    before = next(r for r in server.app.requests if r.path == "/orders/v0/orders")
    sent = before.query["LastUpdatedBefore"][0]
    assert sent <= (timezone.now() - timedelta(seconds=119)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        adapter.orders_updated(since=timezone.now() - timedelta(seconds=60), until=timezone.now())
        == []
    )


def test_amazon_orders_fetch_reads_order_and_every_item_page(shop):
    server, _channel, adapter = shop
    server.app.configure(items_page_size=1)
    order = server.app.order_create(
        lines=[line(0, 2, "12.50"), line(1, 1, "3.00"), line(2, 4, "1.25")], status="Unshipped"
    )

    (fetched,) = adapter.orders_fetch([order.order_id, "999-0000000-0000000"])

    assert fetched.external_id == order.order_id
    assert (fetched.raw_status, fetched.status) == ("Unshipped", OrderStatus.PAID)
    assert [(x.sku, x.keys, x.quantity, x.unit_price) for x in fetched.lines] == [
        ("SKU-0", {"seller_sku": "SKU-0"}, Decimal(2), Decimal("12.5000")),
        ("SKU-1", {"seller_sku": "SKU-1"}, Decimal(1), Decimal("3.0000")),
        ("SKU-2", {"seller_sku": "SKU-2"}, Decimal(4), Decimal("1.2500")),
    ]
    assert all(len(x.line_key) == 14 for x in fetched.lines)
    assert (fetched.amount, fetched.currency) == (Decimal("33.00"), "USD")
    assert fetched.paid_at == fetched.placed_at
    assert fetched.address["CountryCode"] == "US"
    item_calls = [r for r in server.app.requests if r.path.endswith("/orderItems")]
    assert len(item_calls) == 3
    assert set(item_calls[1].query) == {"NextToken"}


def test_amazon_orders_fetch_after_listing_asks_only_for_items(shop):
    server, _channel, adapter = shop
    order = server.app.order_create(lines=[line(0, 1)], status="Pending")
    adapter.orders_updated(**window())
    server.app.requests.clear()

    (fetched,) = adapter.orders_fetch([order.order_id])

    assert [r.path for r in server.app.requests] == [
        f"/orders/v0/orders/{order.order_id}/orderItems"
    ]
    assert (fetched.status, fetched.paid_at, fetched.amount) == (
        OrderStatus.PENDING_PAYMENT,
        None,
        None,
    )


def test_amazon_cancelled_order_items_show_zero_and_the_order_still_reads(shop):
    server, _channel, adapter = shop
    order = server.app.order_create(lines=[line(0, 3)], status="Unshipped")
    server.app.order_update(order.order_id, status="Canceled")

    (fetched,) = adapter.orders_fetch([order.order_id])

    assert fetched.status == OrderStatus.CANCELLED
    assert [x.quantity for x in fetched.lines] == [Decimal(0)]
    assert fetched.lines[0].unit_price is None


def test_amazon_order_calls_classify_throttles_and_refusals(shop):
    server, _channel, adapter = shop
    server.app.configure(rate_limits={"getOrders": [0.0167, 1]})
    adapter.orders_updated(**window())

    with pytest.raises(AdapterError) as throttled:
        adapter.orders_updated(**window())
    assert throttled.value.outcome == Outcome.THROTTLED
    assert throttled.value.retry_after == pytest.approx(1 / (0.0167 * 0.8))

    server.app.expire_tokens()
    with pytest.raises(AdapterError) as expired:
        adapter.orders_fetch(["111-0000000-0000000"])
    assert (expired.value.outcome, expired.value.token_expired) == (Outcome.AUTH, True)


def test_amazon_order_answers_that_cannot_be_read_are_retryable(shop):
    from core.sandbox import Fault

    server, _channel, adapter = shop
    server.app.inject(Fault(status=200, body=json.dumps({"payload": {"Orders": {"x": 1}}})))
    with pytest.raises(AdapterError) as odd:
        adapter.orders_updated(**window())
    assert odd.value.outcome == Outcome.RETRYABLE

    server.app.inject(Fault(status=200, body="<html>"))
    with pytest.raises(AdapterError) as html:
        adapter.orders_updated(**window())
    assert html.value.outcome == Outcome.RETRYABLE


# --- polling: the only way Amazon orders arrive ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_amazon_orders_arrive_through_the_beat_poll_with_no_webhook(
    amazon, wire, stocked, warehouse
):
    # given an Amazon channel selling a product, polled up to ten minutes ago (a first poll
    # walks its look-back hour by hour: see the slice tests), and an order placed five
    # minutes ago
    product = stocked(10)
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=[product])
    channel.orders_cursor = timezone.now() - timedelta(minutes=10)
    channel.save(update_fields=["orders_cursor"])
    amazon.app.configure(order_age=300)
    order = amazon.app.order_create(lines=[line(0, 2)], status="Unshipped")
    assert amazon.app.deliveries[-1].http_status is None  # nothing was pushed to us

    # when the beat's poll runs
    queued = webhook_tasks.poll_orders.apply().result

    # then the order is here, paid, its stock reserved, and the cursor two minutes (and a
    # margin for clocks apart) back
    assert channel.pk in queued
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    reserved = Reservation.objects.filter(level__product=product, status="active")
    assert sum(r.quantity for r in reserved) == Decimal(2)
    channel.refresh_from_db()
    lag = timezone.now() - channel.orders_cursor
    assert timedelta(seconds=129) <= lag <= timedelta(seconds=160)

    # when Amazon ships it, the next poll sees that too
    amazon.app.order_update(order.order_id, status="Shipped")
    webhook_tasks.poll_orders.apply()
    row.refresh_from_db()
    assert row.status == "shipped"


@pytest.mark.django_db
def test_amazon_poll_window_stops_at_the_list_lag(amazon, wire, settings):
    channel = wire(amazon, "amazon", products=())
    now = timezone.now()
    since, until = poll_window(channel, now)
    assert until == now - timedelta(minutes=2, seconds=10)
    assert since == now - timedelta(seconds=settings.ORDERS_POLL_FIRST_LOOKBACK_SECONDS)
    # the next poll starts from that cursor (less the overlap): nothing falls between polls
    channel.orders_cursor = until
    since, _ = poll_window(channel, now + timedelta(minutes=5))
    assert since == until - timedelta(seconds=settings.ORDERS_POLL_OVERLAP_SECONDS)
    # a channel without a lag polls up to now
    tiktok_channel = wire(amazon, "tiktok", products=())
    assert poll_window(tiktok_channel, now)[1] == now


@pytest.mark.django_db
def test_amazon_webhook_intake_refuses_any_http_notification(amazon, wire, client, settings):
    channel = wire(amazon, "amazon", products=())
    order = amazon.app.order_create(lines=[line(0, 1)], status="Unshipped")
    body = json.dumps(amazon.app.order_change_notification(order))
    path = channel_webhook_url(channel).removeprefix(settings.PUBLIC_BASE_URL)

    answer = client.post(path, data=body, content_type="application/json")

    assert answer.status_code == 401
    assert answer.json()["code"] == "invalid_signature"
    assert not Order.objects.filter(external_id=order.order_id).exists()


def test_amazon_sandbox_refuses_a_list_reaching_into_the_last_two_minutes(shop):
    import requests

    server, _channel, adapter = shop
    now = time.time()
    answer = requests.get(
        f"{server.url}/orders/v0/orders",
        params={
            "MarketplaceIds": "ATVPDKIKX0DER",
            "LastUpdatedAfter": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
            "LastUpdatedBefore": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30)),
        },
        headers={"x-amz-access-token": adapter.credentials["access_token"]},
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "InvalidInput"
