import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from erp_mapping.models import ErpAgent, ErpCodeMapping
from erp_mapping.selectors import mapping_cache_clear
from erp_mapping.serializers.ingest import ItemRowSerializer, ingest_rows_validate
from erp_mapping.services.agents import agent_register
from erp_mapping.services.ingest import erp_items_ingest
from inventory.models import Product, StockLevel, StockMovement, Warehouse
from inventory.selectors import ledger_mismatches
from inventory.services import stock_reserve
from tests.conftest import TEST_ORIGIN
from tests.erp_mapping.factories import ErpCodeMappingFactory
from tests.erp_mapping.test_pull import pull, serve
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory

pytestmark = pytest.mark.django_db

ITEMS = "/api/v1/erp/ingest/items/"
WAREHOUSES = "/api/v1/erp/ingest/warehouses/"
STOCK = "/api/v1/erp/ingest/stock/"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
STATUSES = ["created", "updated", "unchanged", "stale", "rejected", "invalid"]


def at(minutes: int = 0) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def agent_client(vendor) -> APIClient:
    registered = agent_register(vendor=vendor, agent_url="http://erp.local", erp_type="sage")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {registered.token}")
    return client


@pytest.fixture(autouse=True)
def _fresh_resolver_cache():
    # The resolver caches per process; the database is rolled back between tests.
    mapping_cache_clear()
    yield
    mapping_cache_clear()


@pytest.fixture
def mappings(vendor):
    for mapping_type, erp_code, resto_code in [
        ("unit", "PCE", "unit_pce"),
        ("unit", "KG", "unit_kg"),
        ("vat", "20", "vat_20"),
        ("vat", "5", "vat_5_5"),
        ("family", "EPIC", "cat_epic"),
        ("subfamily", "EPIC03", "subcat_epic03"),
    ]:
        ErpCodeMappingFactory(
            vendor=vendor, mapping_type=mapping_type, erp_code=erp_code, resto_code=resto_code
        )


@pytest.fixture
def agent(vendor, mappings) -> APIClient:
    return agent_client(vendor)


def post(client: APIClient, url: str, rows, expect: int = 200) -> dict:
    response = client.post(url, {"rows": rows}, format="json")
    assert response.status_code == expect, response.content
    return response.json()


def statuses(body: dict) -> list[tuple[str, str, str]]:
    return [(r["key"], r["status"], r["code"]) for r in body["results"]]


def counts(**nonzero: int) -> dict[str, int]:
    return {status: nonzero.get(status, 0) for status in STATUSES}


def item(sku: str = "A-1", minutes: int = 0, **fields) -> dict:
    return {
        "erp_id": f"erp-{sku}",
        "sku": sku,
        "name": f"Item {sku}",
        "unit_code": "PCE",
        "vat_code": "20",
        "family_code": "EPIC",
        "subfamily_code": "EPIC03",
        "price_excl_vat": "10.00",
        "price_incl_vat": "12.00",
        "barcode": "3700000000001",
        "manage_stock": True,
        "allow_negative_stock": False,
        "updated_at": at(minutes),
        **fields,
    }


def warehouse_row(code: str = "W1", minutes: int = 0, **fields) -> dict:
    return {
        "erp_id": f"erp-{code}",
        "code": code,
        "name": f"Warehouse {code}",
        "is_main": False,
        "is_default": False,
        "type": "storage",
        "updated_at": at(minutes),
        **fields,
    }


def stock_row(sku: str = "A-1", code: str = "MAIN", quantity="5", minutes=0, **fields) -> dict:
    return {
        "sku": sku,
        "warehouse_code": code,
        "quantity": quantity,
        "updated_at": at(minutes),
        **fields,
    }


def erp_movements():
    return StockMovement.objects.filter(kind=StockMovement.Kind.ERP_SYNC)


# --- Items ----------------------------------------------------------------------------------


def test_items_created_with_resolved_codes_and_derived_vat(agent, vendor):
    body = post(agent, ITEMS, [item("A-1")])

    assert body == {"counts": counts(created=1), "results": [
        {"index": 0, "key": "A-1", "status": "created", "code": "", "message": "", "field": ""}
    ]}  # fmt: skip
    product = Product.objects.get(vendor=vendor, sku="A-1")
    assert (product.unit_code, product.vat_code) == ("unit_pce", "vat_20")
    assert (product.family, product.subfamily) == ("cat_epic", "subcat_epic03")
    assert (product.name, product.erp_id, product.barcode) == (
        "Item A-1",
        "erp-A-1",
        "3700000000001",
    )
    assert product.price_excl_vat == Decimal("10.0000")
    assert product.vat_amount == Decimal("2.0000")
    assert product.source_updated_at == T0
    assert len(product.content_hash) == 64


