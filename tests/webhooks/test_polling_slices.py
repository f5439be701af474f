"""Order polling in slices: a marketplace whose order list may cover only so long a window
(Amazon's getOrders, paced at about one call a minute after a burst of 20) is walked slice
by slice, the cursor moving after each, so a busy window is covered over several polls
instead of failing whole every time."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.services.polling import orders_poll_channel, poll_slices

pytestmark = pytest.mark.django_db(transaction=True)


def test_poll_slices_cut_the_window_by_the_adapters_longest_listing():
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    end = start + timedelta(hours=2, minutes=30)

    assert poll_slices(start, end, adapter_class("tiktok")) == [(start, end)]
    assert poll_slices(start, end, adapter_class("amazon")) == [
        (start, start + timedelta(hours=1)),
        (start + timedelta(hours=1), start + timedelta(hours=2)),
        (start + timedelta(hours=2), end),
    ]
    assert adapter_class("amazon").orders_max_window_seconds == 3600
    assert poll_slices(end, start, adapter_class("amazon")) == [(end, start)]


def test_amazon_poll_of_a_busy_window_moves_slice_by_slice_and_resumes(
    amazon, wire, stocked, warehouse, settings
):
    # given an Amazon channel polled up to six hours ago, one order a page, and Amazon's
    # own quota generous (the adapter's pace, 20 getOrders at once, is the limit)
    settings.ORDERS_POLL_OVERLAP_SECONDS = 600
    product = stocked(100)
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=[product])
    Channel.objects.filter(pk=channel.pk).update(orders_cursor=timezone.now() - timedelta(hours=6))
    channel.refresh_from_db()
    since = channel.orders_cursor - timedelta(seconds=600)
    amazon.app.configure(
        orders_page_size=1, rate_limits={"getOrders": [50.0, 100], "getOrderItems": [50.0, 100]}
    )
    # four orders in each of the window's first six hours: 24 pages, more than a burst
    placed = {}
    for hour in range(6):
        for minute in (5, 15, 25, 35):
            order = amazon.app.order_create(
                lines=[{"keys": listing_keys("amazon", 0), "sku": "SKU-0", "quantity": 1}],
                status="Unshipped",
            )
            moment = (since + timedelta(hours=hour, minutes=minute)).timestamp()
            with amazon.app._lock:
                order.created = order.updated = order.paid = moment
            placed[order.order_id] = hour

    # when the poll runs: five full slices fit the 20 calls, the sixth is throttled
    first = orders_poll_channel(channel_id=channel.pk)

    # then the cursor moved to the end of the fifth slice, with every order before it
    assert first.outcome == "failed"
    assert first.error.startswith("throttled: getOrders")
    assert (first.slices, first.listed, first.applied) == (5, 20, 20)
    assert first.reached == since + timedelta(hours=5)
    channel.refresh_from_db()
    assert channel.orders_cursor == first.reached
    applied = set(Order.objects.filter(channel=channel).values_list("external_id", flat=True))
    assert applied == {order_id for order_id, hour in placed.items() if hour < 5}

    # when the quota has refilled (as an hour later), the next poll resumes from the cursor
    cache.clear()
    second = orders_poll_channel(channel_id=channel.pk)

    # then the rest of the window is covered and every order is here, none twice
    assert second.outcome == "ok"
    assert second.since == first.reached - timedelta(seconds=600)
    assert second.reached == second.until
    channel.refresh_from_db()
    assert channel.orders_cursor == second.until
    rows = Order.objects.filter(channel=channel)
    assert rows.count() == 24
    assert set(rows.values_list("external_id", flat=True)) == set(placed)
