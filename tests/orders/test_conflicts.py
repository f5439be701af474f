"""The conflicts orders find: a line sold past zero (oversell), one marketplace order id on two
of a vendor's channels (duplicate order)."""

from decimal import Decimal

import pytest

from channels_sync.adapters import OrderStatus
from channels_sync.models import Conflict, ConflictEvent
from orders.models import Order
from orders.services import Actor, OrderLineInput, order_apply_market, order_create
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory
from tests.inventory.factories import VendorFactory, WarehouseFactory
from tests.inventory.test_concurrency import run_concurrently
from tests.orders.conftest import market_line, market_order

S = OrderStatus


def _apply(channel, lines, **kwargs) -> Order:
    return order_apply_market(
        channel=channel, order=market_order(S.PAID, lines, **kwargs), source="webhook"
    )


# --- oversell ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_oversold_line_opens_an_oversell_conflict_on_its_listing(channel, listed, warehouse):
    # given: 2 available
    product, keys = listed(2)

    # when: the marketplace sold 5
    order = _apply(channel, [market_line(keys, 5)])

    # then
    line = order.lines.get()
    assert line.status == "short"
    conflict = Conflict.objects.get()
    assert (conflict.kind, conflict.status, conflict.source) == ("oversell", "open", "order")
    assert conflict.listing == channel.listings.get(product=product)
    assert conflict.product == product
    assert conflict.channel == channel
    assert conflict.reference == order.external_id
    assert (conflict.ours, conflict.theirs) == (Decimal(-3), Decimal(3))
    assert conflict.details["orders"] == [order.pk]
    assert conflict.details["warehouse_id"] == warehouse.pk
    assert conflict.details["line"] == line.line_number


@pytest.mark.django_db
def test_oversell_seen_again_updates_the_open_conflict_and_joins_the_orders(channel, listed):
    _, keys = listed(2)
    first = _apply(channel, [market_line(keys, 5)], external_id="A1")
    # the same detail again: the line is held already, nothing new
    _apply(channel, [market_line(keys, 5)], external_id="A1")
    second = _apply(channel, [market_line(keys, 1)], external_id="A2")

    conflict = Conflict.objects.get()
    assert conflict.details["orders"] == [first.pk, second.pk]
    assert (conflict.ours, conflict.theirs) == (Decimal(-4), Decimal(4))
    actions = list(conflict.events.order_by("id").values_list("action", flat=True))
    assert actions == ["opened", "updated"]


@pytest.mark.django_db
def test_line_with_stock_opens_no_conflict(channel, listed):
    _, keys = listed(5)
    _apply(channel, [market_line(keys, 5)])
    assert not Conflict.objects.exists()


@pytest.mark.django_db
def test_api_order_short_of_stock_is_refused_and_opens_no_conflict(stocked, vendor):
    product = stocked(1)
    with pytest.raises(Exception, match="Not enough stock"):
        order_create(
            vendor=vendor,
            order_number="API-1",
            lines=[OrderLineInput(sku=product.sku, quantity=Decimal("2"))],
            actor=Actor(source="api", actor="api:test"),
        )
    assert not Conflict.objects.exists()


@pytest.mark.django_db
def test_oversell_conflict_failure_never_fails_the_order(channel, listed, monkeypatch, log_lines):
    import orders.services.conflicts as detection

    def broken(**kwargs):
        raise RuntimeError("conflict store down")

    monkeypatch.setattr(detection, "conflict_open", broken)
    _, keys = listed(1)

    order = _apply(channel, [market_line(keys, 3)])

    assert order.lines.get().status == "short"
    assert not Conflict.objects.exists()
    assert "order.conflict_open_failed" in [line.get("event") for line in log_lines()]


# --- duplicate orders --------------------------------------------------------------------------


@pytest.fixture
def second_channel(vendor, warehouse):
    return ChannelFactory(vendor=vendor, warehouses=[warehouse], name="second shop")


@pytest.mark.django_db
def test_same_marketplace_id_on_two_channels_opens_a_duplicate_order_conflict(
    channel, second_channel, listed
):
    product, keys = listed(10)
    ChannelListingFactory(
        channel=second_channel,
        product=product,
        external_item_id=keys["item_id"],
        external_variant_id=keys["model_id"],
        dirty=False,
    )
    first = _apply(channel, [market_line(keys, 1)], external_id="DUP-1")
    # the first channel sees it again: no conflict
    _apply(channel, [market_line(keys, 1)], external_id="DUP-1", minutes=1)
    assert not Conflict.objects.exists()

    second = _apply(second_channel, [market_line(keys, 1)], external_id="DUP-1")

    conflict = Conflict.objects.get()
    assert (conflict.kind, conflict.reference, conflict.listing) == (
        "duplicate_order",
        "DUP-1",
        None,
    )
    assert conflict.channel == second_channel
    assert conflict.details == {
        "orders": [first.pk, second.pk],
        "channels": [channel.pk, second_channel.pk],
    }
    assert (conflict.ours, conflict.theirs) == (None, None)
    # both orders stand, each with its own number
    assert Order.objects.filter(external_id="DUP-1").count() == 2
    # seen again on the second channel: still one conflict, one event
    _apply(second_channel, [market_line(keys, 1)], external_id="DUP-1", minutes=2)
    assert Conflict.objects.count() == 1
    assert ConflictEvent.objects.count() == 1


@pytest.mark.django_db
def test_same_marketplace_id_at_another_vendor_is_no_duplicate(channel, listed):
    other_vendor = VendorFactory()
    other = ChannelFactory(
        vendor=other_vendor, warehouses=[WarehouseFactory(vendor=other_vendor, code="OTHER")]
    )
    _, keys = listed(10)
    _apply(channel, [market_line(keys, 1)], external_id="SAME")
    _apply(other, [market_line(keys, 1)], external_id="SAME")
    assert not Conflict.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_duplicate_first_sightings_at_once_on_two_channels_make_one_conflict(
    channel, second_channel, listed
):
    # given: four channels of one vendor receive the same marketplace order id at once
    _, keys = listed(10)
    channels = [channel, second_channel]
    channels += [ChannelFactory(vendor=channel.vendor, name=f"shop {n}") for n in (3, 4)]

    results = run_concurrently(
        len(channels), lambda i: _apply(channels[i], [market_line(keys, 1)], external_id="RACE")
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    conflict = Conflict.objects.get(kind="duplicate_order")
    assert sorted(conflict.details["orders"]) == sorted(r.pk for r in results)
    assert sorted(conflict.details["channels"]) == sorted(c.pk for c in channels)