def test_items_content_hash_is_the_canonical_row_and_its_mappings(agent, vendor):
    post(agent, ITEMS, [item("A-1", price_excl_vat="10", price_incl_vat="12.0")])

    row = item("A-1", price_excl_vat="10.0000", price_incl_vat="12.0000")
    del row["updated_at"]
    row["_resolved"] = ["unit_pce", "vat_20", "cat_epic", "subcat_epic03"]
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"))
    assert Product.objects.get().content_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_items_updated_unchanged_and_stale(agent, vendor):
    post(agent, ITEMS, [item("A-1", minutes=10), item("B-1", minutes=10), item("C-1", minutes=10)])
    before = {p.sku: p.updated_at for p in Product.objects.all()}

    body = post(
        agent,
        ITEMS,
        [
            item("A-1", minutes=20, name="Renamed", price_incl_vat="13.00"),  # newer, changed
            item("B-1", minutes=30),  # same content, newer timestamp
            item("C-1", minutes=5, name="Old name"),  # older than what we hold
        ],
    )

    assert statuses(body) == [
        ("A-1", "updated", ""),
        ("B-1", "unchanged", ""),
        ("C-1", "stale", ""),
    ]
    assert body["counts"] == counts(updated=1, unchanged=1, stale=1)
    assert "older" in body["results"][2]["message"]
    products = {p.sku: p for p in Product.objects.all()}
    assert (products["A-1"].name, products["A-1"].vat_amount) == ("Renamed", Decimal("3.0000"))
    assert products["A-1"].source_updated_at == T0 + timedelta(minutes=20)
    # unchanged and stale rows write nothing but the newer source time of an unchanged one
    assert products["B-1"].updated_at == before["B-1"]
    assert products["B-1"].source_updated_at == T0 + timedelta(minutes=30)
    assert products["C-1"].name == "Item C-1"
    assert products["C-1"].updated_at == before["C-1"]


def test_items_update_a_product_made_elsewhere(agent, vendor):
    ProductFactory(vendor=vendor, sku="A-1", name="Made by hand", unit_code="PCE")

    body = post(agent, ITEMS, [item("A-1")])

    assert statuses(body) == [("A-1", "updated", "")]
    assert Product.objects.get(sku="A-1").name == "Item A-1"


def test_items_with_unmapped_unit_or_vat_are_rejected(agent, vendor):
    body = post(
        agent,
        ITEMS,
        [
            item("A-1", unit_code="BOX"),
            item("B-1", vat_code="99"),
            item("C-1", unit_code="BOX", vat_code="99"),
            item("D-1", unit_code=""),  # no fallback unit yet
            item("E-1", family_code="NOPE", subfamily_code="NOPE"),  # optional: kept, empty
        ],
    )

    assert statuses(body) == [
        ("A-1", "rejected", "unmapped_unit"),
        ("B-1", "rejected", "unmapped_vat"),
        ("C-1", "rejected", "unmapped_unit"),
        ("D-1", "rejected", "unmapped_unit"),
        ("E-1", "created", ""),
    ]
    assert "'BOX'" in body["results"][0]["message"]
    assert [r["field"] for r in body["results"]] == [
        "unit_code",
        "vat_code",
        *["unit_code"] * 2,
        "",
    ]
    assert list(Product.objects.values_list("sku", "family", "subfamily")) == [("E-1", "", "")]


def test_items_resent_after_a_family_mapping_appears_are_updated(agent, vendor):
    row = item("E-1", family_code="NEWFAM", subfamily_code="")
    assert statuses(post(agent, ITEMS, [row])) == [("E-1", "created", "")]
    assert statuses(post(agent, ITEMS, [row])) == [("E-1", "unchanged", "")]

    ErpCodeMappingFactory(
        vendor=vendor, mapping_type="family", erp_code="NEWFAM", resto_code="cat_new"
    )
    mapping_cache_clear()

    assert statuses(post(agent, ITEMS, [row])) == [("E-1", "updated", "")]
    assert Product.objects.get(sku="E-1").family == "cat_new"


