import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from inventory.models import Reservation, StockLevel, StockMovement
from inventory.selectors import ledger_mismatches
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory

pytestmark = pytest.mark.django_db

MUTATIONS = "/api/v1/stock-mutations/"
BATCH = "/api/v1/stock-mutations/batch/"


def post(api, url, body, key=None, **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key or str(uuid.uuid4()), **extra}
    return api.post(url, body, format="json", **headers)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "correlation_id"}
    assert body["correlation_id"] == response["X-Correlation-ID"]
    return body


# --- Catalogue ---------------------------------------------------------------------------


def test_products_create_get_patch(api, vendor):
    response = api.post(
        "/api/v1/products/",
        {
            "sku": "TEE-RED-M",
            "name": "T-shirt red M",
            "variant_group": "TEE-RED",
            "attributes": {"size": "M", "colour": "red"},
            "price_excl_vat": "10.00",
            "price_incl_vat": "12.10",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["vat_amount"] == "2.1000"
    assert response.json()["vendor"] == str(vendor.pk)

    got = api.get("/api/v1/products/TEE-RED-M/")
    assert got.status_code == 200
    assert got.json()["attributes"] == {"size": "M", "colour": "red"}

    patched = api.patch("/api/v1/products/TEE-RED-M/", {"is_discontinued": True}, format="json")
    assert patched.status_code == 200
    assert patched.json()["is_discontinued"] is True
    assert patched.json()["discontinued_at"] is not None


def test_products_duplicate_sku_is_409(api, vendor):
    ProductFactory(sku="DUP")
    response = api.post("/api/v1/products/", {"sku": "DUP", "name": "x"}, format="json")
    assert_error(response, 409, "sku_exists")


def test_products_unknown_sku_is_404(api, vendor):
    assert_error(api.get("/api/v1/products/NOPE/"), 404, "product_not_found")


def test_products_of_another_vendor_need_the_vendor_param(api, vendor):
    other = VendorFactory()
    ProductFactory(vendor=other, sku="THEIRS")
    assert_error(api.get("/api/v1/products/THEIRS/"), 404, "product_not_found")
    response = api.get(f"/api/v1/products/THEIRS/?vendor={other.pk}")
    assert response.status_code == 200


def test_products_list_filters(api, vendor):
    ProductFactory(sku="A-1", name="Apple juice", barcode="111")
    ProductFactory(sku="B-1", name="Banana", is_discontinued=True)
    ProductFactory(vendor=VendorFactory(), sku="C-1", name="Cherry")

    def skus(query):
        response = api.get(f"/api/v1/products/?{query}")
        assert response.status_code == 200
        return sorted(row["sku"] for row in response.json()["results"])

    assert skus("") == ["A-1", "B-1", "C-1"]
    assert skus("discontinued=true") == ["B-1"]
    assert skus("search=apple") == ["A-1"]
    assert skus("search=111") == ["A-1"]
    assert skus(f"vendor={vendor.pk}") == ["A-1", "B-1"]
    assert skus("sku=C-1") == ["C-1"]


def test_warehouses_create_and_list(api, vendor):
    response = api.post(
        "/api/v1/warehouses/",
        {"code": "MAIN", "name": "Main", "is_default": True, "is_main": True},
        format="json",
    )
    assert response.status_code == 201, response.content
    second = api.post(
        "/api/v1/warehouses/", {"code": "B", "name": "B", "is_default": True}, format="json"
    )
    assert second.status_code == 201
    rows = {
        row["code"]: row["is_default"] for row in api.get("/api/v1/warehouses/").json()["results"]
    }
    assert rows == {"MAIN": False, "B": True}
    assert_error(
        api.post("/api/v1/warehouses/", {"code": "B", "name": "again"}, format="json"),
        409,
        "warehouse_exists",
    )


def test_warehouse_first_is_default_and_patch_moves_the_default(api, vendor):
    # given: the vendor's first warehouse, created without asking to be the default
    first = api.post("/api/v1/warehouses/", {"code": "A", "name": "A"}, format="json")
    api.post("/api/v1/warehouses/", {"code": "B", "name": "B"}, format="json")
    assert first.json()["is_default"] is True

    # when
    moved = api.patch("/api/v1/warehouses/B/", {"is_default": True}, format="json")

    # then
    assert moved.status_code == 200, moved.content
    assert moved.json()["is_default"] is True
    rows = {
        row["code"]: row["is_default"] for row in api.get("/api/v1/warehouses/").json()["results"]
    }
    assert rows == {"A": False, "B": True}
    refused = api.patch("/api/v1/warehouses/B/", {"is_default": False}, format="json")
    assert_error(refused, 400, "validation_error")
    assert "is_default" in refused.json()["details"]
    assert_error(
        api.patch("/api/v1/warehouses/NOPE/", {"is_default": True}, format="json"),
        404,
        "warehouse_not_found",
    )
    api.post("/api/v1/warehouses/", {"code": "C", "name": "C", "active": False}, format="json")
    assert_error(
        api.patch("/api/v1/warehouses/C/", {"is_default": True}, format="json"),
        409,
        "warehouse_inactive",
    )


def test_warehouse_patch_needs_the_write_scope(make_client, warehouse):
    reader = make_client(("read",))

    response = reader.patch("/api/v1/warehouses/MAIN/", {"is_default": True}, format="json")

    assert response.status_code == 403


# --- Stock levels -------------------------------------------------------------------------


def test_stock_level_detail_has_totals_and_rows(api, stocked, warehouse, store):
    product = stocked(10)
    stocked_store = post(
        api,
        MUTATIONS,
        {"sku": product.sku, "warehouse": "STORE", "type": "set", "quantity": "2.5"},
    )
    assert stocked_store.status_code == 201

    response = api.get(f"/api/v1/stock-levels/{product.sku}/")

    assert response.status_code == 200
    body = response.json()
    assert body["on_hand"] == "12.500"
    assert body["available"] == "12.500"
    assert [row["warehouse"] for row in body["warehouses"]] == ["MAIN", "STORE"]


def test_stock_level_list_filters(api, stocked, warehouse, store):
    low = stocked(1)
    stocked(10)
    StockLevel.objects.filter(product=low).update(min_stock=5)

    def rows(query):
        response = api.get(f"/api/v1/stock-levels/?{query}")
        assert response.status_code == 200
        return [(row["sku"], row["warehouse"]) for row in response.json()["results"]]

    assert rows("below_min=true") == [(low.sku, "MAIN")]
    assert rows(f"sku={low.sku}") == [(low.sku, "MAIN")]
    assert len(rows("warehouse=MAIN")) == 2
    assert rows("warehouse=STORE") == []


def test_stock_level_list_query_count_is_constant(api, stocked, django_assert_num_queries):
    for _ in range(5):
        stocked(3)
    api.get("/api/v1/stock-levels/")  # the first use caches the key and records last_used_at
    # page count and page rows: the same for 5 rows or 500
    with django_assert_num_queries(2):
        response = api.get("/api/v1/stock-levels/")
    assert response.json()["count"] == 5


# --- Mutations --------------------------------------------------------------------------------


def test_mutation_adjust_answers_movements_and_levels(api, stocked):
    product = stocked(10)

    response = post(
        api,
        MUTATIONS,
        {
            "sku": product.sku,
            "warehouse": "MAIN",
            "type": "adjust",
            "quantity": "-3",
            "reason": "damaged",
            "reference": "RMA-1",
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    [movement] = body["movements"]
    assert movement["kind"] == "adjust"
    assert movement["on_hand_delta"] == "-3.000"
    assert movement["reason"] == "damaged"
    assert movement["actor"] == "api_key:test client"
    assert movement["correlation_id"] == response["X-Correlation-ID"]
    assert body["levels"][0]["on_hand"] == "7.000"


def test_mutation_transfer(api, stocked, store):
    product = stocked(10)
    response = post(
        api,
        MUTATIONS,
        {
            "sku": product.sku,
            "warehouse": "MAIN",
            "to_warehouse": "STORE",
            "type": "transfer",
            "quantity": "4",
        },
    )
    assert response.status_code == 201, response.content
    assert [m["kind"] for m in response.json()["movements"]] == ["transfer_out", "transfer_in"]
    assert {lvl["warehouse"]: lvl["on_hand"] for lvl in response.json()["levels"]} == {
        "MAIN": "6.000",
        "STORE": "4.000",
    }


def test_mutation_unknown_sku_is_404(api, warehouse):
    response = post(
        api, MUTATIONS, {"sku": "NOPE", "warehouse": "MAIN", "type": "adjust", "quantity": "1"}
    )
    body = assert_error(response, 404, "product_not_found")
    assert body["details"] == {"sku": "NOPE"}


def test_mutation_unknown_warehouse_is_404(api, stocked):
    product = stocked(1)
    response = post(
        api, MUTATIONS, {"sku": product.sku, "warehouse": "X", "type": "adjust", "quantity": "1"}
    )
    assert_error(response, 404, "warehouse_not_found")


def test_mutation_going_negative_is_409_with_available(api, stocked):
    product = stocked(2)
    response = post(
        api,
        MUTATIONS,
        {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "-5"},
    )
    body = assert_error(response, 409, "insufficient_stock")
    assert body["details"]["available"] == "2.000"
    assert body["details"]["requested"] == "5.000"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"warehouse": "MAIN", "type": "adjust", "quantity": "1"}, {"sku"}),
        ({"sku": "A", "warehouse": "MAIN", "type": "adjust", "quantity": "lots"}, {"quantity"}),
        ({"sku": "A", "warehouse": "MAIN", "type": "adjust"}, {"quantity"}),
        ({"sku": "A", "warehouse": "MAIN", "type": "melt", "quantity": "1"}, {"type"}),
        ({"sku": "A", "warehouse": "MAIN", "type": "transfer", "quantity": "1"}, {"to_warehouse"}),
        ({"sku": "A", "warehouse": "MAIN", "type": "adjust", "quantity": "1.0001"}, {"quantity"}),
    ],
)
def test_mutation_bad_input_is_400_with_field_details(api, warehouse, body, fields):
    response = post(api, MUTATIONS, body)
    details = assert_error(response, 400, "validation_error")["details"]
    assert set(details) == fields


