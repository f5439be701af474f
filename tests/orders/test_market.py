"""order_apply_market: every status path, out-of-order updates, idempotency, mapping."""

from decimal import Decimal

import pytest
from django.db.models import Sum

from channels_sync.adapters import OrderStatus
from inventory.models import Reservation, StockLevel, StockMovement
from orders.models import Order, OrderEvent, OrderLine
from orders.services import order_apply_market
from tests.orders.conftest import T0, market_line, market_order

S = OrderStatus
pytestmark = pytest.mark.django_db


def _level(product) -> StockLevel:
    return StockLevel.objects.get(product=product)


def _apply(channel, status, lines, **kwargs) -> Order:
    return order_apply_market(
        channel=channel, order=market_order(status, lines, **kwargs), source="webhook"
    )


def _kinds(order: Order) -> list[str]:
    return list(order.events.order_by("id").values_list("kind", flat=True))


@pytest.mark.parametrize("status", [S.PENDING_PAYMENT, S.PAID, S.READY_TO_SHIP])
def test_order_apply_market_open_order_reserves_each_line(channel, listed, status):
    # given
    first, first_keys = listed(10)
    second, second_keys = listed(5)
    # when
    order = _apply(channel, status, [market_line(first_keys, 2), market_line(second_keys, 3)])
    # then
    assert order.status == status
    assert order.channel_id == channel.pk
    assert order.external_id == "250301ABC"
    lines = list(order.lines.order_by("line_number"))
    assert [line.status for line in lines] == ["reserved", "reserved"]
    assert [line.product_id for line in lines] == [first.pk, second.pk]
    for line in lines:
        assert line.reservation.status == Reservation.Status.ACTIVE
        assert line.reservation.expires_at is None
        assert line.reservation.idempotency_key == f"order_line:{line.pk}"
    assert (_level(first).on_hand, _level(first).reserved) == (10, 2)
    assert (_level(second).on_hand, _level(second).reserved) == (5, 3)
    reserve = StockMovement.objects.get(level=_level(first), kind="reserve")
    assert reserve.source == f"channel:{channel.pk}"
    assert _kinds(order) == ["created"]


@pytest.mark.parametrize("final", [S.SHIPPED, S.DELIVERED, S.COMPLETED])
def test_order_apply_market_shipped_commits_with_channel_source(channel, listed, final):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 4)])
    # when
    order = _apply(channel, final, [market_line(keys, 4)], minutes=5)
    # then
    line = order.lines.get()
    assert order.status == final
    assert line.status == "committed"
    assert line.reservation.status == Reservation.Status.COMMITTED
    assert (_level(product).on_hand, _level(product).reserved) == (6, 0)
    commit = StockMovement.objects.get(level=_level(product), kind="commit")
    assert commit.source == f"channel:{channel.pk}"
    assert commit.on_hand_delta == Decimal("-4")
    assert _kinds(order) == ["created", "status"]


def test_order_apply_market_commit_feeds_demand_weighted_sales(channel, listed):
    from channels_sync.selectors import sales_last_30_days

    product, keys = listed(10)
    _apply(channel, S.SHIPPED, [market_line(keys, 3)])
    assert sales_last_30_days([product.pk], [channel.pk]) == {(channel.pk, product.pk): 3}


def test_order_apply_market_cancelled_before_shipping_releases(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.READY_TO_SHIP, [market_line(keys, 4)])
    order = _apply(channel, S.CANCELLED, [market_line(keys, 4)], minutes=1)
    line = order.lines.get()
    assert order.status == "cancelled"
    assert line.status == "released"
    assert line.reservation.status == Reservation.Status.RELEASED
    assert (_level(product).on_hand, _level(product).reserved) == (10, 0)


def test_order_apply_market_cancelled_after_shipping_is_ignored(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.SHIPPED, [market_line(keys, 4)])
    order = _apply(channel, S.CANCELLED, [market_line(keys, 4)], minutes=1)
    assert order.status == "shipped"
    assert _kinds(order) == ["created", "backward"]
    assert _level(product).on_hand == 6


