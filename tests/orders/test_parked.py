"""Parked orders: the periodic sweep and the per-channel reprocess, one order at a time."""

from decimal import Decimal

import pytest

from channels_sync.adapters import OrderStatus
from inventory.models import StockLevel
from inventory.services import stock_reserve
from orders.models import Order, OrderEvent
from orders.services import (
    Actor,
    order_apply_market,
    orders_reprocess_parked,
    orders_reprocess_parked_all,
)
from orders.tasks import reprocess_parked_all
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory
from tests.conftest import TEST_ORIGIN
from tests.orders.conftest import market_line, market_order

S = OrderStatus
SYSTEM = Actor(source=OrderEvent.Source.SYSTEM, actor="system:test")
pytestmark = pytest.mark.django_db


def _parked(channel, external_id: str, keys: dict) -> Order:
    order = order_apply_market(
        channel=channel,
        order=market_order(S.PAID, [market_line(keys, 2)], external_id=external_id),
        source="poll",
    )
    assert order.needs_mapping is True
    return order


def _list(channel, product, keys: dict) -> None:
    # Straight into the table: no listing hook runs (what a missed enqueue leaves behind).
    ChannelListingFactory(
        channel=channel,
        product=product,
        external_item_id=keys["item_id"],
        external_variant_id=keys["model_id"],
    )


def _poison(order: Order, product) -> None:
    """Make the order's reprocess fail: its line's reservation key is already taken."""
    line = order.lines.get()
    stock_reserve(
        product=product,
        quantity=Decimal("1"),
        origin=TEST_ORIGIN,
        expires=False,
        idempotency_key=f"order_line:{line.pk}",
    )


def test_orders_reprocess_parked_all_maps_missed_orders_of_every_channel(
    channel, warehouse, stocked
):
    # given parked orders on two channels whose listings appeared without the hook
    product = stocked(10)
    other_channel = ChannelFactory(warehouses=[warehouse])
    keys = {"item_id": "7001", "model_id": "8001"}
    first = _parked(channel, "P-1", keys)
    second = _parked(other_channel, "P-2", keys)
    _list(channel, product, keys)
    _list(other_channel, product, keys)
    # when the sweep runs (through its task)
    mapped = reprocess_parked_all.apply().get()
    # then both are mapped and hold their stock
    assert mapped == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.needs_mapping, second.needs_mapping) == (False, False)
    assert StockLevel.objects.get(product=product).reserved == 4
    assert first.events.get(kind="reprocessed").actor == "system:orders:parked_sweep"
    # and running it again finds nothing to do
    assert orders_reprocess_parked_all(actor=SYSTEM) == 0


def test_orders_reprocess_parked_all_oldest_first_in_a_bounded_batch(channel, stocked):
    product = stocked(10)
    keys = {"item_id": "7001", "model_id": "8001"}
    oldest = _parked(channel, "P-1", keys)
    newest = _parked(channel, "P-2", keys)
    _list(channel, product, keys)
    assert orders_reprocess_parked_all(actor=SYSTEM, limit=1) == 1
    oldest.refresh_from_db()
    newest.refresh_from_db()
    assert (oldest.needs_mapping, newest.needs_mapping) == (False, True)


def test_orders_reprocess_parked_all_goes_on_past_orders_that_cannot_be_mapped(channel, stocked):
    # given two orders that will never map, then a newer one whose listing the hook missed
    product = stocked(10)
    stuck = [_parked(channel, f"S-{n}", {"item_id": "9", "model_id": str(n)}) for n in (1, 2)]
    keys = {"item_id": "7001", "model_id": "8001"}
    newer = _parked(channel, "P-3", keys)
    _list(channel, product, keys)
    # when the sweep runs twice with room for one order a run, then a third time
    runs = [orders_reprocess_parked_all(actor=SYSTEM, limit=1) for _ in range(3)]
    # then the newer order was reached, and the stuck ones gained no event for nothing
    newer.refresh_from_db()
    assert newer.needs_mapping is False
    assert sum(runs) == 1
    for order in stuck:
        assert not order.events.filter(kind=OrderEvent.Kind.REPROCESSED).exists()
    # and a fourth run wraps around to the start
    assert orders_reprocess_parked_all(actor=SYSTEM, limit=1) == 0


def test_orders_reprocess_parked_all_skips_a_failing_order(channel, stocked, log_lines):
    # given three parked orders, the middle one failing to reserve
    product = stocked(10)
    keys = {"item_id": "7001", "model_id": "8001"}
    orders = [_parked(channel, f"P-{n}", keys) for n in range(3)]
    _list(channel, product, keys)
    _poison(orders[1], product)
    # when
    mapped = orders_reprocess_parked_all(actor=SYSTEM)
    # then the others are mapped, the failing one stays parked, and it is logged
    assert mapped == 2
    parked = [o.pk for o in Order.objects.filter(needs_mapping=True)]
    assert parked == [orders[1].pk]
    failed = [line for line in log_lines() if line["event"] == "orders.reprocess_failed"]
    assert [line["order_id"] for line in failed] == [orders[1].pk]
    assert StockLevel.objects.get(product=product).reserved == 2 + 2 + 1


def test_orders_reprocess_parked_of_a_channel_skips_a_failing_order(channel, stocked, log_lines):
    product = stocked(10)
    keys = {"item_id": "7001", "model_id": "8001"}
    failing = _parked(channel, "P-1", keys)
    fine = _parked(channel, "P-2", keys)
    _list(channel, product, keys)
    _poison(failing, product)
    assert orders_reprocess_parked(channel_id=channel.pk, actor=SYSTEM) == 1
    fine.refresh_from_db()
    failing.refresh_from_db()
    assert (fine.needs_mapping, failing.needs_mapping) == (False, True)
    assert any(line["event"] == "orders.reprocess_failed" for line in log_lines())