def test_items_without_a_unit_take_the_vendor_fallback_unit(agent, vendor):
    ErpCodeMappingFactory(vendor=vendor, mapping_type="unit", erp_code="", resto_code="unit_u")
    missing = item("B-1")
    del missing["unit_code"]

    body = post(agent, ITEMS, [item("A-1", unit_code=""), missing, item("C-1", unit_code=None)])

    assert body["counts"] == counts(created=3)
    assert set(Product.objects.values_list("unit_code", flat=True)) == {"unit_u"}


def test_items_rejected_once_apply_after_the_mapping_appears(agent, vendor):
    assert statuses(post(agent, ITEMS, [item("A-1", unit_code="BOX")])) == [
        ("A-1", "rejected", "unmapped_unit")
    ]
    ErpCodeMappingFactory(vendor=vendor, mapping_type="unit", erp_code="BOX", resto_code="u_box")
    mapping_cache_clear()  # what the mapping services do on commit

    assert statuses(post(agent, ITEMS, [item("A-1", unit_code="BOX")])) == [("A-1", "created", "")]


def test_items_invalid_rows_say_which_field(agent):
    missing_price = item("B-1")
    del missing_price["price_excl_vat"]

    body = post(
        agent,
        ITEMS,
        [
            item("A-1", price_excl_vat="abc"),
            missing_price,
            item("C-1", updated_at="yesterday"),
            item("D-1", price_excl_vat="10.00001"),
            item("E-1", price_incl_vat="9.00"),
            "not an object",
            item("F-1"),
        ],
    )

    assert statuses(body) == [
        ("A-1", "invalid", "invalid_row"),
        ("B-1", "invalid", "invalid_row"),
        ("C-1", "invalid", "invalid_row"),
        ("D-1", "invalid", "invalid_row"),
        ("E-1", "invalid", "invalid_row"),
        ("", "invalid", "invalid_row"),
        ("F-1", "created", ""),
    ]
    messages = [r["message"] for r in body["results"]]
    assert messages[0] == "price_excl_vat: A valid number is required."
    assert messages[1] == "price_excl_vat: This field is required."
    assert messages[2].startswith("updated_at: ")
    assert messages[4] == "price_incl_vat: Must not be below price_excl_vat."
    assert list(Product.objects.values_list("sku", flat=True)) == ["F-1"]


def test_items_duplicate_keys_the_last_row_wins(agent):
    body = post(agent, ITEMS, [item("A-1", name="first"), item("B-1"), item("A-1", name="last")])

    assert statuses(body) == [
        ("A-1", "invalid", "duplicate"),
        ("B-1", "created", ""),
        ("A-1", "created", ""),
    ]
    assert body["counts"] == counts(created=2, invalid=1)
    assert Product.objects.get(sku="A-1").name == "last"


def test_items_mixed_batch_answers_200_with_every_status(agent):
    post(agent, ITEMS, [item("U-1", minutes=10), item("S-1", minutes=10), item("X-1")])

    body = post(
        agent,
        ITEMS,
        [
            item("N-1"),
            item("X-1", minutes=1, name="changed"),
            item("U-1", minutes=10),
            item("S-1", minutes=0, name="older"),
            item("R-1", vat_code="99"),
            item("I-1", manage_stock="maybe"),
        ],
    )

    assert body["counts"] == counts(
        created=1, updated=1, unchanged=1, stale=1, rejected=1, invalid=1
    )
    assert [r["status"] for r in body["results"]] == [
        "created",
        "updated",
        "unchanged",
        "stale",
        "rejected",
        "invalid",
    ]


def test_items_a_replayed_batch_writes_nothing(agent, django_assert_max_num_queries, log_lines):
    rows = [item(f"A-{i}") for i in range(50)]
    post(agent, ITEMS, rows)
    before = list(Product.objects.order_by("sku").values_list("sku", "updated_at"))

    with django_assert_max_num_queries(8) as queries:
        body = post(agent, ITEMS, rows)

    assert body["counts"] == counts(unchanged=50)
    assert list(Product.objects.order_by("sku").values_list("sku", "updated_at")) == before
    writes = [q["sql"] for q in queries.captured_queries if "inventory_product" in q["sql"]]
    assert len(writes) == 1
    assert writes[0].startswith("SELECT")
    [logged] = [line for line in log_lines() if line["event"] == "erp_ingest.batch"][-1:]
    assert (logged["kind"], logged["rows"]) == ("items", 50)
    assert logged["counts"] == counts(unchanged=50)


