"""Orders under concurrency, against real PostgreSQL (threads, each with its own connection)."""

import random
from decimal import Decimal

import pytest
from django.db.models import Sum

from channels_sync.adapters import OrderStatus
from inventory.errors import InsufficientStock
from inventory.models import Reservation, StockLevel, StockMovement
from inventory.services import stock_reserve
from orders.errors import OrderInsufficientStock
from orders.models import Order, OrderEvent, OrderLine
from orders.services import Actor, OrderLineInput, order_apply_market, order_create
from tests.conftest import TEST_ORIGIN
from tests.inventory.test_concurrency import run_concurrently
from tests.orders.conftest import market_line, market_order

pytestmark = pytest.mark.django_db(transaction=True)


def test_order_apply_market_20_threads_same_order_one_order_one_reservation(channel, listed):
    # given
    product, keys = listed(10)
    other, other_keys = listed(10)
    detail = market_order(OrderStatus.PAID, [market_line(keys, 2), market_line(other_keys, 1)])

    # when
    results = run_concurrently(
        20,
        lambda i: order_apply_market(
            channel=channel, order=detail, source="webhook" if i % 2 else "poll"
        ),
    )

    # then
    assert [r for r in results if isinstance(r, Exception)] == []
    assert Order.objects.count() == 1
    assert OrderLine.objects.count() == 2
    assert Reservation.objects.count() == 2
    assert StockLevel.objects.get(product=product).reserved == 2
    assert StockLevel.objects.get(product=other).reserved == 1
    assert OrderEvent.objects.filter(kind="created").count() == 1


def test_orders_race_marketplace_and_api_keeps_ledger_exact(channel, listed, vendor):
    # given: one SKU with 10 units; marketplace orders (facts) and API reservations and
    # orders (refused when short) race for it, while some marketplace orders ship or cancel
    product, keys = listed(10)
    statuses = [OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.CANCELLED]
    rng = random.Random(7)
    plan = [rng.choice(["market", "api_order", "reserve"]) for _ in range(24)]

    def work(i: int):
        kind = plan[i]
        if kind == "market":
            status = statuses[i % 3]
            return order_apply_market(
                channel=channel,
                order=market_order(status, [market_line(keys, 2)], external_id=f"M{i}"),
                source="webhook",
            )
        if kind == "api_order":
            return order_create(
                vendor=vendor,
                order_number=f"API-{i}",
                lines=[OrderLineInput(sku=product.sku, quantity=Decimal("2"))],
                actor=Actor(source="api", actor="api:test"),
            )
        return stock_reserve(
            product=product, quantity=Decimal("1"), origin=TEST_ORIGIN, expires=False
        )

    # when
    results = run_concurrently(len(plan), work)

    # then
    unexpected = [
        r
        for r in results
        if isinstance(r, Exception)
        and not isinstance(r, InsufficientStock | OrderInsufficientStock)
    ]
    assert unexpected == []
    level = StockLevel.objects.get(product=product)
    sums = StockMovement.objects.filter(level=level).aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    assert (sums["on_hand"], sums["reserved"]) == (level.on_hand, level.reserved)
    active = Reservation.objects.filter(level=level, status="active").aggregate(q=Sum("quantity"))
    assert (active["q"] or 0) == level.reserved
    # Only marketplace lines go past zero: every other reservation left available >= 0.
    ours = StockMovement.objects.filter(level=level, kind="reserve").exclude(
        source=f"channel:{channel.pk}"
    )
    assert ours.exists()
    assert all(m.on_hand_after - m.reserved_after >= 0 for m in ours)
    assert not OrderLine.objects.filter(order__channel__isnull=True, status="short").exists()
    assert (
        OrderLine.objects.filter(order__channel=channel)
        .exclude(status__in=["reserved", "short", "committed", "released"])
        .count()
        == 0
    )