def test_order_apply_market_returned_is_recorded_without_stock(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.SHIPPED, [market_line(keys, 4)])
    order = _apply(channel, S.RETURNED, [market_line(keys, 4)], minutes=1)
    assert order.status == "returned"
    assert order.lines.get().status == "returned"
    assert (_level(product).on_hand, _level(product).reserved) == (6, 0)  # staff restock


def test_order_apply_market_older_update_is_recorded_and_ignored(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.CANCELLED, [market_line(keys, 2)], minutes=10)
    order = _apply(channel, S.PAID, [market_line(keys, 2)], minutes=5)
    assert order.status == "cancelled"
    stale = order.events.get(kind="stale")
    assert (stale.from_status, stale.to_status) == ("cancelled", "paid")
    assert (_level(product).reserved, _level(product).on_hand) == (0, 10)
    assert not StockMovement.objects.filter(kind="reserve").exists()


def test_order_apply_market_lower_state_after_higher_is_ignored(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.READY_TO_SHIP, [market_line(keys, 2)])
    order = _apply(channel, S.PAID, [market_line(keys, 2)], minutes=5)
    assert order.status == "ready_to_ship"
    event = order.events.get(kind="backward")
    assert (event.from_status, event.to_status) == ("ready_to_ship", "paid")
    assert _level(product).reserved == 2


def test_order_apply_market_first_seen_shipped_reserves_then_commits(channel, listed):
    product, keys = listed(10)
    order = _apply(channel, S.SHIPPED, [market_line(keys, 3)])
    assert order.status == "shipped"
    kinds = list(
        StockMovement.objects.filter(level=_level(product))
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == ["count", "reserve", "commit"]
    assert (_level(product).on_hand, _level(product).reserved) == (7, 0)


def test_order_apply_market_none_status_records_raw_and_keeps_state(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 2)])
    order = _apply(channel, None, [market_line(keys, 2)], minutes=1, raw_status="IN_CANCEL")
    assert (order.status, order.raw_status) == ("paid", "IN_CANCEL")
    assert _kinds(order) == ["created", "raw_status"]
    assert _level(product).reserved == 2


@pytest.mark.parametrize(("paid", "status"), [(True, "paid"), (False, "pending_payment")])
def test_order_apply_market_new_order_with_none_status_opens(channel, listed, paid, status):
    _, keys = listed(10)
    order = _apply(channel, None, [market_line(keys, 1)], paid=paid)
    assert order.status == status
    assert order.lines.get().status == "reserved"


def test_order_apply_market_same_order_1000_times_is_one_order(channel, listed):
    first, first_keys = listed(10)
    second, second_keys = listed(10)
    lines = [market_line(first_keys, 2), market_line(second_keys, 1)]
    for _ in range(1000):
        _apply(channel, S.PAID, lines)
    assert Order.objects.count() == 1
    assert Reservation.objects.count() == 2
    assert OrderLine.objects.count() == 2
    assert (_level(first).reserved, _level(second).reserved) == (2, 1)
    assert OrderEvent.objects.count() == 1


def test_order_apply_market_unmapped_line_parks_and_others_reserve(channel, listed):
    product, keys = listed(10)
    unknown = {"item_id": "999", "model_id": "888"}
    order = _apply(channel, S.PAID, [market_line(keys, 2), market_line(unknown, 1, sku="NOPE")])
    assert order.needs_mapping is True
    statuses = dict(order.lines.values_list("sku", "status"))
    assert statuses == {"": "reserved", "NOPE": "needs_mapping"}
    assert _level(product).reserved == 2
    assert _kinds(order) == ["created", "parked"]