def test_items_the_vendor_comes_from_the_token(agent, vendor):
    other = VendorFactory()
    ErpCodeMappingFactory(vendor=other, mapping_type="unit", erp_code="PCE", resto_code="o_pce")
    ErpCodeMappingFactory(vendor=other, mapping_type="vat", erp_code="20", resto_code="o_vat")
    post(agent, ITEMS, [item("A-1")])

    # the other vendor's agent names the same SKU, and a vendor_id of ours in the row
    body = post(agent_client(other), ITEMS, [item("A-1", name="theirs", vendor_id=str(vendor.pk))])

    assert statuses(body) == [("A-1", "created", "")]
    ours, theirs = Product.objects.get(vendor=vendor), Product.objects.get(vendor=other)
    assert (ours.name, ours.unit_code) == ("Item A-1", "unit_pce")
    assert (theirs.name, theirs.unit_code) == ("theirs", "o_pce")


# --- Warehouses -----------------------------------------------------------------------------


def test_warehouses_each_status(agent, vendor):
    post(agent, WAREHOUSES, [warehouse_row("W1", 10), warehouse_row("W2", 10)])

    body = post(
        agent,
        WAREHOUSES,
        [
            warehouse_row("W1", 20, name="Renamed", type="transit", is_main=True),
            warehouse_row("W2", 30),
            warehouse_row("W3", 5, name="first"),
            warehouse_row("W3", 5, name="last"),
            warehouse_row("W4", type="shop"),
            warehouse_row("W2", 0, name="older"),
        ],
    )

    assert statuses(body) == [
        ("W1", "updated", ""),
        ("W2", "invalid", "duplicate"),
        ("W3", "invalid", "duplicate"),
        ("W3", "created", ""),
        ("W4", "invalid", "invalid_row"),
        ("W2", "stale", ""),
    ]
    assert body["results"][4]["message"] == 'type: "shop" is not a valid choice.'
    assert (body["results"][4]["index"], body["results"][4]["field"]) == (4, "type")
    w1 = Warehouse.objects.get(vendor=vendor, code="W1")
    assert (w1.name, w1.type, w1.is_main, w1.active) == ("Renamed", "transit", True, True)
    assert Warehouse.objects.get(vendor=vendor, code="W3").name == "last"
    assert Warehouse.objects.get(vendor=vendor, code="W2").name == "Warehouse W2"
    assert statuses(post(agent, WAREHOUSES, [warehouse_row("W2", 40)])) == [("W2", "unchanged", "")]


def test_warehouses_is_default_moves_the_vendors_default(agent, vendor, warehouse):
    assert warehouse.is_default  # MAIN
    post(agent, WAREHOUSES, [warehouse_row("MAIN", 0, is_default=True)])

    body = post(
        agent,
        WAREHOUSES,
        [warehouse_row("W1", 1, is_default=True), warehouse_row("W2", 1, is_default=True)],
    )

    assert statuses(body) == [("W1", "invalid", "invalid_row"), ("W2", "created", "")]
    assert "W2" in body["results"][0]["message"]
    defaults = Warehouse.objects.filter(vendor=vendor, is_default=True)
    assert list(defaults.values_list("code", flat=True)) == ["W2"]
    # the old default's stored hash went with its flag: a re-send of its row applies again
    assert Warehouse.objects.get(code="MAIN").content_hash == ""
    assert statuses(post(agent, WAREHOUSES, [warehouse_row("MAIN", 2, is_default=True)])) == [
        ("MAIN", "updated", "")
    ]
    assert list(defaults.values_list("code", flat=True)) == ["MAIN"]


def test_warehouses_first_ingested_becomes_the_default_when_none_is_named(agent, vendor):
    # given: a vendor without warehouses; the ERP names no default
    body = post(agent, WAREHOUSES, [warehouse_row("W2"), warehouse_row("W1")])

    # then: one default, the batch's first row
    assert body["counts"] == counts(created=2)
    defaults = Warehouse.objects.filter(vendor=vendor, is_default=True)
    assert list(defaults.values_list("code", flat=True)) == ["W2"]
    # a later row saying `is_default: false` for it leaves the vendor a default
    post(agent, WAREHOUSES, [warehouse_row("W2", 5, name="renamed")])
    assert list(defaults.values_list("code", flat=True)) == ["W2"]


# --- Stock ----------------------------------------------------------------------------------


@pytest.fixture
def products(vendor, warehouse, store):
    return {sku: ProductFactory(vendor=vendor, sku=sku) for sku in ("A-1", "B-1", "C-1")}


def level(sku: str, code: str) -> StockLevel:
    return StockLevel.objects.get(product__sku=sku, warehouse__code=code)


