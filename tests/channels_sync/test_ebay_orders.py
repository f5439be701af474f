"""eBay orders and notifications through the adapter, and the push converging under faults."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from channels_sync.adapters import AdapterError, OrderStatus, Outcome
from channels_sync.adapters.ebay import EbayAdapter
from channels_sync.models import ChannelListing
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.selectors import listings_to_push, plan
from channels_sync.services.push import channel_push
from channels_sync.services.tokens import channel_adapter
from core.sandbox import Fault
from inventory.services import Origin, stock_adjust
from tests.channels_sync.conftest import listing_keys
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
}


@pytest.fixture
def shop(ebay, wire):
    channel = wire(ebay, "ebay", products=[ProductFactory(), ProductFactory()], per_item=2)
    # Notifications go nowhere (refused at once): these tests read orders by polling.
    ebay.app.configure(webhook_url="http://127.0.0.1:9/")
    return ebay, channel, channel_adapter(channel)


def line(n: int, quantity: int, price: str = "12.50") -> dict:
    keys = listing_keys("ebay", n, per_item=2)
    return {"keys": keys, "sku": keys["sku"], "quantity": quantity, "price": price}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("NOT_STARTED|PENDING|NONE_REQUESTED", OrderStatus.PENDING_PAYMENT),
        ("NOT_STARTED|FAILED|NONE_REQUESTED", OrderStatus.PENDING_PAYMENT),
        ("NOT_STARTED|PAID|NONE_REQUESTED", OrderStatus.PAID),
        ("IN_PROGRESS|PAID|NONE_REQUESTED", OrderStatus.READY_TO_SHIP),
        ("FULFILLED|PARTIALLY_REFUNDED|NONE_REQUESTED", OrderStatus.SHIPPED),
        ("NOT_STARTED|PAID|CANCEL_REQUESTED", None),
        ("NOT_STARTED|FULLY_REFUNDED|CANCELED", OrderStatus.CANCELLED),
        ("NOT_STARTED|FULLY_REFUNDED|NONE_REQUESTED", OrderStatus.CANCELLED),
        ("FULFILLED|FULLY_REFUNDED|NONE_REQUESTED", None),
        ("ORDER_CONFIRMATION", None),
        ("", None),
    ],
)
def test_ebay_order_status_mapping(raw, expected):
    assert EbayAdapter.order_status(raw) == expected


def test_ebay_orders_updated_walks_every_page_in_the_range(shop):
    server, _channel, adapter = shop
    server.app.configure(order_page_size=2)
    orders = [server.app.order_create(lines=[line(0, 1)], status="PAID") for _ in range(5)]
    now = datetime.now(tz=UTC)
    refs = adapter.orders_updated(
        since=now - timedelta(minutes=5), until=now + timedelta(seconds=5)
    )
    assert sorted(r.external_id for r in refs) == sorted(o.order_id for o in orders)
    assert {r.raw_status for r in refs} == {"NOT_STARTED|PAID|NONE_REQUESTED"}
    offsets = [r.query["offset"][0] for r in server.app.requests if r.path.endswith("/order")]
    assert offsets == ["0", "2", "4"]
    assert "lastmodifieddate:[" in server.app.requests[-1].query["filter"][0]
    assert (
        adapter.orders_updated(since=now + timedelta(minutes=1), until=now + timedelta(minutes=2))
        == []
    )


def test_ebay_orders_fetch_derives_the_offer_from_the_line_listing(shop):
    server, _channel, adapter = shop
    order = server.app.order_create(lines=[line(0, 2), line(1, 1, "3.00")], status="PAID")
    server.app.order_create(lines=[line(1, 1)], status="PENDING")
    [fetched] = adapter.orders_fetch([order.order_id, "99-99999-99999"])
    assert (fetched.external_id, fetched.status, fetched.raw_status) == (
        order.order_id,
        OrderStatus.PAID,
        "NOT_STARTED|PAID|NONE_REQUESTED",
    )
    assert [(ln.keys, ln.quantity, ln.unit_price) for ln in fetched.lines] == [
        (listing_keys("ebay", 0, per_item=2), Decimal(2), Decimal("12.5000")),
        (listing_keys("ebay", 1, per_item=2), Decimal(1), Decimal("3.0000")),
    ]
    assert (fetched.amount, fetched.currency) == (Decimal("28.00"), "USD")
    assert fetched.paid_at is not None
    assert fetched.customer["username"] == "sandbox_buyer"
    # the two offers share a SKU: one offers lookup for the order
    assert sum(1 for r in server.app.requests if r.path.endswith("/offer")) == 1


def test_ebay_orders_fetch_batches_fifty_ids(shop):
    server, _channel, adapter = shop
    assert adapter.orders_fetch([str(n) for n in range(120)]) == []
    sizes = [len(r.query["orderIds"][0].split(",")) for r in server.app.requests]
    assert sizes == [50, 50, 20]


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(status=429, body="{}"), Outcome.THROTTLED),
        (Fault(status=500, body="{}"), Outcome.RETRYABLE),
        (Fault(status=401, body='{"errors":[{"errorId":1001}]}'), Outcome.AUTH),
        (Fault(status=200, body='{"orders": 5}'), Outcome.RETRYABLE),
        (Fault(status=400, body='{"errors":[{"errorId":30800}]}'), Outcome.PERMANENT),
    ],
)
def test_ebay_order_calls_classify_failures(shop, fault, outcome):
    server, _channel, adapter = shop
    server.app.inject(fault)
    now = datetime.now(tz=UTC)
    with pytest.raises(AdapterError) as raised:
        adapter.orders_updated(since=now - timedelta(minutes=1), until=now)
    assert raised.value.outcome == outcome


def test_ebay_order_notifications_parse_one_per_line_with_stable_keys(shop, receiver_url):
    server, _channel, adapter = shop
    server.app.configure(webhook_url=receiver_url)
    order = server.app.order_create(
        lines=[line(0, 1), line(1, 1)], status="PAID", faults=NotifyFaults(hold=True)
    )
    held = list(server.app.held)
    assert len(held) == 2
    events = [adapter.webhook_parse(body=body) for _id, _status, body, _headers in held]
    assert {(e.topic, e.order_id, e.status) for e in events} == {
        ("order", order.order_id, "ORDER_CONFIRMATION")
    }
    assert len({e.event_key for e in events}) == 2
    again = server.app.notification(order, bad_signature=False)[0]
    assert adapter.webhook_parse(body=again).event_key == events[0].event_key
    for _id, _status, body, headers in held:
        assert adapter.webhook_verify(headers=headers, body=body) is True
    server.app.held.clear()
    server.app.order_update(order.order_id, status="CANCELED", faults=NotifyFaults(hold=True))
    assert server.app.held == []  # eBay notifies no cancellation: polling finds it


def test_ebay_webhook_parse_topics():
    adapter = EbayAdapter(base_url="https://api.ebay.com", credentials={})

    def parse(topic, data, notification_id="n-1"):
        body = {"metadata": {"topic": topic}, "notification": {"data": data}}
        if notification_id is not None:
            body["notification"]["notificationId"] = notification_id
        body["notification"]["eventDate"] = "2026-01-02T03:04:05.678Z"
        return adapter.webhook_parse(body=json.dumps(body).encode())

    deletion = parse("MARKETPLACE_ACCOUNT_DELETION", {"username": "u"})
    assert (deletion.topic, deletion.event_key) == ("other", "n-1")
    stock = parse("ITEM_AVAILABILITY", {"sku": "A", "offerId": "9", "availableQuantity": 4})
    assert stock.topic == "stock"
    assert [(r.keys, r.quantity) for r in stock.stock] == [({"sku": "A", "offer_id": "9"}, 4)]
    assert stock.updated_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert parse("ITEM_AVAILABILITY", {"itemId": "1", "availabilityType": "AVAILABLE"}).topic == (
        "other"
    )
    unkeyed = parse("ITEM_MARKED_SHIPPED", {"orderId": "12-1-1"}, notification_id=None)
    assert (unkeyed.topic, unkeyed.order_id, len(unkeyed.event_key)) == ("order", "12-1-1", 64)
    assert parse("ORDER_CONFIRMATION", {"orderId": {"x": 1}}).topic == "unreadable"
    assert adapter.webhook_parse(body=b'{"metadata": 1}').topic == "unreadable"


def test_ebay_push_convergence_under_errors_and_throttling(ebay, wire, warehouse, stocked):
    # given eBay answering 40% of calls with errors and throttling past 8 calls a second
    products = [stocked(n) for n in range(1, 13)]
    ebay.app.configure(error_ratio=0.4, throttle_per_second=8, seed=3)
    channel = wire(
        ebay,
        "ebay",
        warehouses=[warehouse],
        products=products,
        per_item=2,
        dirty=True,
        rate_limit_per_second=6,
        rate_limit_burst=2,
    )
    # when stock changes and the pipeline runs until nothing is left
    for product in products[::2]:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    with override_settings(**FAST):
        for _ in range(40):
            channel_push(channel_id=channel.pk, respect_backoff=False)
            if not ChannelListing.objects.filter(dirty=True).exists():
                break
    # then every listing shows its desired quantity
    desired = {
        item.row["id"]: item.quantity
        for item in plan(channel, listings_to_push(channel, include_clean=True))
    }
    adapter = channel_adapter(channel)
    shown = {
        listing.pk: ebay.app.quantity(adapter.keys_from_listing(listing))
        for listing in channel.listings.all()
    }
    assert shown == desired
    assert not channel.listings.exclude(status="ok").exists()
    assert ebay.app.max_calls_in_window(1.0) <= 6 + 2
    assert ebay.app.counts["errors"] > 0, ebay.app.counts


@pytest.fixture
def receiver_url(live_server, settings) -> str:
    return f"{live_server.url}/nowhere/"
