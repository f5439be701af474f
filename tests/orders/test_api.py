"""The orders API: create (idempotent), refusals with exact codes, list filters, detail, actions."""

import uuid
from decimal import Decimal

import pytest

from channels_sync.adapters import OrderStatus
from inventory.models import Reservation, StockLevel, StockMovement
from orders.models import Order
from orders.services import order_apply_market
from tests.orders.conftest import market_line, market_order

pytestmark = pytest.mark.django_db

URL = "/api/v1/orders/"


def _post(api, body: dict, *, key: str | None = None):
    return api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def _body(*lines: dict, number: str = "WEB-1", **extra) -> dict:
    return {"order_number": number, "lines": list(lines), **extra}


def test_order_create_reserves_lines_and_confirms(api, stocked, warehouse):
    # given
    product = stocked(10)
    # when
    response = _post(
        api,
        _body(
            {"sku": product.sku, "quantity": "3", "unit_price": "12.50", "vat_rate": "11"},
            customer={"name": "Ani"},
            address={"city": "Jakarta"},
            notes="gift",
        ),
    )
    # then
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["status"] == "paid"
    assert data["channel"] is None
    assert data["external_id"] == ""
    assert data["order_number"] == "WEB-1"
    assert data["needs_mapping"] is False
    assert [(line["sku"], line["quantity"], line["status"]) for line in data["lines"]] == [
        (product.sku, "3.000", "reserved")
    ]
    assert data["lines"][0]["warehouse"] == "MAIN"
    assert [e["kind"] for e in data["events"]] == ["created"]
    level = StockLevel.objects.get(product=product)
    assert level.reserved == 3
    reservation = Reservation.objects.get()
    assert reservation.expires_at is None
    assert StockMovement.objects.get(kind="reserve").source == "api"


def test_order_create_replays_with_same_key(api, stocked):
    product = stocked(10)
    body = _body({"sku": product.sku, "quantity": "2"})
    first = _post(api, body, key="k-1")
    second = _post(api, body, key="k-1")
    assert first.status_code == second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert Order.objects.count() == 1
    assert StockLevel.objects.get(product=product).reserved == 2


def test_order_create_requires_idempotency_key(api, stocked):
    product = stocked(10)
    response = api.post(URL, _body({"sku": product.sku, "quantity": "1"}), format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


def test_order_create_insufficient_stock_refuses_whole_order(api, stocked):
    plenty = stocked(10)
    scarce = stocked(1)
    response = _post(
        api,
        _body(
            {"sku": plenty.sku, "quantity": "2"},
            {"sku": scarce.sku, "quantity": "3"},
            {"sku": scarce.sku, "quantity": "1"},
        ),
    )
    assert response.status_code == 409
    error = response.json()
    assert error["code"] == "insufficient_stock"
    assert [(line["line"], line["sku"]) for line in error["details"]["lines"]] == [(2, scarce.sku)]
    assert Order.objects.count() == 0
    assert not Reservation.objects.exists()
    assert StockLevel.objects.get(product=plenty).reserved == 0


def test_order_create_unknown_sku_names_the_line(api, stocked):
    product = stocked(10)
    response = _post(
        api, _body({"sku": product.sku, "quantity": "1"}, {"sku": "NOPE-1", "quantity": "1"})
    )
    assert response.status_code == 400
    error = response.json()
    assert error["code"] == "unknown_sku"
    assert error["details"]["line"] == 2
    assert error["details"]["sku"] == "NOPE-1"
    assert not Reservation.objects.exists()
    assert Order.objects.count() == 0


def test_order_create_unknown_warehouse_names_the_line(api, stocked):
    product = stocked(10)
    response = _post(api, _body({"sku": product.sku, "quantity": "1", "warehouse": "XX"}))
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_warehouse"
    assert response.json()["details"]["line"] == 1


def test_order_create_taken_number_is_order_exists(api, stocked):
    product = stocked(10)
    assert _post(api, _body({"sku": product.sku, "quantity": "1"})).status_code == 201
    response = _post(api, _body({"sku": product.sku, "quantity": "1"}))
    assert response.status_code == 409
    assert response.json()["code"] == "order_exists"
    assert StockLevel.objects.get(product=product).reserved == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"order_number": "X", "lines": []}, "lines"),
        ({"lines": [{"sku": "A", "quantity": "1"}]}, "order_number"),
        ({"order_number": "X", "lines": [{"sku": "A", "quantity": "0"}]}, "lines"),
    ],
)
def test_order_create_validation_error(api, body, field):
    response = _post(api, body)
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert field in str(response.json()["details"])


