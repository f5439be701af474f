"""Order polling in slices: a marketplace whose order list may cover only so long a window
(Amazon's getOrders, paced at about one call a minute after a burst of 20) is walked slice
by slice, the cursor moving after each, so a busy window is covered over several polls
instead of failing whole every time."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from django.core.cache import cache
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.services.polling import (
    MAX_SLICES_PER_POLL,
    SHORT_SLICES_KEY,
    orders_poll_channel,
    poll_slices,
)

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


def test_poll_slices_of_a_long_window_grow_so_a_catch_up_fits_one_burst():
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    end = start + timedelta(days=3)

    slices = poll_slices(start, end, adapter_class("amazon"))

    assert MAX_SLICES_PER_POLL == 8
    assert slices == [
        (start + timedelta(hours=9 * n), start + timedelta(hours=9 * (n + 1))) for n in range(8)
    ]
    # eight hours and one minute: eight hour slices and a minute's ninth would be too many
    odd_end = start + timedelta(hours=8, minutes=1)
    odd = poll_slices(start, odd_end, adapter_class("amazon"))
    assert len(odd) == 8
    assert odd[0] == (start, start + timedelta(hours=1, seconds=7.5))
    assert odd[-1][1] == odd_end
    assert all(a[1] == b[0] for a, b in pairwise(odd))


def test_a_new_amazon_channels_first_poll_finds_its_current_orders(
    amazon, wire, stocked, warehouse
):
    # given a new Amazon channel (no cursor: a first look-back of days) at Amazon's own
    # getOrders quota (burst 20, then one call a minute), and an order placed 150 s ago
    product = stocked(100)
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=[product])
    assert channel.orders_cursor is None
    order = amazon.app.order_create(
        lines=[{"keys": listing_keys("amazon", 0), "sku": "SKU-0", "quantity": 2}],
        status="Unshipped",
    )
    with amazon.app._lock:
        order.created = order.updated = order.paid = order.created - 150

    # when the channel is polled for the first time
    report = orders_poll_channel(channel_id=channel.pk)

    # then the whole look-back is covered in one poll and the order is here
    assert report.outcome == "ok", report.error
    assert report.slices == MAX_SLICES_PER_POLL
    assert report.reached == report.until
    assert (report.listed, report.applied) == (1, 1)
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    assert list(Order.objects.filter(channel=channel).values_list("external_id", flat=True)) == [
        order.order_id
    ]


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


def test_a_lengthened_slice_too_busy_for_one_burst_falls_back_to_plain_slices(
    amazon, wire, stocked, warehouse, settings
):
    # given a new Amazon channel looking back 16 hours (eight slices of two hours), one order
    # a page, and 21 orders in the first slice: one more page than getOrders' burst
    settings.ORDERS_POLL_FIRST_LOOKBACK_SECONDS = 16 * 3600
    product = stocked(100)
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=[product])
    amazon.app.configure(
        orders_page_size=1, rate_limits={"getOrders": [50.0, 100], "getOrderItems": [50.0, 100]}
    )
    since = timezone.now() - timedelta(hours=16)
    placed = set()
    for n in range(21):
        order = amazon.app.order_create(
            lines=[{"keys": listing_keys("amazon", 0), "sku": "SKU-0", "quantity": 1}],
            status="Unshipped",
        )
        moment = (since + timedelta(minutes=5 + 4 * n)).timestamp()
        with amazon.app._lock:
            order.created = order.updated = order.paid = moment
        placed.add(order.order_id)
    key = SHORT_SLICES_KEY.format(channel_id=channel.pk)

    # when the first poll runs: its first slice is throttled on the 21st page
    first = orders_poll_channel(channel_id=channel.pk)

    # then nothing moved, and the channel's next polls cut hour slices
    assert first.outcome == "failed"
    assert first.error.startswith("throttled: getOrders")
    assert (first.slices, first.reached) == (0, None)
    assert cache.get(key) == 1

    # when the quota refills (as over the next minutes) between polls
    polls = []
    for _ in range(4):
        flag = cache.get(key)
        cache.clear()  # the pacing buckets refill; the channel's slice flag stays
        if flag is not None:
            cache.set(key, flag)
        polls.append(orders_poll_channel(channel_id=channel.pk))
        if polls[-1].outcome == "ok":
            break

    # then the hour slices progress poll by poll until the window is covered
    assert polls[0].slices >= 1
    assert polls[0].reached is not None
    assert polls[-1].outcome == "ok"
    assert polls[-1].reached == polls[-1].until
    assert set(Order.objects.filter(channel=channel).values_list("external_id", flat=True)) == (
        placed
    )
    # and the next poll may lengthen its slices again
    assert cache.get(key) is None