def test_stock_created_levels_write_erp_sync_movements(agent, products, vendor):
    body = post(
        agent,
        STOCK,
        [
            stock_row("A-1", "MAIN", "12.5", ordered_quantity="3", unit_cost="2.10"),
            stock_row("A-1", "STORE", "0"),
            stock_row("B-1", "MAIN", "-2"),
        ],
    )

    assert statuses(body) == [
        ("A-1@MAIN", "created", ""),
        ("A-1@STORE", "created", ""),
        ("B-1@MAIN", "created", ""),
    ]
    created = level("A-1", "MAIN")
    assert (created.on_hand, created.ordered_quantity) == (Decimal("12.5"), Decimal("3"))
    assert (created.unit_cost, created.stock_value) == (Decimal("2.1"), Decimal("26.25"))
    assert created.source_updated_at == T0
    assert created.last_synced_at is not None
    assert level("A-1", "STORE").on_hand == 0
    assert level("B-1", "MAIN").on_hand == Decimal("-2")
    movements = erp_movements().order_by("id")
    assert [(m.level.product.sku, m.on_hand_delta) for m in movements] == [
        ("A-1", Decimal("12.5")),
        ("B-1", Decimal("-2")),
    ]  # nothing to record for a level made at zero
    movement = movements[0]
    assert (movement.source, movement.actor) == ("erp", f"agent:{vendor.pk}")
    assert movement.reference.startswith("erp_ingest:")
    assert ledger_mismatches() == []
    call_command("check_ledger")


def test_stock_updated_unchanged_and_stale(agent, products):
    post(agent, STOCK, [stock_row("A-1", "MAIN", "5", 10), stock_row("B-1", "MAIN", "5", 10)])
    post(agent, STOCK, [stock_row("C-1", "MAIN", "5", 10, min_stock="2")])
    movements = erp_movements().count()

    body = post(
        agent,
        STOCK,
        [
            stock_row("A-1", "MAIN", "8", 20),  # quantity changes: one movement
            stock_row("B-1", "MAIN", "5", 20, ordered_quantity="4"),  # no quantity change
            stock_row("C-1", "MAIN", "5", 30, min_stock="2"),  # same content
            stock_row("A-1", "STORE", "1", 0),
        ],
    )
    stale = post(agent, STOCK, [stock_row("A-1", "MAIN", "99", 15)])

    assert statuses(body) == [
        ("A-1@MAIN", "updated", ""),
        ("B-1@MAIN", "updated", ""),
        ("C-1@MAIN", "unchanged", ""),
        ("A-1@STORE", "created", ""),
    ]
    assert statuses(stale) == [("A-1@MAIN", "stale", "")]
    assert level("A-1", "MAIN").on_hand == 8
    assert level("B-1", "MAIN").ordered_quantity == 4
    new = erp_movements().order_by("id")[movements:]
    assert [(m.level.product.sku, m.level.warehouse.code, m.on_hand_delta) for m in new] == [
        ("A-1", "MAIN", Decimal("3")),
        ("A-1", "STORE", Decimal("1")),
    ]
    assert ledger_mismatches() == []


def test_stock_keeps_fields_a_row_leaves_out_and_clears_null_limits(agent, products):
    post(
        agent,
        STOCK,
        [stock_row("A-1", quantity="10", ordered_quantity="4", unit_cost="2", min_stock="1",
                   max_stock="50")],
    )  # fmt: skip

    post(agent, STOCK, [stock_row("A-1", quantity="6", minutes=1, max_stock=None)])

    kept = level("A-1", "MAIN")
    assert (kept.on_hand, kept.ordered_quantity, kept.unit_cost) == (6, 4, 2)
    assert (kept.min_stock, kept.max_stock) == (Decimal("1"), None)
    assert kept.stock_value == Decimal("12")
    assert ledger_mismatches() == []


def test_stock_keeps_reservations_and_respects_the_ledger(agent, products, stocked, warehouse):
    product = stocked(10, sku="R-1")
    stock_reserve(product=product, warehouse=warehouse, quantity=Decimal(4), origin=TEST_ORIGIN)

    body = post(agent, STOCK, [stock_row("R-1", "MAIN", "7", unit_cost="1.5")])

    assert statuses(body) == [("R-1@MAIN", "updated", "")]
    held = level("R-1", "MAIN")
    assert (held.on_hand, held.reserved, held.available) == (7, 4, 3)
    assert held.stock_value == Decimal("10.5")
    [movement] = erp_movements()
    assert (movement.on_hand_delta, movement.on_hand_after, movement.reserved_after) == (-3, 7, 4)
    assert ledger_mismatches() == []