def test_order_list_filters(api, stocked, channel, listed):
    product = stocked(10)
    _post(api, _body({"sku": product.sku, "quantity": "1"}, number="API-1"))
    _, keys = listed(10)
    market = order_apply_market(
        channel=channel,
        order=market_order(OrderStatus.SHIPPED, [market_line(keys, 1)], external_id="EXT-9"),
        source="poll",
    )
    parked = order_apply_market(
        channel=channel,
        order=market_order(
            OrderStatus.PAID, [market_line({}, 1, sku="NOPE", key="n")], external_id="EXT-10"
        ),
        source="poll",
    )

    def ids(query: str) -> list[int]:
        response = api.get(URL + query)
        assert response.status_code == 200, response.json()
        return sorted(row["id"] for row in response.json()["results"])

    assert ids(f"?channel={channel.pk}") == sorted([market.pk, parked.pk])
    assert ids("?external_id=EXT-9") == [market.pk]
    assert ids("?status=shipped") == [market.pk]
    assert ids("?needs_mapping=true") == [parked.pk]
    assert ids("?placed_before=2025-03-02T00:00:00Z") == sorted([market.pk, parked.pk])
    assert len(ids("?placed_after=2025-03-02T00:00:00Z")) == 1
    bad = api.get(URL + "?status=lost")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_filter"


def test_order_list_queries_do_not_grow_with_orders(api, stocked, django_assert_max_num_queries):
    product = stocked(100)
    for n in range(5):
        _post(api, _body({"sku": product.sku, "quantity": "1"}, number=f"N-{n}"))
    with django_assert_max_num_queries(8):
        response = api.get(URL)
    assert response.status_code == 200
    assert response.json()["count"] == 5


def test_order_detail_and_not_found(api, stocked):
    product = stocked(10)
    created = _post(api, _body({"sku": product.sku, "quantity": "1"})).json()
    detail = api.get(f"{URL}{created['id']}/")
    assert detail.status_code == 200
    assert detail.json()["lines"][0]["sku"] == product.sku
    assert detail.json()["events"][0]["kind"] == "created"
    missing = api.get(f"{URL}999999/")
    assert missing.status_code == 404
    assert missing.json()["code"] == "order_not_found"


def test_order_cancel_releases_and_is_idempotent(api, stocked):
    product = stocked(10)
    order_id = _post(api, _body({"sku": product.sku, "quantity": "4"})).json()["id"]
    first = api.post(f"{URL}{order_id}/cancel/", {"reason": "customer"}, format="json")
    second = api.post(f"{URL}{order_id}/cancel/", {}, format="json")
    assert first.status_code == second.status_code == 200
    assert second.json()["status"] == "cancelled"
    assert second.json()["lines"][0]["status"] == "released"
    assert StockLevel.objects.get(product=product).reserved == 0
    assert StockMovement.objects.filter(kind="release").count() == 1
    ship = api.post(f"{URL}{order_id}/ship/", {}, format="json")
    assert ship.status_code == 409
    assert ship.json()["code"] == "invalid_transition"


def test_order_ship_commits_and_cancel_after_ship_is_refused(api, stocked):
    product = stocked(10)
    order_id = _post(api, _body({"sku": product.sku, "quantity": "4"})).json()["id"]
    first = api.post(f"{URL}{order_id}/ship/", {}, format="json")
    second = api.post(f"{URL}{order_id}/ship/", {}, format="json")
    assert first.status_code == second.status_code == 200
    assert second.json()["lines"][0]["status"] == "committed"
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (Decimal("6"), Decimal("0"))
    assert StockMovement.objects.filter(kind="commit").count() == 1
    cancel = api.post(f"{URL}{order_id}/cancel/", {}, format="json")
    assert cancel.status_code == 409
    assert cancel.json()["code"] == "invalid_transition"


@pytest.mark.parametrize("action", ["cancel", "ship"])
def test_order_cancel_and_ship_refuse_a_marketplace_order(api, channel, listed, action):
    # given a marketplace order holding 2
    product, keys = listed(10)
    order = order_apply_market(
        channel=channel, order=market_order(OrderStatus.PAID, [market_line(keys, 2)]), source="poll"
    )
    # when staff's integration tries to cancel or ship it through the API
    response = api.post(f"{URL}{order.pk}/{action}/", {}, format="json")
    # then it is refused: the marketplace decides, and its state comes back to us
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "marketplace_order"
    assert "on the marketplace" in body["message"]
    assert body["details"]["external_id"] == order.external_id
    order.refresh_from_db()
    assert order.status == "paid"
    assert list(order.events.values_list("kind", flat=True)) == ["created"]
    assert StockLevel.objects.get(product=product).reserved == 2
    # and the marketplace's own cancellation (or shipment) then applies as usual
    final = OrderStatus.CANCELLED if action == "cancel" else OrderStatus.SHIPPED
    order = order_apply_market(
        channel=channel, order=market_order(final, [market_line(keys, 2)], minutes=1), source="poll"
    )
    assert order.status == final


def test_order_create_needs_write_scope(make_client, stocked):
    reader = make_client(("read",))
    response = _post(reader, _body({"sku": stocked(1).sku, "quantity": "1"}))
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