def test_mutation_malformed_json_is_400(api, warehouse):
    response = api.generic(
        "POST",
        MUTATIONS,
        "{not json",
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
    )
    assert_error(response, 400, "parse_error")


def test_mutation_requires_idempotency_key(api, stocked):
    product = stocked(1)
    response = api.post(
        MUTATIONS,
        {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "1"},
        format="json",
    )
    assert_error(response, 400, "idempotency_key_required")
    assert StockMovement.objects.count() == 1  # only the opening count


# --- Batch ------------------------------------------------------------------------------------


def test_batch_applies_valid_rows_and_reports_each(api, stocked, store):
    a, b = stocked(5), stocked(5)
    rows = [
        {"sku": a.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "2"},
        {"sku": "NOPE", "warehouse": "MAIN", "type": "adjust", "quantity": "2"},
        {"sku": b.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "-9"},
        {"sku": b.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "x"},
        {
            "sku": b.sku,
            "warehouse": "MAIN",
            "to_warehouse": "STORE",
            "type": "transfer",
            "quantity": "1",
        },
    ]

    response = post(api, BATCH, {"rows": rows})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["counts"] == {"ok": 2, "error": 3}
    assert [(r["index"], r["status"], r["code"]) for r in body["results"]] == [
        (0, "ok", ""),
        (1, "error", "product_not_found"),
        (2, "error", "insufficient_stock"),
        (3, "error", "validation_error"),
        (4, "ok", ""),
    ]
    assert body["results"][3]["details"] == {"quantity": ["A valid number is required."]}
    assert body["results"][3]["field"] == "quantity"
    on_hand = dict(
        StockLevel.objects.values_list("product__sku", "on_hand").filter(warehouse__code="MAIN")
    )
    assert on_hand == {a.sku: Decimal(7), b.sku: Decimal(4)}
    assert ledger_mismatches() == []