def test_order_apply_market_matches_by_seller_sku_then_product_sku(channel, stocked):
    from tests.channels_sync.factories import ChannelListingFactory

    listed_product = stocked(5)
    ChannelListingFactory(channel=channel, product=listed_product, external_sku="SELLER-1")
    plain = stocked(5, sku="PLAIN-1")
    order = _apply(
        channel,
        S.PAID,
        [
            market_line({"item_id": "1", "model_id": "2"}, 1, sku="SELLER-1", key="a"),
            market_line({}, 1, sku="PLAIN-1", key="b"),
        ],
    )
    assert list(order.lines.order_by("line_number").values_list("product_id", flat=True)) == [
        listed_product.pk,
        plain.pk,
    ]


def test_order_apply_market_oversold_line_is_short_and_ledger_exact(channel, listed):
    product, keys = listed(2)
    order = _apply(channel, S.PAID, [market_line(keys, 5)])
    line = order.lines.get()
    assert line.status == "short"
    level = _level(product)
    assert (level.on_hand, level.reserved, level.available) == (2, 5, -3)
    sums = StockMovement.objects.filter(level=level).aggregate(
        on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
    )
    assert (sums["on_hand"], sums["reserved"]) == (level.on_hand, level.reserved)
    assert "oversold" in _kinds(order)


# --- Quantities follow the marketplace while the order is open --------------------------------


def _ledger_exact() -> None:
    from inventory.selectors import ledger_mismatches

    assert ledger_mismatches() == []


def test_order_apply_market_decrease_then_ship_commits_the_new_quantity(channel, listed):
    # given an order paid for 3 whose buyer cancels 2 units (left out of the live detail)
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 3)])
    # when
    order = _apply(channel, S.PAID, [market_line(keys, 1)], minutes=1)
    # then the line holds 1, under a new key, and says what changed
    line = order.lines.get()
    assert (line.quantity, line.status, line.revision) == (1, "reserved", 1)
    assert line.reservation.quantity == 1
    assert line.reservation.idempotency_key == f"order_line:{line.pk}:r1"
    assert line.reservation.owner == "order_line"
    assert (_level(product).on_hand, _level(product).reserved) == (10, 1)
    event = order.events.get(kind="quantity")
    assert event.details == {"line": 1, "from": "3.000", "to": "1"}
    assert _kinds(order) == ["created", "quantity"]
    # when it ships with that quantity
    order = _apply(channel, S.SHIPPED, [market_line(keys, 1)], minutes=2)
    # then exactly 1 unit left the warehouse
    assert order.lines.get().status == "committed"
    assert (_level(product).on_hand, _level(product).reserved) == (9, 0)
    assert Reservation.objects.filter(status="active").count() == 0
    _ledger_exact()


def test_order_apply_market_same_decrease_twice_changes_once(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 3)])
    _apply(channel, S.PAID, [market_line(keys, 1)], minutes=1)
    order = _apply(channel, S.PAID, [market_line(keys, 1)], minutes=1)
    assert order.events.filter(kind="quantity").count() == 1
    assert Reservation.objects.count() == 2
    assert _level(product).reserved == 1
    _ledger_exact()


def test_order_apply_market_vanished_line_is_released(channel, listed):
    # given an order of two products
    kept, kept_keys = listed(10)
    gone, gone_keys = listed(10)
    _apply(channel, S.PAID, [market_line(kept_keys, 2), market_line(gone_keys, 3)])
    # when the marketplace's detail no longer shows the second line
    order = _apply(channel, S.READY_TO_SHIP, [market_line(kept_keys, 2)], minutes=1)
    # then its stock is given back and the line says so
    lines = list(order.lines.order_by("line_number"))
    assert [(line.quantity, line.status) for line in lines] == [(2, "reserved"), (0, "released")]
    assert lines[1].reservation.status == Reservation.Status.RELEASED
    assert (_level(kept).reserved, _level(gone).reserved) == (2, 0)
    # and shipping commits only what is left
    _apply(channel, S.SHIPPED, [market_line(kept_keys, 2)], minutes=2)
    assert (_level(kept).on_hand, _level(gone).on_hand) == (8, 10)
    _ledger_exact()


