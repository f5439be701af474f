"""Orders across apps: parked -> mapped, oversold -> pushed 0, restock, the confirmed hook."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from channels_sync.adapters import OrderStatus
from channels_sync.models import ChannelListing
from channels_sync.services.listings import listings_upsert
from channels_sync.services.push import channel_push
from core.errors import DomainError
from inventory.models import StockLevel, StockMovement
from orders import hooks
from orders.errors import LineAlreadyMapped, LineNotReturned
from orders.models import Order, OrderEvent
from orders.services import (
    Actor,
    order_apply_market,
    order_line_map,
    order_line_restock,
)
from tests.orders.conftest import listing_keys, market_line, market_order

S = OrderStatus
STAFF = Actor(source=OrderEvent.Source.STAFF, actor="user:staff")
pytestmark = pytest.mark.django_db


def _parked(channel, keys: dict, *, status=S.PAID, sku: str = "SELLER-X") -> Order:
    order = order_apply_market(
        channel=channel, order=market_order(status, [market_line(keys, 2, sku=sku)]), source="poll"
    )
    assert order.needs_mapping is True
    assert order.lines.get().status == "needs_mapping"
    return order


def test_order_parked_then_listing_created_reserves(
    channel, stocked, django_capture_on_commit_callbacks
):
    # given an order whose line matches nothing
    product = stocked(10)
    keys = {"item_id": "7001", "model_id": "8001"}
    order = _parked(channel, keys)
    # when a listing with those keys is created
    with django_capture_on_commit_callbacks(execute=True):
        listings_upsert(
            channel=channel, rows=[{"sku": product.sku, "keys": keys}], actor="user:staff"
        )
    # then the order is reprocessed: mapped and reserved
    order.refresh_from_db()
    line = order.lines.get()
    assert order.needs_mapping is False
    assert (line.product_id, line.status) == (product.pk, "reserved")
    assert StockLevel.objects.get(product=product).reserved == 2
    assert list(order.events.values_list("kind", flat=True)) == [
        "created",
        "parked",
        "mapped",
        "reprocessed",
    ]


def test_order_parked_listing_of_other_keys_keeps_it_parked(
    channel, stocked, django_capture_on_commit_callbacks
):
    product = stocked(10)
    order = _parked(channel, {"item_id": "7001", "model_id": "8001"})
    with django_capture_on_commit_callbacks(execute=True):
        listings_upsert(
            channel=channel,
            rows=[{"sku": product.sku, "keys": {"item_id": "1", "model_id": "2"}}],
            actor="user:staff",
        )
    order.refresh_from_db()
    assert order.needs_mapping is True
    assert StockLevel.objects.get(product=product).reserved == 0


def test_order_parked_then_staff_map_reserves(channel, stocked):
    product = stocked(10)
    order = _parked(channel, {"item_id": "7001", "model_id": "8001"})
    line = order_line_map(line=order.lines.get(), product=product, actor=STAFF)
    order.refresh_from_db()
    assert (line.status, order.needs_mapping) == ("reserved", False)
    assert StockLevel.objects.get(product=product).reserved == 2
    mapped = order.events.filter(kind="mapped").first()
    assert (mapped.source, mapped.actor) == ("staff", "user:staff")
    # mapping again to the same product changes nothing; to another is refused
    order_line_map(line=line, product=product, actor=STAFF)
    with pytest.raises(LineAlreadyMapped) as refused:
        order_line_map(line=line, product=stocked(1), actor=STAFF)
    assert refused.value.code == "line_already_mapped"
    assert StockMovement.objects.filter(kind="reserve").count() == 1


def test_order_shipped_while_parked_commits_once_mapped(channel, stocked):
    product = stocked(10)
    order = _parked(channel, {"item_id": "7001", "model_id": "8001"}, status=S.SHIPPED)
    line = order_line_map(line=order.lines.get(), product=product, actor=STAFF)
    assert line.status == "committed"
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (8, 0)
    commit = StockMovement.objects.get(kind="commit")
    assert commit.source == f"channel:{channel.pk}"


def test_order_returned_line_restocked_by_staff_once(channel, listed):
    product, keys = listed(10)
    order_apply_market(
        channel=channel, order=market_order(S.SHIPPED, [market_line(keys, 3)]), source="poll"
    )
    order = order_apply_market(
        channel=channel,
        order=market_order(S.RETURNED, [market_line(keys, 3)], minutes=60),
        source="poll",
    )
    line = order.lines.get()
    with pytest.raises(DomainError) as blank:
        order_line_restock(line=line, reason=" ", actor=STAFF)
    assert blank.value.code == "reason_required"
    restocked = order_line_restock(line=line, reason="unopened", actor=STAFF)
    order_line_restock(line=line, reason="unopened", actor=STAFF)  # a repeat: nothing more
    assert restocked.restocked_quantity == 3
    level = StockLevel.objects.get(product=product)
    assert level.on_hand == 10
    adjust = StockMovement.objects.get(kind="adjust")
    assert "unopened" in adjust.reason
    assert adjust.actor == "user:staff"
    assert order.events.filter(kind="restocked").count() == 1


def test_order_restock_refuses_line_not_returned(channel, listed):
    _, keys = listed(10)
    order = order_apply_market(
        channel=channel, order=market_order(S.SHIPPED, [market_line(keys, 1)]), source="poll"
    )
    with pytest.raises(LineNotReturned) as refused:
        order_line_restock(line=order.lines.get(), reason="x", actor=STAFF)
    assert refused.value.code == "line_not_returned"


def test_order_oversold_alerts_once_per_hour_and_pushes_zero(
    shopee, lazada, wire, warehouse, stocked, log_lines, django_capture_on_commit_callbacks
):
    # given a product with 2 units listed on two channels, both showing 2
    product = stocked(2)
    selling = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    other = wire(lazada, "lazada", warehouses=[warehouse], products=[product], dirty=True)
    channel_push(channel_id=selling.pk)
    channel_push(channel_id=other.pk)
    shopee_keys, lazada_keys = listing_keys("shopee", 0), listing_keys("lazada", 0)
    assert (shopee.app.quantity(shopee_keys), lazada.app.quantity(lazada_keys)) == (2, 2)

    # when a marketplace order takes 5, then another takes 1 (within the hour, unless the
    # clock turns an hour between them: the key's hour is noted before and after)
    hours = {timezone.now().strftime("%Y-%m-%dT%H")}
    for n, quantity in ((1, 5), (2, 1)):
        with django_capture_on_commit_callbacks(execute=True):
            order = order_apply_market(
                channel=selling,
                order=market_order(
                    S.PAID, [market_line(shopee_keys, quantity)], external_id=f"OVER-{n}"
                ),
                source="webhook",
            )
        assert order.lines.get().status == "short"
    hours.add(timezone.now().strftime("%Y-%m-%dT%H"))

    # then the full quantities are held, one alert went out, every channel shows 0
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (Decimal("2"), Decimal("6"))
    raised = [
        line
        for line in log_lines()
        if line["event"] == "alert.raised" and line.get("title") == "Oversold"
    ]
    keys = [line["alert_key"] for line in raised]
    expected = {f"oversold:{product.pk}:{hour}" for hour in hours}
    # one alert per product and hour: one, or one in each hour when the clock turned
    assert len(keys) == len(set(keys)) >= 1
    assert set(keys) <= expected
    if len(hours) == 1:
        assert keys == list(expected)
    assert (shopee.app.quantity(shopee_keys), lazada.app.quantity(lazada_keys)) == (0, 0)
    assert set(ChannelListing.objects.values_list("last_pushed_quantity", flat=True)) == {0}


@pytest.fixture
def confirmed() -> list[int]:
    calls: list[int] = []
    hooks.order_confirmed_subscribe(calls.append)
    yield calls
    hooks.order_confirmed_unsubscribe(calls.append)


def test_order_confirmed_hook_fires_once_after_commit(
    channel, listed, confirmed, django_capture_on_commit_callbacks
):
    _, keys = listed(10)

    def apply(status, minutes=0):
        with django_capture_on_commit_callbacks(execute=True):
            return order_apply_market(
                channel=channel,
                order=market_order(status, [market_line(keys, 1)], minutes=minutes),
                source="webhook",
            )

    order = apply(S.PENDING_PAYMENT)
    assert confirmed == []
    apply(S.PAID, 1)
    apply(S.PAID, 1)
    apply(S.SHIPPED, 2)
    assert confirmed == [order.pk]


def test_order_confirmed_hook_not_told_on_rollback(
    channel, listed, confirmed, django_capture_on_commit_callbacks
):
    _, keys = listed(10)

    def apply_then_fail() -> None:
        with transaction.atomic():
            order_apply_market(
                channel=channel, order=market_order(S.PAID, [market_line(keys, 1)]), source="poll"
            )
            raise RuntimeError("roll back")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        apply_then_fail()
    assert confirmed == []
    assert Order.objects.count() == 0


def test_order_confirmed_hook_api_order(
    api, stocked, confirmed, django_capture_on_commit_callbacks
):
    product = stocked(5)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/orders/",
            {"order_number": "API-7", "lines": [{"sku": product.sku, "quantity": "1"}]},
            format="json",
            HTTP_IDEMPOTENCY_KEY="hook-1",
        )
    assert response.status_code == 201
    assert confirmed == [response.json()["id"]]
