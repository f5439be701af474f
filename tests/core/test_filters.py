"""Every list endpoint refuses a filter or paging value it cannot use (400 `invalid_filter`).

The list operations and their parameters are read from the OpenAPI schema, so a new list
endpoint is covered as soon as it is documented.
"""

from decimal import Decimal

import pytest
from drf_spectacular.generators import SchemaGenerator

from inventory.models import StockLevel
from inventory.services import Origin, stock_set
from tests.channels_sync.factories import ChannelFactory
from tests.inventory.factories import ProductFactory

pytestmark = pytest.mark.django_db

ORIGIN = Origin(source="test", actor="test")


def _list_operations() -> list[tuple[str, dict]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, methods in schema["paths"].items():
        operation = methods.get("get")
        names = {parameter["name"] for parameter in (operation or {}).get("parameters", [])}
        if operation and ("page" in names or "cursor" in names):
            operations.append((path, operation))
    return operations


LIST_OPERATIONS = _list_operations()


def _query_parameters(operation: dict) -> list[dict]:
    return [p for p in operation.get("parameters", []) if p["in"] == "query"]


@pytest.fixture
def list_url(warehouse):
    channel = ChannelFactory(warehouses=[warehouse])

    def url(path: str) -> str:
        return path.replace("{channel_id}", str(channel.pk))

    return url


def assert_invalid_filter(response, parameter: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid_filter"
    assert list(body["details"]) == [parameter]
    assert set(body) == {"code", "message", "details", "correlation_id"}


def test_filters_cover_the_list_endpoints():
    paths = {path for path, _ in LIST_OPERATIONS}
    assert {
        "/api/v1/products/",
        "/api/v1/stock-levels/",
        "/api/v1/stock-movements/",
        "/api/v1/reservations/",
        "/api/v1/warehouses/",
        "/api/v1/channels/",
        "/api/v1/channels/{channel_id}/listings/",
        "/api/v1/channels/{channel_id}/attempts/",
        "/api/v1/channels/{channel_id}/rules/",
        "/api/v1/erp/agents/",
        "/api/v1/erp/mappings/",
        "/api/v1/erp/sync-runs/",
    } <= paths


@pytest.mark.parametrize(
    ("path", "operation"), LIST_OPERATIONS, ids=[p for p, _ in LIST_OPERATIONS]
)
def test_filters_refuse_unreadable_values_on_every_list(api, list_url, path, operation):
    checked = 0
    for parameter in _query_parameters(operation):
        name, schema = parameter["name"], parameter["schema"]
        bad = []
        if schema.get("type") == "boolean":
            bad = ["maybe", ""]
        elif schema.get("format") == "uuid":
            bad = ["not-a-uuid", ""]
        elif "enum" in schema:
            bad = ["no-such-choice", ""]
        elif schema.get("format") == "date-time":
            bad = ["yesterday", ""]
        elif name == "page_size":
            bad = ["abc", "0", "-1", str(schema["maximum"] + 1), "1e3"]
        elif name == "page":
            bad = ["abc", "1.5"]
        elif name == "cursor":
            bad = ["not-a-cursor"]
        for value in bad:
            assert_invalid_filter(api.get(list_url(path), {name: value}), name)
            checked += 1
    assert checked >= 5  # page_size on every list, and page or cursor


@pytest.mark.parametrize(
    ("path", "operation"), LIST_OPERATIONS, ids=[p for p, _ in LIST_OPERATIONS]
)
def test_filters_documented_on_every_list(path, operation):
    responses = operation["responses"]
    assert "`invalid_filter`" in responses["400"]["description"]
    if any(p["name"] == "page" for p in operation["parameters"]):
        assert "`page_not_found`" in responses["404"]["description"]
    page_size = next(p for p in operation["parameters"] if p["name"] == "page_size")
    assert page_size["schema"]["minimum"] == 1
    assert page_size["schema"]["maximum"] in {500, 1000}


def test_filters_boolean_reads_true_and_false(api, stocked):
    low = stocked(1)
    StockLevel.objects.filter(product=low).update(min_stock=5)
    stocked(10)

    below = api.get("/api/v1/stock-levels/", {"below_min": "true"}).json()["results"]
    above = api.get("/api/v1/stock-levels/", {"below_min": "FALSE"}).json()["results"]
    everything = api.get("/api/v1/stock-levels/").json()["results"]

    assert [row["sku"] for row in below] == [low.sku]
    assert low.sku not in [row["sku"] for row in above]
    assert len(everything) == 2


def test_filters_since_with_a_far_offset_is_read_in_utc(api, stocked):
    # PostgreSQL refuses offsets beyond +-15:59 that ISO 8601 allows: once a 500.
    stocked(3)

    response = api.get("/api/v1/stock-movements/", {"since": "2000-01-01T00:00:00+23:27"})
    out_of_range = api.get("/api/v1/stock-movements/", {"since": "0001-01-01T00:00:00+01:00"})

    assert response.status_code == 200
    assert len(response.json()["results"]) == 1
    assert_invalid_filter(out_of_range, "since")


def test_pagination_page_zero_and_past_the_end_are_not_found(api, warehouse):
    for _ in range(3):
        stock_set(product=ProductFactory(), warehouse=warehouse, quantity=Decimal(1), origin=ORIGIN)

    assert api.get("/api/v1/products/", {"page_size": 2, "page": 2}).status_code == 200
    assert api.get("/api/v1/products/", {"page_size": 2, "page": "last"}).status_code == 200
    for page in ("0", "-1", "3"):
        response = api.get("/api/v1/products/", {"page_size": 2, "page": page})
        assert response.status_code == 404, page
        assert response.json()["code"] == "page_not_found"
        assert response.json()["details"] == {"page": int(page), "pages": 2}