def test_batch_atomic_applies_nothing_when_a_row_fails(api, stocked):
    a = stocked(5)
    rows = [
        {"sku": a.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "2"},
        {"sku": a.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "-50"},
    ]

    response = post(api, BATCH, {"rows": rows, "atomic": True})

    body = assert_error(response, 422, "batch_rejected")
    assert [r["status"] for r in body["details"]["results"]] == ["rolled_back", "error"]
    assert StockLevel.objects.get(product=a).on_hand == Decimal(5)
    assert StockMovement.objects.count() == 1


def test_batch_over_1000_rows_is_400(api, warehouse):
    rows = [{"sku": "A", "warehouse": "MAIN", "type": "adjust", "quantity": "1"}] * 1001
    body = assert_error(post(api, BATCH, {"rows": rows}), 400, "batch_too_large")
    assert body["details"] == {"max": 1000, "received": 1001}


def test_batch_replays_under_one_key(api, stocked):
    a = stocked(5)
    rows = [{"sku": a.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "1"}] * 3
    first = post(api, BATCH, {"rows": rows}, key="batch-1")
    again = post(api, BATCH, {"rows": rows}, key="batch-1")
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert StockLevel.objects.get(product=a).on_hand == Decimal(8)


# --- Reservations -----------------------------------------------------------------------------


def test_reservation_lifecycle_through_the_api(api, stocked):
    product = stocked(5)

    created = api.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": "2", "reference": "order-9", "ttl_seconds": 600},
        format="json",
    )
    assert created.status_code == 201, created.content
    reservation = created.json()
    assert reservation["warehouse"] == "MAIN"  # the default warehouse
    assert reservation["status"] == "active"

    level = api.get(f"/api/v1/stock-levels/{product.sku}/").json()
    assert level["available"] == "3.000"

    committed = api.post(f"/api/v1/reservations/{reservation['id']}/commit/")
    assert committed.status_code == 200
    assert committed.json()["status"] == "committed"
    assert api.get(f"/api/v1/stock-levels/{product.sku}/").json()["on_hand"] == "3.000"

    again = api.post(f"/api/v1/reservations/{reservation['id']}/release/")
    assert_error(again, 409, "reservation_not_active")


