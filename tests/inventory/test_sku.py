"""SKUs that could not be reached at /products/{sku}/ are refused wherever the API makes one."""

import uuid
from urllib.parse import quote

import pytest

from inventory.models import Product

pytestmark = pytest.mark.django_db

# A slash, control characters, zero-width and bidi-override characters, a BOM, separators,
# and the URL dot segments.
UNREACHABLE = [
    "A/B",
    "A\tB",
    "A\u0007B",
    "A\u0085B",
    "A\u200bB",
    "A\u200dB",
    "A\u202eB",
    "A\u2066B",
    "\ufeffAB",
    "A\u2028B",
    ".",
    "..",
]


def assert_invalid_sku(response) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["details"]["sku"] == [
        'A SKU cannot contain "/", control, zero-width or bidi-override characters, '
        'nor be "." or "..".'
    ]


@pytest.mark.parametrize("sku", UNREACHABLE)
def test_sku_product_create_refuses_an_unreachable_sku(api, vendor, sku):
    response = api.post("/api/v1/products/", {"sku": sku, "name": "x"}, format="json")

    assert_invalid_sku(response)
    assert not Product.objects.exists()


@pytest.mark.parametrize("sku", ["A-1", "A B", "Caf\u00e9 \u00e0 la cr\u00e8me", "a.b", "A+B%C?#"])
def test_sku_product_create_keeps_reachable_skus_reachable(api, vendor, sku):
    created = api.post("/api/v1/products/", {"sku": sku, "name": "x"}, format="json")
    assert created.status_code == 201, created.content

    fetched = api.get(f"/api/v1/products/{quote(sku, safe='')}/")

    assert fetched.status_code == 200, fetched.content
    assert fetched.json()["sku"] == sku


@pytest.mark.parametrize("sku", ["A/B", "A\u202eB"])
def test_sku_stock_mutation_and_batch_refuse_an_unreachable_sku(api, warehouse, sku):
    body = {"sku": sku, "warehouse": "MAIN", "type": "adjust", "quantity": "1"}

    single = api.post(
        "/api/v1/stock-mutations/", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    batch = api.post(
        "/api/v1/stock-mutations/batch/",
        {"rows": [body]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )

    assert_invalid_sku(single)
    [row] = batch.json()["results"]
    assert (row["status"], row["code"], list(row["details"])) == (
        "error",
        "validation_error",
        ["sku"],
    )