def test_stock_unknown_sku_and_warehouse_are_rejected(agent, products, vendor):
    other = VendorFactory()
    ProductFactory(vendor=other, sku="THEIRS")
    WarehouseFactory(vendor=other, code="THEIR-WH")
    WarehouseFactory(vendor=vendor, code="OLD", active=False)

    body = post(
        agent,
        STOCK,
        [
            stock_row("NOPE", "MAIN"),
            stock_row("THEIRS", "MAIN"),  # another vendor's SKU is unknown here
            stock_row("A-1", "THEIR-WH"),
            stock_row("A-1", "OLD"),
            stock_row("A-1", "MAIN", quantity="1.0001"),
            stock_row("A-1", "MAIN", quantity="1", min_stock="5", max_stock="2"),
            stock_row("B-1", "MAIN"),
        ],
    )

    assert statuses(body) == [
        ("NOPE@MAIN", "rejected", "unknown_sku"),
        ("THEIRS@MAIN", "rejected", "unknown_sku"),
        ("A-1@THEIR-WH", "rejected", "unknown_warehouse"),
        ("A-1@OLD", "rejected", "warehouse_inactive"),
        ("A-1@MAIN", "invalid", "invalid_row"),
        ("A-1@MAIN", "invalid", "invalid_row"),
        ("B-1@MAIN", "created", ""),
    ]
    assert body["results"][4]["message"].startswith("quantity: ")
    assert body["results"][5]["message"] == "max_stock: Must not be below min_stock."
    assert list(StockLevel.objects.values_list("product__sku", flat=True)) == ["B-1"]


def test_stock_a_replayed_batch_writes_nothing(agent, products, django_assert_max_num_queries):
    rows = [stock_row(sku, code, "3") for sku in products for code in ("MAIN", "STORE")]
    post(agent, STOCK, rows)
    movements = erp_movements().count()
    before = list(StockLevel.objects.order_by("pk").values_list("pk", "updated_at"))

    with django_assert_max_num_queries(10) as queries:
        body = post(agent, STOCK, rows)

    assert body["counts"] == counts(unchanged=6)
    assert erp_movements().count() == movements == 6
    assert list(StockLevel.objects.order_by("pk").values_list("pk", "updated_at")) == before
    level_sql = [q["sql"] for q in queries.captured_queries if "inventory_stocklevel" in q["sql"]]
    assert all(sql.startswith("SELECT") and "FOR UPDATE" not in sql for sql in level_sql)


def test_stock_duplicate_keys_the_last_row_wins(agent, products):
    body = post(agent, STOCK, [stock_row("A-1", quantity="1"), stock_row("A-1", quantity="2")])

    assert statuses(body) == [("A-1@MAIN", "invalid", "duplicate"), ("A-1@MAIN", "created", "")]
    assert level("A-1", "MAIN").on_hand == 2
    assert erp_movements().count() == 1


