"""An order line's reservation belongs to the order: closed only through the order."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from channels_sync.adapters import OrderStatus
from inventory.models import Reservation, StockLevel
from inventory.selectors import ledger_mismatches
from inventory.services import Origin, stock_commit, stock_release
from orders.models import Order
from orders.services import order_apply_market
from orders.services.lifecycle import RESERVATION_OWNER
from tests.orders.conftest import market_line, market_order

S = OrderStatus
pytestmark = pytest.mark.django_db

# What a release or commit outside the order did before it was refused (existing data).
OUTSIDE = Origin(source="api", actor="api:legacy", reason="closed outside the order")


def _apply(channel, status, lines, **kwargs) -> Order:
    return order_apply_market(
        channel=channel, order=market_order(status, lines, **kwargs), source="poll"
    )


def _level(product) -> StockLevel:
    return StockLevel.objects.get(product=product)


@pytest.mark.parametrize("action", ["release", "commit"])
def test_api_refuses_to_close_an_order_lines_reservation(api, channel, listed, action):
    # given an open marketplace order holding 3
    product, keys = listed(10)
    order = _apply(channel, S.PAID, [market_line(keys, 3)])
    reservation = order.lines.get().reservation
    # when the API is asked to release or commit it
    response = api.post(f"/api/v1/reservations/{reservation.pk}/{action}/", {}, format="json")
    # then it is refused and nothing moved
    assert response.status_code == 409
    assert response.json()["code"] == "reservation_owned_by_order"
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.ACTIVE
    assert (_level(product).on_hand, _level(product).reserved) == (10, 3)
    shown = api.get(f"/api/v1/reservations/{reservation.pk}/").json()
    assert shown["owner"] == "order_line"


def test_api_reservation_with_an_order_like_reference_is_still_its_callers(api, stocked):
    # ownership is a flag set by the order services, not a reference anyone may write
    product = stocked(5)
    created = api.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": "1", "reference": "order_line:1"},
        format="json",
    ).json()
    assert created["owner"] == ""
    released = api.post(f"/api/v1/reservations/{created['id']}/release/", {}, format="json")
    assert released.status_code == 200
    assert released.json()["status"] == "released"


def test_admin_release_action_refuses_an_order_lines_reservation(channel, listed):
    product, keys = listed(10)
    order = _apply(channel, S.PAID, [market_line(keys, 3)])
    reservation = order.lines.get().reservation
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    response = client.post(
        "/admin/inventory/reservation/",
        {"action": "release_selected", "_selected_action": [reservation.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "hold an order&#x27;s stock" in response.content.decode()
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.ACTIVE
    assert _level(product).reserved == 3


def test_order_ships_a_line_whose_reservation_was_released_outside(channel, listed):
    # given an open order whose line's reservation was released outside the order
    product, keys = listed(10)
    order = _apply(channel, S.PAID, [market_line(keys, 3)])
    old = order.lines.get().reservation
    stock_release(reservation=old, origin=OUTSIDE, owner=RESERVATION_OWNER)
    # when the marketplace ships it
    order = _apply(channel, S.SHIPPED, [market_line(keys, 3)], minutes=1)
    # then the shipment is not taken as done: the units are held again and committed,
    # and the record says what was found
    line = order.lines.get()
    assert (line.status, line.revision) == ("committed", 1)
    assert line.reservation.status == Reservation.Status.COMMITTED
    assert line.reservation.pk != old.pk
    assert (_level(product).on_hand, _level(product).reserved) == (7, 0)
    mismatch = order.events.get(kind="stock_mismatch")
    assert mismatch.details["reservation"] == old.pk
    assert mismatch.details["reservation_status"] == "released"
    assert ledger_mismatches() == []


def test_order_open_line_released_outside_is_held_again_once(channel, listed):
    product, keys = listed(10)
    order = _apply(channel, S.PAID, [market_line(keys, 3)])
    stock_release(reservation=order.lines.get().reservation, origin=OUTSIDE, owner="order_line")
    for minutes in (1, 2):
        order = _apply(channel, S.READY_TO_SHIP, [market_line(keys, 3)], minutes=minutes)
    assert order.lines.get().status == "reserved"
    assert _level(product).reserved == 3
    assert order.events.filter(kind="stock_mismatch").count() == 1
    assert ledger_mismatches() == []


def test_order_cancelled_after_its_line_was_committed_outside(channel, listed):
    # given an open order whose line's stock was committed outside the order
    product, keys = listed(10)
    order = _apply(channel, S.PAID, [market_line(keys, 3)])
    stock_commit(reservation=order.lines.get().reservation, origin=OUTSIDE, owner="order_line")
    # when the marketplace cancels it (twice)
    for minutes in (1, 2):
        order = _apply(channel, S.CANCELLED, [market_line(keys, 3)], minutes=minutes)
    # then the line says its stock left (it cannot be given back) and the event is written once
    line = order.lines.get()
    assert (order.status, line.status) == ("cancelled", "committed")
    assert order.events.filter(kind="stock_mismatch").count() == 1
    assert (_level(product).on_hand, _level(product).reserved) == (7, 0)
    assert ledger_mismatches() == []
