"""The orders console: list filters, actions, line mapping and restock through the forms."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from channels_sync.adapters import OrderStatus
from inventory.models import StockLevel, StockMovement
from orders.models import Order
from orders.services import order_apply_market
from tests.orders.conftest import market_line, market_order

S = OrderStatus
ADMIN = "/admin/orders"
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _apply(channel, status, lines, **kwargs) -> Order:
    return order_apply_market(
        channel=channel, order=market_order(status, lines, **kwargs), source="poll"
    )


def _action(client: Client, name: str, *orders: Order):
    return client.post(
        f"{ADMIN}/order/",
        {"action": name, "_selected_action": [o.pk for o in orders]},
        follow=True,
    )


def test_admin_order_pages_and_filters_render(staff_client, channel, listed):
    _, keys = listed(1)
    short = _apply(channel, S.PAID, [market_line(keys, 3)], external_id="SHORT-1")
    parked = _apply(
        channel, S.PAID, [market_line({}, 1, sku="NOPE", key="x")], external_id="PARK-1"
    )
    listing = staff_client.get(f"{ADMIN}/order/?has_short_lines=yes")
    assert listing.status_code == 200
    assert "SHORT-1" in listing.content.decode()
    assert "PARK-1" not in listing.content.decode()
    parked_list = staff_client.get(f"{ADMIN}/order/?needs_mapping__exact=1")
    assert "PARK-1" in parked_list.content.decode()
    assert "SHORT-1" not in parked_list.content.decode()
    for query in ("?status__exact=paid", f"?channel__id__exact={channel.pk}"):
        assert staff_client.get(f"{ADMIN}/order/{query}").status_code == 200
    detail = staff_client.get(f"{ADMIN}/order/{short.pk}/change/")
    assert detail.status_code == 200
    assert "oversold" in detail.content.decode()
    line_page = staff_client.get(f"{ADMIN}/orderline/{parked.lines.get().pk}/change/")
    assert line_page.status_code == 200


def test_admin_cancel_and_ship_actions(staff_client, channel, listed):
    product, keys = listed(10)
    first = _apply(channel, S.PAID, [market_line(keys, 2)], external_id="A-1")
    second = _apply(channel, S.PAID, [market_line(keys, 3)], external_id="A-2")
    response = _action(staff_client, "cancel_selected", first)
    assert "1 order(s) cancelled" in response.content.decode()
    _action(staff_client, "ship_selected", second)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("cancelled", "shipped")
    assert second.events.get(kind="status", to_status="shipped").source == "staff"
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (7, 0)
    # cancelling a shipped order is refused and says so
    refused = _action(staff_client, "cancel_selected", second)
    assert "Refused" in refused.content.decode()
    second.refresh_from_db()
    assert second.status == "shipped"


def test_admin_map_line_then_reprocess_action(staff_client, channel, stocked):
    product = stocked(10)
    order = _apply(channel, S.PAID, [market_line({}, 2, sku="UNKNOWN", key="u")])
    line = order.lines.get()
    response = staff_client.post(
        f"{ADMIN}/orderline/{line.pk}/change/", {"map_to": product.pk}, follow=True
    )
    assert response.status_code == 200
    line.refresh_from_db()
    order.refresh_from_db()
    assert (line.product_id, line.status, order.needs_mapping) == (product.pk, "reserved", False)
    _action(staff_client, "reprocess_selected", order)
    assert StockMovement.objects.filter(kind="reserve").count() == 1
    assert order.events.filter(kind="reprocessed", source="staff").count() == 1


def test_admin_restock_returned_line_needs_reason(staff_client, channel, listed):
    product, keys = listed(10)
    _apply(channel, S.SHIPPED, [market_line(keys, 2)])
    order = _apply(channel, S.RETURNED, [market_line(keys, 2)], minutes=30)
    line = order.lines.get()
    url = f"{ADMIN}/orderline/{line.pk}/change/"
    refused = staff_client.post(url, {"restock": "on", "restock_reason": ""})
    assert refused.status_code == 200  # the form again, with the error
    assert StockLevel.objects.get(product=product).on_hand == 8
    staff_client.post(url, {"restock": "on", "restock_reason": "sealed box"}, follow=True)
    assert StockLevel.objects.get(product=product).on_hand == 10
    line.refresh_from_db()
    assert line.restocked_quantity == 2