def test_reservation_defaults_come_from_the_service(api, stocked, store, settings):
    settings.RESERVATION_DEFAULT_TTL_SECONDS = 90
    product = stocked(5)

    created = api.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": "1"}, format="json"
    )

    assert created.status_code == 201, created.content
    assert created.json()["warehouse"] == "MAIN"  # the vendor's default, not STORE
    reservation = Reservation.objects.get()
    lasts = reservation.expires_at - reservation.created_at
    assert timedelta(seconds=89) < lasts < timedelta(seconds=91)


@pytest.mark.parametrize("ttl_seconds", [0, -1, 30 * 24 * 3600 + 1])
def test_reservation_ttl_out_of_bounds_is_refused_on_its_field(api, stocked, ttl_seconds):
    product = stocked(5)

    response = api.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": "1", "ttl_seconds": ttl_seconds},
        format="json",
    )

    body = assert_error(response, 400, "invalid_ttl")
    assert body["details"]["field"] == "ttl_seconds"
    assert body["details"]["ttl_seconds"] == ["A reservation holds stock for 1 to 2592000 seconds."]
    assert not Reservation.objects.exists()


def test_reservation_insufficient_is_409(api, stocked):
    product = stocked(1)
    response = api.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": "2"}, format="json"
    )
    body = assert_error(response, 409, "insufficient_stock")
    assert body["details"]["available"] == "1.000"


def test_reservation_release_and_unknown_id(api, stocked):
    product = stocked(5)
    created = api.post(
        "/api/v1/reservations/", {"sku": product.sku, "quantity": "1"}, format="json"
    ).json()
    released = api.post(
        f"/api/v1/reservations/{created['id']}/release/", {"reason": "cancelled"}, format="json"
    )
    assert released.json()["status"] == "released"
    assert Reservation.objects.get().status == "released"
    assert_error(api.post("/api/v1/reservations/999999/release/"), 404, "reservation_not_found")
    assert_error(api.get("/api/v1/reservations/abc/"), 404, "reservation_not_found")


def test_reservation_with_idempotency_key_replays(api, stocked):
    product = stocked(5)
    body = {"sku": product.sku, "quantity": "1"}
    first = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    again = api.post("/api/v1/reservations/", body, format="json", HTTP_IDEMPOTENCY_KEY="r-1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Reservation.objects.count() == 1


# --- Ledger -----------------------------------------------------------------------------------


def test_movements_list_filters_and_cursor_pages(api, stocked):
    product = stocked(10)
    other = stocked(10)
    for _ in range(3):
        post(
            api,
            MUTATIONS,
            {"sku": product.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "1"},
        )

    response = api.get(f"/api/v1/stock-movements/?sku={product.sku}&page_size=2")
    assert response.status_code == 200
    page = response.json()
    assert [row["sku"] for row in page["results"]] == [product.sku, product.sku]
    assert page["next"] is not None
    second = api.get(page["next"]).json()
    assert len(second["results"]) == 2
    ids = [row["id"] for row in page["results"] + second["results"]]
    assert ids == sorted(ids, reverse=True)

    counts = api.get("/api/v1/stock-movements/?kind=count").json()["results"]
    assert {row["sku"] for row in counts} == {product.sku, other.sku}
    assert api.get("/api/v1/stock-movements/?since=2999-01-01T00:00:00Z").json()["results"] == []


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/v1/nothing-here/")
    assert_error(response, 404, "not_found")


def test_urls_reverse():
    assert reverse("stock-mutation") == MUTATIONS
    assert reverse("stock-mutation-batch") == BATCH


def test_other_vendors_warehouse_is_not_found(api, stocked):
    product = stocked(5)
    WarehouseFactory(vendor=VendorFactory(), code="FOREIGN")
    response = post(
        api,
        MUTATIONS,
        {"sku": product.sku, "warehouse": "FOREIGN", "type": "adjust", "quantity": "1"},
    )
    assert_error(response, 404, "warehouse_not_found")


def test_stock_level_detail_is_one_query(api, stocked, store, django_assert_num_queries):
    product = stocked(10)
    api.get(f"/api/v1/stock-levels/{product.sku}/")
    with django_assert_num_queries(1):
        response = api.get(f"/api/v1/stock-levels/{product.sku}/")
    assert response.status_code == 200


def test_an_overflowing_row_fails_alone_in_a_batch(api, stocked):
    a, b = stocked(5), stocked(5)
    rows = [
        {"sku": a.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "99999999999.999"},
        {"sku": b.sku, "warehouse": "MAIN", "type": "adjust", "quantity": "1"},
    ]
    response = post(api, BATCH, {"rows": rows})
    assert response.status_code == 200
    assert [(r["status"], r["code"]) for r in response.json()["results"]] == [
        ("error", "quantity_out_of_range"),
        ("ok", ""),
    ]
