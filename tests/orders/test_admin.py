"""The orders console: list filters, actions, line mapping and restock through the forms."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from channels_sync.adapters import OrderStatus
from inventory.models import StockLevel, StockMovement
from orders.models import Order, OrderEvent
from orders.services import Actor, OrderLineInput, order_apply_market, order_create
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


def _api_order(product, number: str, quantity: int) -> Order:
    return order_create(
        vendor=product.vendor,
        order_number=number,
        lines=[OrderLineInput(sku=product.sku, quantity=Decimal(quantity))],
        actor=Actor(source=OrderEvent.Source.API, actor="api:test"),
    )


def test_admin_cancel_and_ship_actions(staff_client, stocked):
    product = stocked(10)
    first = _api_order(product, "A-1", 2)
    second = _api_order(product, "A-2", 3)
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


@pytest.mark.parametrize("action", ["cancel_selected", "ship_selected"])
def test_admin_cancel_and_ship_refuse_marketplace_orders_per_order(
    staff_client, channel, listed, stocked, action
):
    # given a marketplace order and an API order selected together
    product, keys = listed(10)
    market = _apply(channel, S.PAID, [market_line(keys, 2)], external_id="M-1")
    ours = _api_order(stocked(10), "A-1", 1)
    # when
    response = _action(staff_client, action, market, ours)
    # then the API order changed, the marketplace order is refused by its number
    page = response.content.decode()
    assert "1 order(s)" in page
    assert "Refused: M-1: A marketplace order: cancel or ship it on the marketplace" in page
    market.refresh_from_db()
    ours.refresh_from_db()
    assert market.status == "paid"
    assert ours.status in ("cancelled", "shipped")
    assert StockLevel.objects.get(product=product).reserved == 2


def test_admin_action_reports_a_database_failure_per_order(staff_client, stocked):
    # given two API orders, the first failing in the database when its event is written
    # (a trigger of this test's transaction: the real error PostgreSQL gives for a value
    # out of range)
    product = stocked(10)
    failing = _api_order(product, "A-1", 2)
    fine = _api_order(product, "A-2", 3)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION test_event_out_of_range() RETURNS trigger AS $$
            BEGIN
                IF (SELECT order_number FROM orders_order WHERE id = NEW.order_id) = 'A-1' THEN
                    RAISE EXCEPTION 'numeric field overflow' USING ERRCODE = '22003';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql
            """
        )
        cursor.execute(
            "CREATE TRIGGER test_event_out_of_range BEFORE INSERT ON orders_orderevent "
            "FOR EACH ROW EXECUTE FUNCTION test_event_out_of_range()"
        )
    # when both are shipped from the console
    response = _action(staff_client, "ship_selected", failing, fine)
    # then the page reports each, the failing one untouched, the other shipped
    assert response.status_code == 200
    page = response.content.decode()
    assert "1 order(s) marked shipped" in page
    assert "Failed (logged; try again or look at the order): A-1: DataError" in page
    failing.refresh_from_db()
    fine.refresh_from_db()
    assert (failing.status, fine.status) == ("paid", "shipped")
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (7, 2)


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
