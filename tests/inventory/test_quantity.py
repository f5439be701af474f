"""Quantities are read in one documented form wherever the API takes them."""

import uuid
from decimal import Decimal

import pytest

from inventory.models import StockLevel
from tests.erp_mapping.test_ingest import STOCK, agent_client, statuses, stock_row

pytestmark = pytest.mark.django_db

MUTATIONS = "/api/v1/stock-mutations/"
REFUSED = ["1e3", "1E3", "1_000", "+5", "\u0661\u0662", "5\u0660", " 5", "5 ", "0x10", "", "."]
REFUSED += ["1.", ".5", "-", "NaN", "Infinity", True, None, [5], {"n": 5}]


def mutate(api, sku: str, quantity):
    body = {"sku": sku, "warehouse": "MAIN", "type": "adjust", "quantity": quantity}
    return api.post(MUTATIONS, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.mark.parametrize("quantity", REFUSED)
def test_quantity_other_forms_are_refused_with_the_field(api, stocked, quantity):
    product = stocked(10)

    response = mutate(api, product.sku, quantity)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert list(body["details"]) == ["quantity"]
    assert StockLevel.objects.get(product=product).on_hand == Decimal(10)


@pytest.mark.parametrize(
    ("quantity", "on_hand"),
    [("2", "12"), ("-1.5", "8.5"), ("0.125", "10.125"), (3, "13"), (2.5, "12.5"), ("007", "17")],
)
def test_quantity_documented_forms_and_json_numbers_are_accepted(api, stocked, quantity, on_hand):
    product = stocked(10)

    response = mutate(api, product.sku, quantity)

    assert response.status_code == 201, response.content
    assert StockLevel.objects.get(product=product).on_hand == Decimal(on_hand)


def test_quantity_over_three_decimals_is_refused(api, stocked):
    response = mutate(api, stocked(10).sku, "1.0005")

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["quantity"]


def test_quantity_of_a_reservation_takes_the_same_form(api, stocked):
    product = stocked(10)
    body = {"sku": product.sku, "warehouse": "MAIN", "quantity": "1e0"}

    response = api.post("/api/v1/reservations/", body, format="json")

    assert response.status_code == 400
    assert list(response.json()["details"]) == ["quantity"]


def test_quantity_of_an_agent_stock_row_takes_the_same_form(vendor, stocked):
    a, b, c = stocked(10), stocked(10), stocked(10)
    rows = [
        stock_row(sku=a.sku, quantity="1e3"),
        stock_row(sku=b.sku, quantity="+5"),
        stock_row(sku=c.sku, quantity=7),
    ]

    response = agent_client(vendor).post(STOCK, {"rows": rows}, format="json")

    assert response.status_code == 200, response.content
    assert [(status, code) for _, status, code in statuses(response.json())] == [
        ("invalid", "invalid_row"),
        ("invalid", "invalid_row"),
        ("updated", ""),
    ]
    levels = dict(StockLevel.objects.values_list("product__sku", "on_hand"))
    assert levels == {a.sku: Decimal(10), b.sku: Decimal(10), c.sku: Decimal(7)}