# --- Batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [ITEMS, WAREHOUSES, STOCK])
@pytest.mark.parametrize(
    "body", [[{"sku": "A-1"}], {"rows": {"sku": "A-1"}}, {"items": []}, {"rows": None}, "rows"]
)
def test_an_unusable_body_answers_400_invalid_body(agent, url, body):
    response = agent.post(url, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_body"


def test_a_body_that_is_not_json_answers_400_parse_error(agent):
    response = agent.post(ITEMS, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("url", [ITEMS, WAREHOUSES, STOCK])
def test_more_than_5000_rows_are_refused_whole(agent, url):
    response = agent.post(url, {"rows": [{}] * 5001}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "batch_too_large"
    assert body["details"] == {"max": 5000, "received": 5001}


@override_settings(ERP_INGEST_MAX_ROWS=2)
def test_the_row_limit_is_a_setting(agent):
    assert agent.post(ITEMS, {"rows": [{}] * 3}, format="json").json()["code"] == "batch_too_large"
    assert post(agent, ITEMS, [{}, {}])["counts"] == counts(invalid=2)


def test_an_empty_batch_answers_zero_counts(agent):
    assert post(agent, STOCK, []) == {"counts": counts(), "results": []}


@pytest.mark.parametrize("url", [ITEMS, WAREHOUSES, STOCK])
def test_ingest_needs_an_agent_token(api, url):
    anonymous = APIClient()
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer ssa_unknown")

    assert anonymous.post(url, {"rows": []}, format="json").json()["code"] == (
        "invalid_agent_token"
    )
    assert api.post(url, {"rows": []}, format="json").json()["code"] == "not_authenticated"


def test_an_ingest_batch_counts_as_a_heartbeat(agent, vendor):
    ErpAgent.objects.update(status=ErpAgent.Status.DEGRADED, last_heartbeat_at=None)

    post(agent, WAREHOUSES, [warehouse_row("W1")])

    assert ErpAgent.objects.get().status == ErpAgent.Status.ONLINE
    assert ErpAgent.objects.get().last_heartbeat_at is not None


def test_full_batches_of_5000_rows_keep_the_query_count_flat(
    agent, vendor, warehouse, django_assert_max_num_queries
):
    items = [item(f"SKU-{i:05d}", unit_code=("PCE", "KG")[i % 2]) for i in range(5000)]
    with django_assert_max_num_queries(20):
        body = post(agent, ITEMS, items)
    assert body["counts"] == counts(created=5000)

    with django_assert_max_num_queries(20):
        body = post(agent, ITEMS, [{**row, "name": "v2", "updated_at": at(1)} for row in items])
    assert body["counts"] == counts(updated=5000)
    assert set(Product.objects.values_list("name", flat=True)) == {"v2"}

    stock = [stock_row(f"SKU-{i:05d}", "MAIN", str(i % 7)) for i in range(5000)]
    with django_assert_max_num_queries(30):
        body = post(agent, STOCK, stock)
    assert body["counts"] == counts(created=5000)

    with django_assert_max_num_queries(40):
        body = post(agent, STOCK, [{**row, "quantity": "7", "updated_at": at(1)} for row in stock])
    assert body["counts"] == counts(updated=5000)
    # one movement per level that changed: the first batch made the zeros without one
    assert erp_movements().count() == sum(1 for i in range(5000) if i % 7) + 5000
    assert ledger_mismatches() == []
    assert set(StockLevel.objects.values_list("on_hand", flat=True)) == {Decimal(7)}


def test_mappings_resolve_once_per_type_per_batch(agent, vendor):
    rows = [item(f"A-{i}", unit_code=("PCE", "KG", "BOX")[i % 3]) for i in range(30)]

    with CaptureQueriesContext(connection) as queries:
        post(agent, ITEMS, rows)

    mapping_reads = [
        q for q in queries.captured_queries if ErpCodeMapping._meta.db_table in q["sql"]
    ]
    assert len(mapping_reads) == 4  # unit, vat, family, subfamily


# --- Concurrency ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_batches_of_one_vendor_run_one_at_a_time(vendor, mappings):
    # given: a batch holds the vendor's lock and has written A-1, not yet committed
    client = agent_client(vendor)
    answers: list[dict] = []

    def second_batch() -> None:
        try:
            answers.append(post(client, ITEMS, [item("A-1")]))
        finally:
            connection.close()

    with transaction.atomic():
        rows = ingest_rows_validate(ItemRowSerializer, [item("A-1")])
        first = erp_items_ingest(vendor_id=vendor.pk, rows=rows)
        thread = threading.Thread(target=second_batch)
        thread.start()
        thread.join(timeout=1.0)
        # when: the same row arrives meanwhile, it waits for the first batch
        assert thread.is_alive()
    thread.join(timeout=10)

    # then: it judges the row against what the first batch committed
    assert statuses({"results": [vars(r) for r in first.results]}) == [("A-1", "created", "")]
    assert [statuses(answer) for answer in answers] == [[("A-1", "unchanged", "")]]
    assert Product.objects.filter(sku="A-1").count() == 1


def test_item_with_a_long_internal_unit_code_is_stored(agent, vendor):
    ErpCodeMappingFactory(vendor=vendor, mapping_type="unit", erp_code="LONG", resto_code="u" * 80)
    mapping_cache_clear()

    body = post(agent, ITEMS, [item("A-1"), item("B-1", unit_code="LONG")])

    assert [r["status"] for r in body["results"]] == ["created", "created"]
    assert Product.objects.get(sku="B-1").unit_code == "u" * 80


def test_stock_rows_whose_keys_look_alike_are_not_duplicates(agent, vendor, warehouse):
    ProductFactory(vendor=vendor, sku="A@B")
    ProductFactory(vendor=vendor, sku="A")
    WarehouseFactory(vendor=vendor, code="C")
    WarehouseFactory(vendor=vendor, code="B@C")

    body = post(agent, STOCK, [stock_row("A@B", "C", "3"), stock_row("A", "B@C", "4")])

    assert [r["status"] for r in body["results"]] == ["created", "created"]
    assert level("A@B", "C").on_hand == 3
    assert level("A", "B@C").on_hand == 4


def test_stock_row_older_than_an_unchanged_newer_resend_is_stale(agent, products):
    post(agent, STOCK, [stock_row("A-1", "MAIN", "5", minutes=10)])
    resent = post(agent, STOCK, [stock_row("A-1", "MAIN", "5", minutes=30)])
    assert statuses(resent) == [("A-1@MAIN", "unchanged", "")]

    delayed = post(agent, STOCK, [stock_row("A-1", "MAIN", "8", minutes=20)])

    assert statuses(delayed)[0][1] == "stale"
    assert level("A-1", "MAIN").on_hand == 5


def test_agent_count_after_a_nightly_pull_is_applied(agent, products, vendor, erp):
    # given: the agent sent 5, then the nightly pull set 9
    post(agent, STOCK, [stock_row("A-1", "MAIN", "5", minutes=10)])
    serve(erp, [{"sku": "A-1", "qty": 9, "warehouse": "MAIN"}])
    assert pull(vendor).status == "completed"
    assert level("A-1", "MAIN").on_hand == 9

    # when: the agent counts 5 again
    body = post(agent, STOCK, [stock_row("A-1", "MAIN", "5", minutes=60)])

    # then: it is applied, not taken for the content already held
    assert statuses(body) == [("A-1@MAIN", "updated", "")]
    assert level("A-1", "MAIN").on_hand == 5


def test_items_the_largest_documented_batch_is_answered_row_by_row(agent, settings):
    # Realistic names and barcodes: 5,000 rows come to about 2.6 MB, over Django's 2.5 MB
    # default body limit.
    rows = [
        item(sku=f"SKU-{i:05d}", name=f"Item {i:05d} " + "organic whole bean coffee " * 8)
        for i in range(settings.ERP_INGEST_MAX_ROWS)
    ]
    body = json.dumps({"rows": rows})
    assert len(body) > 2.5 * 1024 * 1024

    response = agent.post(ITEMS, body, content_type="application/json")

    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer["counts"] == counts(created=settings.ERP_INGEST_MAX_ROWS)
    assert len(answer["results"]) == settings.ERP_INGEST_MAX_ROWS


def test_items_unreachable_skus_are_invalid_rows_with_their_code(agent):
    rows = [item(sku="A/B"), item(sku="A\u200bB"), item(sku="A\u202eB"), item(sku="GOOD")]

    body = post(agent, ITEMS, rows)

    assert statuses(body) == [
        ("A/B", "invalid", "invalid_sku"),
        ("A\u200bB", "invalid", "invalid_sku"),
        ("A\u202eB", "invalid", "invalid_sku"),
        ("GOOD", "created", ""),
    ]
    assert list(Product.objects.values_list("sku", flat=True)) == ["GOOD"]


def test_stock_unreachable_skus_are_invalid_rows_with_their_code(agent, products):
    body = post(agent, STOCK, [stock_row(sku="A\u0007B"), stock_row(sku="A-1", quantity="2")])

    assert statuses(body) == [
        ("A\u0007B@MAIN", "invalid", "invalid_sku"),
        ("A-1@MAIN", "created", ""),
    ]


def test_warehouses_type_accepts_the_erp_codes_and_the_names(agent, vendor):
    rows = [
        warehouse_row("W0", type=0),
        warehouse_row("W1", type=1),
        warehouse_row("S0", type="0"),
        warehouse_row("S1", type="1"),
        warehouse_row("N1", type="transit"),
        warehouse_row("X2", type=2),
        warehouse_row("XT", type=True),
        warehouse_row("X01", type="01"),
    ]

    body = post(agent, WAREHOUSES, rows)

    assert [status for _, status, _ in statuses(body)] == [*["created"] * 5, *["invalid"] * 3]
    assert dict(Warehouse.objects.filter(vendor=vendor).values_list("code", "type")) == {
        "W0": "storage",
        "W1": "transit",
        "S0": "storage",
        "S1": "transit",
        "N1": "transit",
    }


def test_warehouses_of_code_0_take_stock_rows(agent, vendor):
    ProductFactory(vendor=vendor, sku="A-1")
    post(agent, WAREHOUSES, [warehouse_row("W0", type=0)])

    body = post(agent, STOCK, [stock_row(sku="A-1", code="W0", quantity="3")])

    assert statuses(body) == [("A-1@W0", "created", "")]
    assert level("A-1", "W0").on_hand == Decimal(3)