def test_order_apply_market_increase_reserves_the_new_quantity(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PENDING_PAYMENT, [market_line(keys, 1)])
    order = _apply(channel, S.PAID, [market_line(keys, 4)], minutes=1)
    line = order.lines.get()
    assert (line.quantity, line.status, line.reservation.quantity) == (4, "reserved", 4)
    assert _level(product).reserved == 4
    assert order.events.get(kind="quantity").details == {"line": 1, "from": "1.000", "to": "4"}
    _ledger_exact()


def test_order_apply_market_line_back_after_vanishing_is_held_again(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 2)])
    _, other_keys = listed(10)
    _apply(channel, S.PAID, [market_line(other_keys, 1)], minutes=1)  # the first line gone
    assert _level(product).reserved == 0
    order = _apply(channel, S.PAID, [market_line(keys, 2), market_line(other_keys, 1)], minutes=2)
    line = order.lines.get(line_number=1)
    assert (line.status, line.revision) == ("reserved", 1)
    assert _level(product).reserved == 2
    assert not order.events.filter(kind="stock_mismatch").exists()
    _ledger_exact()


def test_order_apply_market_cancel_keeps_quantities_and_releases_all(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 3)])
    # a cancelled order's detail may show its lines emptied
    order = _apply(channel, S.CANCELLED, [market_line(keys, 0)], minutes=1)
    line = order.lines.get()
    assert (line.quantity, line.status) == (3, "released")
    assert not order.events.filter(kind="quantity").exists()
    assert _level(product).reserved == 0
    _ledger_exact()


def test_order_apply_market_quantities_final_once_shipped(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.SHIPPED, [market_line(keys, 3)])
    order = _apply(channel, S.DELIVERED, [market_line(keys, 1)], minutes=1)
    assert order.lines.get().quantity == 3
    assert not order.events.filter(kind="quantity").exists()
    assert _level(product).on_hand == 7
    _ledger_exact()


def test_order_apply_market_detail_without_lines_changes_no_quantity(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.PAID, [market_line(keys, 3)])
    order = _apply(channel, S.READY_TO_SHIP, [], minutes=1)
    assert order.lines.get().quantity == 3
    assert _level(product).reserved == 3


def test_order_apply_market_vanished_unmapped_line_unparks(channel, listed):
    _, keys = listed(10)
    unknown = market_line({}, 1, sku="NOPE", key="x")
    parked = _apply(channel, S.PAID, [market_line(keys, 1), unknown])
    assert parked.needs_mapping is True
    order = _apply(channel, S.PAID, [market_line(keys, 1)], minutes=1)
    assert order.needs_mapping is False
    assert order.lines.get(sku="NOPE").status == "released"


# --- Repeated lower states --------------------------------------------------------------------


def test_order_apply_market_repeated_lower_state_recorded_once_keeps_raw(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.READY_TO_SHIP, [market_line(keys, 2)], raw_status="READY_TO_SHIP")
    for _ in range(3):
        order = _apply(channel, S.PAID, [market_line(keys, 2)], minutes=5, raw_status="PAID")
    order.refresh_from_db()
    assert order.events.filter(kind="backward").count() == 1
    assert (order.status, order.raw_status) == ("ready_to_ship", "READY_TO_SHIP")
    assert order.source_updated_at == T0
    # a later repeat of the lower state is a new fact: recorded again
    _apply(channel, S.PAID, [market_line(keys, 2)], minutes=6, raw_status="PAID")
    assert order.events.filter(kind="backward").count() == 2
    assert _level(product).reserved == 2


def test_order_apply_market_lower_state_changes_no_quantity(channel, listed):
    product, keys = listed(10)
    _apply(channel, S.READY_TO_SHIP, [market_line(keys, 3)])
    order = _apply(channel, S.PAID, [market_line(keys, 1)], minutes=5)
    assert order.lines.get().quantity == 3
    assert _level(product).reserved == 3
