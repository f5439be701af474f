"""ERP code mappings: the Convex seed command, the seed service, the API, the admin."""

import io
import json
import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.urls import reverse

from erp_mapping.models import ErpCodeMapping
from erp_mapping.selectors import mapping_cache_clear, mapping_resolve
from erp_mapping.serializers.mappings import MAX_SEED_ROWS
from erp_mapping.services.mappings import MappingInput, mappings_seed
from inventory.models import Vendor
from tests.erp_mapping.factories import ErpCodeMappingFactory
from tests.inventory.factories import VendorFactory

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).resolve().parents[2] / "erp_mapping" / "data" / "item-mapping.json"
SAMPLE_VENDOR = uuid.UUID("971a1d7b-8cd4-41d9-925f-f658deb6efa5")
SEED_URL = "/api/v1/erp/mappings/seed/"
LIST_URL = "/api/v1/erp/mappings/"
TYPES = ["unit", "vat", "family", "subfamily"]


@pytest.fixture(autouse=True)
def _fresh_resolver_cache():
    # The resolver cache lives in this process, across tests: start and end empty.
    mapping_cache_clear()
    yield
    mapping_cache_clear()


def seed(*args: str) -> tuple[dict[str, dict[str, int]], str, str]:
    """Run the command; return its count table ({type or "total": {column: n}}), out, err."""
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_erp_mappings", *args, stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("type "))
    columns = lines[header].split()[1:]
    table = {}
    for line in lines[header + 1 : header + 6]:
        name, *figures = line.split()
        table[name] = dict(zip(columns, map(int, figures), strict=True))
    return table, out.getvalue(), err.getvalue()


def convex(vendor: uuid.UUID | str = SAMPLE_VENDOR, **fields) -> dict:
    """A row as the Convex export has it (camelCase, with Convex's own fields)."""
    return {
        "_creationTime": 1767647238727.178,
        "_id": uuid.uuid4().hex,
        "createdAt": 1767647238727,
        "updatedAt": 1767647238727,
        "vendorId": str(vendor),
        "mappingType": "unit",
        "erpCode": "KG",
        "restoCode": "unit_kg_rm",
        "restoLabel": "KILOGRAMME",
        "isActive": True,
        **fields,
    }


@pytest.fixture
def export(tmp_path):
    """Write Convex rows to a file; return its path."""

    def write(rows: list) -> str:
        path = tmp_path / f"export-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(rows), encoding="utf-8")
        return str(path)

    return write


def stored(vendor_id: uuid.UUID = SAMPLE_VENDOR) -> dict[tuple[str, str], tuple]:
    return {
        (m.mapping_type, m.erp_code): (m.resto_code, m.resto_label, m.is_active)
        for m in ErpCodeMapping.objects.filter(vendor_id=vendor_id)
    }


def error_lines(err: str) -> list[tuple[int, str, str]]:
    """The command's invalid rows: (position, field, code)."""
    return [
        (int(m[1]), m[2], m[3])
        for m in re.finditer(r"^row (\d+): (\w+): (\w+): ", err, flags=re.MULTILINE)
    ]


# --- The seed command ---------------------------------------------------------------------


def test_seed_command_imports_the_sample():
    table, out, err = seed(str(SAMPLE))

    created = {name: table[name]["created"] for name in TYPES}
    assert created == {"unit": 38, "vat": 22, "family": 7, "subfamily": 35}
    assert table["total"] == {
        "created": 102,
        "updated": 0,
        "unchanged": 0,
        "skipped": 1,
        "invalid": 0,
    }
    assert table["unit"]["skipped"] == 1
    assert "mappings (created + updated + unchanged): 102" in out
    assert err == ""
    vendor = Vendor.objects.get(pk=SAMPLE_VENDOR)
    assert vendor.name == "Vendor 971a1d7b"
    assert f"Vendor {SAMPLE_VENDOR} Vendor 971a1d7b (new vendor)" in out
    assert ErpCodeMapping.objects.filter(vendor=vendor).count() == 102
    assert not ErpCodeMapping.objects.filter(erp_code="").exists()  # the fallback row skipped
    assert mapping_resolve(SAMPLE_VENDOR, "unit", "KG") == "unit_kg_rm"
    assert mapping_resolve(SAMPLE_VENDOR, "vat", "21") == "vat_7_old"


def test_seed_command_second_run_changes_nothing():
    seed(str(SAMPLE))
    before = dict(ErpCodeMapping.objects.values_list("pk", "updated_at"))

    table, out, _ = seed(str(SAMPLE))

    for name, expected in {"unit": 38, "vat": 22, "family": 7, "subfamily": 35}.items():
        assert table[name]["unchanged"] == expected
    assert table["total"] == {
        "created": 0,
        "updated": 0,
        "unchanged": 102,
        "skipped": 1,
        "invalid": 0,
    }
    assert "(new vendor)" not in out
    assert dict(ErpCodeMapping.objects.values_list("pk", "updated_at")) == before


def test_seed_command_dry_run_writes_nothing_and_reports_the_same_counts():
    dry, out, _ = seed(str(SAMPLE), "--dry-run")

    assert "Dry run: nothing was written." in out
    assert "(new vendor)" in out  # it would be created
    assert not Vendor.objects.filter(pk=SAMPLE_VENDOR).exists()
    assert ErpCodeMapping.objects.count() == 0
    real, _, _ = seed(str(SAMPLE))
    assert dry == real
    assert real["total"]["created"] == 102
    # A dry run over stored mappings counts what would change, and changes nothing.
    ErpCodeMapping.objects.filter(erp_code="KG").update(resto_label="OLD")
    dry_again, _, _ = seed(str(SAMPLE), "--dry-run")
    assert dry_again["unit"]["updated"] == 1
    assert ErpCodeMapping.objects.get(erp_code="KG").resto_label == "OLD"


def test_seed_command_include_empty_makes_the_fallback_unit():
    table, _, _ = seed(str(SAMPLE), "--include-empty")

    assert table["unit"] == {
        "created": 39,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "invalid": 0,
    }
    fallback = ErpCodeMapping.objects.get(vendor_id=SAMPLE_VENDOR, erp_code="")
    assert (fallback.mapping_type, fallback.resto_code) == ("unit", "unit_u_rm")
    assert mapping_resolve(SAMPLE_VENDOR, "unit", "") == "unit_u_rm"
    # Without the flag a later run leaves the stored fallback alone.
    again, _, _ = seed(str(SAMPLE))
    assert again["unit"]["skipped"] == 1
    assert ErpCodeMapping.objects.filter(erp_code="").exists()


def test_seed_command_reports_bad_rows_with_their_position_and_imports_the_good(export):
    rows = [
        convex(erpCode="KG", restoCode="unit_kg_first"),  # 0: overridden by row 7
        convex(mappingType="colour", erpCode="RED"),  # 1
        convex(mappingType="vat", erpCode="", restoCode="vat_x"),  # 2: only units may be empty
        convex(mappingType="family", erpCode="EPIC", restoCode=""),  # 3
        convex(mappingType="family", erpCode="BOIS", restoLabel="  "),  # 4
        convex(vendor="not-a-uuid", erpCode="L"),  # 5
        "not an object",  # 6
        convex(erpCode="KG", restoCode="unit_kg_rm"),  # 7: the last wins
        convex(mappingType="vat", erpCode="20", restoCode="vat_20", restoLabel="TVA 20%"),  # 8
        {key: value for key, value in convex(erpCode="PCE").items() if key != "restoLabel"},  # 9
    ]

    table, _, err = seed(export(rows))

    assert error_lines(err) == [
        (0, "erp_code", "duplicate"),
        (1, "mapping_type", "unknown_type"),
        (2, "erp_code", "missing_code"),
        (3, "resto_code", "missing_code"),
        (4, "resto_label", "missing_label"),
        (5, "vendor_id", "invalid_vendor_id"),
        (6, "row", "invalid_row"),
        (9, "resto_label", "missing_label"),
    ]
    assert table["total"]["invalid"] == 8
    assert table["total"]["created"] == 2
    # Invalid rows of a known type count with it (an unknown type or a non-object only in total).
    assert {name: table[name]["invalid"] for name in TYPES} == {
        "unit": 3,
        "vat": 1,
        "family": 2,
        "subfamily": 0,
    }
    assert stored() == {
        ("unit", "KG"): ("unit_kg_rm", "KILOGRAMME", True),
        ("vat", "20"): ("vat_20", "TVA 20%", True),
    }


def test_seed_command_keeps_an_inactive_row_inactive(export):
    path = export([convex(erpCode="SAC", restoCode="unit_sac", isActive=False)])

    first, _, _ = seed(path)
    again, _, _ = seed(path)

    assert first["unit"]["created"] == 1
    assert again["unit"]["unchanged"] == 1
    assert stored() == {("unit", "SAC"): ("unit_sac", "KILOGRAMME", False)}
    assert mapping_resolve(SAMPLE_VENDOR, "unit", "SAC") is None  # inactive: not resolved


def test_seed_command_counts_a_changed_label_as_updated(export):
    seed(export([convex(erpCode="KG"), convex(erpCode="L", restoCode="unit_l")]))
    before = ErpCodeMapping.objects.get(erp_code="KG").updated_at

    table, _, _ = seed(
        export([convex(erpCode="KG", restoLabel="KILO"), convex(erpCode="L", restoCode="unit_l")])
    )

    assert table["unit"] == {
        "created": 0,
        "updated": 1,
        "unchanged": 1,
        "skipped": 0,
        "invalid": 0,
    }
    kg = ErpCodeMapping.objects.get(erp_code="KG")
    assert kg.resto_label == "KILO"
    assert kg.updated_at > before


def test_seed_command_vendor_option_imports_only_that_vendor(export):
    other = uuid.uuid4()
    path = export(
        [
            convex(erpCode="KG"),
            convex(vendor=other, erpCode="KG", restoCode="unit_kilo"),
            convex(vendor="not-a-uuid", erpCode="L"),  # not this vendor's: ignored
            convex(erpCode="L", restoCode="unit_l", restoLabel="LITRE"),
        ]
    )

    table, out, err = seed(path, "--vendor", str(other))

    assert table["total"]["created"] == 1
    assert table["total"]["invalid"] == 0
    assert err == ""
    assert stored(other) == {("unit", "KG"): ("unit_kilo", "KILOGRAMME", True)}
    assert not Vendor.objects.filter(pk=SAMPLE_VENDOR).exists()
    assert Vendor.objects.get(pk=other).name == f"Vendor {other.hex[:8]}"
    assert f"Vendor {other}" in out


def test_seed_command_vendor_option_errors(export):
    path = export([convex(erpCode="KG")])
    with pytest.raises(CommandError, match="has no rows of vendor"):
        seed(path, "--vendor", str(uuid.uuid4()))
    with pytest.raises(CommandError, match="--vendor is not a UUID"):
        seed(path, "--vendor", "971a1d7b")
    assert ErpCodeMapping.objects.count() == 0


def test_seed_command_refuses_an_unusable_file(tmp_path, export):
    not_a_list = tmp_path / "object.json"
    not_a_list.write_text('{"mappings": []}', encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")

    with pytest.raises(CommandError, match="must hold a JSON list"):
        seed(str(not_a_list))
    with pytest.raises(CommandError, match="Cannot read"):
        seed(str(broken))
    with pytest.raises(CommandError, match="Cannot read"):
        seed(str(tmp_path / "missing.json"))


def test_seed_logs_the_counts(log_lines):
    seed(str(SAMPLE), "--dry-run")

    [line] = [line for line in log_lines() if line.get("event") == "erp_mappings.seeded"]
    assert line["dry_run"] is True
    assert (line["created"], line["skipped"], line["invalid"]) == (102, 1, 0)
    assert line["by_type"]["subfamily"]["created"] == 35
    assert line["vendors_created"] == [str(SAMPLE_VENDOR)]
    assert line["actor"] == "manage.py seed_erp_mappings"


@pytest.mark.django_db(transaction=True)
def test_concurrent_seeds_of_a_vendor_run_one_after_the_other():
    vendor = VendorFactory()
    rows = [
        MappingInput(i, vendor.pk, "unit", code, f"unit_{code.lower()}", code, True)
        for i, code in enumerate(["KG", "L", "PCE"])
    ]
    first_seeded, release_first = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                outcomes["first"] = mappings_seed(rows=rows, actor="first")
                first_seeded.set()
                release_first.wait(10)
        finally:
            connections.close_all()

    def second() -> None:
        first_seeded.wait(10)
        try:
            outcomes["second"] = mappings_seed(rows=rows, actor="second")
        except Exception as exc:
            outcomes["second"] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert first_seeded.wait(10)
    time.sleep(0.3)
    assert threads[1].is_alive()  # waiting for the first seed's vendor lock
    release_first.set()
    for thread in threads:
        thread.join(15)

    assert outcomes["first"].totals.created == 3
    # The second seed read after the first committed: no duplicate insert, nothing to do.
    assert not isinstance(outcomes["second"], Exception), outcomes["second"]
    assert outcomes["second"].totals.unchanged == 3
    assert ErpCodeMapping.objects.filter(vendor=vendor).count() == 3


# --- The API ----------------------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "correlation_id"}
    return body


@pytest.fixture
def admin_api(make_client):
    return make_client(("admin",))


def test_api_seed_needs_the_admin_scope(make_client, vendor):
    body = {"vendor_id": str(vendor.pk), "mappings": [{"mapping_type": "unit", "erp_code": "KG"}]}

    for scopes in [("read",), ("read", "write")]:
        response = make_client(scopes).post(SEED_URL, body, format="json")
        assert_error(response, 403, "insufficient_scope")
    assert ErpCodeMapping.objects.count() == 0


def test_api_seed_counts_and_lists_the_invalid_rows(admin_api):
    vendor_id = uuid.uuid4()
    rows = [
        {"mapping_type": "unit", "erp_code": "KG", "resto_code": "x", "resto_label": "x"},
        {"mapping_type": "colour", "erp_code": "RED", "resto_code": "c", "resto_label": "Red"},
        {"mapping_type": "vat", "erp_code": "", "resto_code": "vat_x", "resto_label": "x"},
        {"mapping_type": "family", "erp_code": "EPIC", "resto_label": "Epicerie"},
        {"mapping_type": "subfamily", "erp_code": "E1", "resto_code": "s", "resto_label": ""},
        "not an object",
        {"mapping_type": "unit", "erp_code": "KG", "resto_code": "unit_kg", "resto_label": "KG"},
        {"mapping_type": "unit", "erp_code": "", "resto_code": "unit_u", "resto_label": "UNIT"},
        {
            "mapping_type": "vat",
            "erp_code": 20,
            "resto_code": "vat_20",
            "resto_label": "TVA 20%",
            "is_active": False,
        },
        {"mapping_type": "", "erp_code": "X", "resto_code": "x", "resto_label": "x"},
        {"mapping_type": "unit", "erp_code": "K" * 65, "resto_code": "x", "resto_label": "x"},
        {
            "mapping_type": "unit",
            "erp_code": "B",
            "resto_code": "b",
            "resto_label": "b",
            "is_active": "maybe",
        },
    ]

    response = admin_api.post(
        SEED_URL, {"vendor_id": str(vendor_id), "mappings": rows}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert [(e["index"], e["field"], e["code"]) for e in body["invalid"]] == [
        (0, "erp_code", "duplicate"),
        (1, "mapping_type", "unknown_type"),
        (2, "erp_code", "missing_code"),
        (3, "resto_code", "missing_code"),
        (4, "resto_label", "missing_label"),
        (5, "row", "invalid_row"),
        (9, "mapping_type", "missing_type"),
        (10, "erp_code", "too_long"),
        (11, "is_active", "invalid_value"),
    ]
    assert all(error["message"] for error in body["invalid"])
    assert {error["status"] for error in body["invalid"]} == {"invalid"}  # the batch row shape
    assert body["counts"] == {
        "unit": {"created": 1, "updated": 0, "unchanged": 0, "skipped": 1, "invalid": 3},
        "vat": {"created": 1, "updated": 0, "unchanged": 0, "skipped": 0, "invalid": 1},
        "family": {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "invalid": 1},
        "subfamily": {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "invalid": 1},
    }
    assert body["totals"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "skipped": 1,
        "invalid": 9,
    }
    assert body["dry_run"] is False
    assert body["vendors"] == [
        {"id": str(vendor_id), "name": f"Vendor {vendor_id.hex[:8]}", "created": True}
    ]
    assert stored(vendor_id) == {
        ("unit", "KG"): ("unit_kg", "KG", True),
        ("vat", "20"): ("vat_20", "TVA 20%", False),
    }


def test_api_seed_over_the_maximum_is_refused_in_the_batch_envelope(admin_api, vendor):
    rows = [{"mapping_type": "unit", "erp_code": "X"}] * 10_001

    response = admin_api.post(
        SEED_URL, {"vendor_id": str(vendor.pk), "mappings": rows}, format="json"
    )

    error = assert_error(response, 400, "batch_too_large")
    assert error["details"] == {"max": 10_000, "received": 10_001}


def test_api_seed_dry_run_then_real_run_then_unchanged(admin_api, vendor):
    body = {
        "vendor_id": str(vendor.pk),
        "mappings": [
            {
                "mapping_type": "unit",
                "erp_code": "KG",
                "resto_code": "unit_kg",
                "resto_label": "KG",
            },
            {"mapping_type": "unit", "erp_code": "", "resto_code": "unit_u", "resto_label": "U"},
        ],
        "include_empty": True,
    }

    dry = admin_api.post(SEED_URL, {**body, "dry_run": True}, format="json").json()
    assert ErpCodeMapping.objects.count() == 0
    real = admin_api.post(SEED_URL, body, format="json").json()
    again = admin_api.post(SEED_URL, body, format="json").json()

    assert dry["dry_run"] is True
    assert dry["totals"] == real["totals"]
    assert real["counts"]["unit"]["created"] == 2
    assert again["counts"]["unit"]["unchanged"] == 2
    assert again["totals"]["created"] + again["totals"]["updated"] == 0
    assert mapping_resolve(vendor.pk, "unit", "") == "unit_u"


def test_api_seed_row_without_is_active_keeps_the_stored_flag(admin_api, vendor):
    mapping = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", is_active=False)
    row = {"mapping_type": "unit", "erp_code": "KG", "resto_code": mapping.resto_code}
    row["resto_label"] = mapping.resto_label

    kept = admin_api.post(SEED_URL, {"vendor_id": str(vendor.pk), "mappings": [row]}, format="json")
    assert kept.json()["counts"]["unit"]["unchanged"] == 1
    mapping.refresh_from_db()
    assert mapping.is_active is False

    flipped = admin_api.post(
        SEED_URL,
        {"vendor_id": str(vendor.pk), "mappings": [{**row, "is_active": True}]},
        format="json",
    )
    assert flipped.json()["counts"]["unit"]["updated"] == 1
    mapping.refresh_from_db()
    assert mapping.is_active is True


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ([{"mapping_type": "unit"}], "invalid_body", None),
        ("just text", "invalid_body", None),
        ({"vendor_id": "VENDOR", "mappings": "not a list"}, "validation_error", "mappings"),
        ({"vendor_id": "971a1d7b", "mappings": []}, "validation_error", "vendor_id"),
        ({"mappings": []}, "validation_error", "vendor_id"),
        ({"vendor_id": "VENDOR"}, "validation_error", "mappings"),
        ({"vendor_id": "VENDOR", "mappings": [{}] * 10_001}, "batch_too_large", None),
    ],
)
def test_api_seed_unusable_bodies_are_400(admin_api, vendor, body, code, field):
    if isinstance(body, dict) and body.get("vendor_id") == "VENDOR":
        body = {**body, "vendor_id": str(vendor.pk)}

    response = admin_api.post(SEED_URL, body, format="json")

    error = assert_error(response, 400, code)
    if field:
        assert field in error["details"]
    assert ErpCodeMapping.objects.count() == 0


def test_api_seed_malformed_json_is_400(admin_api):
    response = admin_api.post(SEED_URL, "{", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_api_seed_replays_under_an_idempotency_key(admin_api, vendor):
    body = {
        "vendor_id": str(vendor.pk),
        "mappings": [
            {"mapping_type": "vat", "erp_code": "1", "resto_code": "v", "resto_label": "v"}
        ],
    }
    first = admin_api.post(SEED_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="seed-1")
    replay = admin_api.post(SEED_URL, body, format="json", HTTP_IDEMPOTENCY_KEY="seed-1")

    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert replay.json()["counts"]["vat"]["created"] == 1  # the first answer, not "unchanged"


def test_api_list_filters(api, vendor):
    other = VendorFactory()
    kg = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", resto_code="unit_kg")
    ErpCodeMappingFactory(vendor=vendor, mapping_type="vat", erp_code="20", is_active=False)
    ErpCodeMappingFactory(vendor=other, erp_code="KG", resto_code="unit_kilo")

    def codes(query: str = "") -> list[tuple[str, str, str]]:
        response = api.get(f"{LIST_URL}?{query}")
        assert response.status_code == 200, response.content
        return sorted(
            (row["vendor_id"], row["mapping_type"], row["resto_code"])
            for row in response.json()["results"]
        )

    assert len(codes()) == 3  # every vendor when none is given
    assert codes(f"vendor={other.pk}") == [(str(other.pk), "unit", "unit_kilo")]
    assert [c[1] for c in codes(f"vendor={vendor.pk}&type=vat")] == ["vat"]
    assert len(codes("type=unit")) == 2
    assert [c[1] for c in codes("active=false")] == ["vat"]
    assert len(codes("active=true&erp_code=KG")) == 2
    assert codes("erp_code=NOPE") == []
    row = api.get(f"{LIST_URL}?vendor={vendor.pk}&type=unit").json()["results"][0]
    assert set(row) == {
        "id",
        "vendor_id",
        "mapping_type",
        "erp_code",
        "resto_code",
        "resto_label",
        "is_active",
        "created_at",
        "updated_at",
    }
    assert (row["id"], row["vendor_id"], row["erp_code"]) == (kg.pk, str(vendor.pk), "KG")
    assert_error(api.get(f"{LIST_URL}?vendor=nope"), 400, "invalid_filter")
    assert_error(api.get(f"{LIST_URL}?type=colour"), 400, "invalid_filter")


def test_api_list_needs_the_read_scope(make_client):
    assert_error(make_client(("agent",)).get(LIST_URL), 403, "insufficient_scope")


def test_api_list_query_count_is_constant(api, vendor, django_assert_num_queries):
    for code in ["KG", "L", "PCE", "SAC", "BT"]:
        ErpCodeMappingFactory(vendor=vendor, erp_code=code)
    api.get(LIST_URL)  # the first use caches the key and records last_used_at
    # page count and page rows: the same for 5 rows or 500
    with django_assert_num_queries(2):
        response = api.get(f"{LIST_URL}?vendor={vendor.pk}&type=unit&active=true")
    assert response.json()["count"] == 5


# --- The admin --------------------------------------------------------------------------------


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


CHANGELIST = "admin:erp_mapping_erpcodemapping_changelist"


def test_admin_changelist_filters_by_vendor_and_type(staff, vendor):
    other = VendorFactory()
    ErpCodeMappingFactory(vendor=vendor, erp_code="KG")
    ErpCodeMappingFactory(vendor=vendor, mapping_type="vat", erp_code="20")
    ErpCodeMappingFactory(vendor=other, erp_code="KG")
    ErpCodeMappingFactory(vendor=other, erp_code="")

    def shown(**query: str) -> list[tuple]:
        response = staff.get(reverse(CHANGELIST), query)
        assert response.status_code == 200
        return sorted(
            (m.vendor_id, m.mapping_type, m.erp_code) for m in response.context["cl"].result_list
        )

    assert len(shown()) == 4
    assert shown(vendor__id__exact=str(other.pk)) == [
        (other.pk, "unit", ""),
        (other.pk, "unit", "KG"),
    ]
    assert shown(mapping_type__exact="vat") == [(vendor.pk, "vat", "20")]
    assert shown(vendor__id__exact=str(vendor.pk), mapping_type__exact="unit") == [
        (vendor.pk, "unit", "KG")
    ]
    assert b"(fallback)" in staff.get(reverse(CHANGELIST)).content


def test_admin_actions_deactivate_and_activate(staff, vendor, django_capture_on_commit_callbacks):
    kg = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", resto_code="unit_kg")
    litre = ErpCodeMappingFactory(vendor=vendor, erp_code="L")
    untouched = ErpCodeMappingFactory(vendor=vendor, erp_code="PCE")
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"  # now cached

    def act(action: str, *mappings: ErpCodeMapping):
        with django_capture_on_commit_callbacks(execute=True):
            return staff.post(
                reverse(CHANGELIST),
                {"action": action, "_selected_action": [m.pk for m in mappings]},
                follow=True,
            )

    response = act("deactivate_selected", kg, litre)
    assert "Deactivated 2 mapping(s)." in response.content.decode()
    active = dict(ErpCodeMapping.objects.values_list("erp_code", "is_active"))
    assert active == {"KG": False, "L": False, "PCE": True}
    assert mapping_resolve(vendor.pk, "unit", "KG") is None  # the cache was cleared

    response = act("activate_selected", kg, untouched)
    assert "Activated 1 mapping(s)." in response.content.decode()  # PCE already was
    active = dict(ErpCodeMapping.objects.values_list("erp_code", "is_active"))
    assert active == {"KG": True, "L": False, "PCE": True}
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"


def test_admin_change_form_edits_code_and_label_not_the_identity(
    staff, vendor, django_capture_on_commit_callbacks
):
    mapping = ErpCodeMappingFactory(vendor=vendor, erp_code="KG", resto_code="unit_kg")
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kg"
    url = reverse("admin:erp_mapping_erpcodemapping_change", args=[mapping.pk])
    assert staff.get(url).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            url,
            {
                "erp_code": "LB",  # read-only: ignored
                "resto_code": "unit_kilo",
                "resto_label": "Kilo",
                "is_active": "on",
            },
        )

    assert response.status_code == 302, response.content
    mapping.refresh_from_db()
    assert (mapping.erp_code, mapping.resto_code, mapping.resto_label) == (
        "KG",
        "unit_kilo",
        "Kilo",
    )
    assert mapping_resolve(vendor.pk, "unit", "KG") == "unit_kilo"


def test_admin_adds_a_mapping_and_refuses_an_empty_non_unit_code(staff, vendor):
    add = reverse("admin:erp_mapping_erpcodemapping_add")
    fields = {"vendor": str(vendor.pk), "resto_code": "vat_20", "resto_label": "TVA 20%"}

    refused = staff.post(add, {**fields, "mapping_type": "vat", "erp_code": "", "is_active": "on"})
    assert refused.status_code == 200
    # the service's rule and wording, on the field
    assert refused.context["adminform"].form.errors == {
        "erp_code": ["Only a unit mapping may have an empty ERP code (the vendor's fallback unit)."]
    }

    created = staff.post(
        add, {**fields, "mapping_type": "vat", "erp_code": "20", "is_active": "on"}
    )
    assert created.status_code == 302
    assert stored(vendor.pk) == {("vat", "20"): ("vat_20", "TVA 20%", True)}

    duplicate = staff.post(add, {**fields, "mapping_type": "vat", "erp_code": "20"})
    assert duplicate.status_code == 200  # the unique constraint, reported on the form
    assert ErpCodeMapping.objects.count() == 1


def test_admin_cannot_delete_mappings(staff, vendor):
    mapping = ErpCodeMappingFactory(vendor=vendor)
    url = reverse("admin:erp_mapping_erpcodemapping_delete", args=[mapping.pk])
    assert staff.get(url).status_code == 403
    assert ErpCodeMapping.objects.filter(pk=mapping.pk).exists()


def test_api_seed_the_largest_documented_seed_is_answered(admin_api, vendor):
    # 10,000 mappings with realistic labels come to about 3 MB, over Django's 2.5 MB default.
    rows = [
        {
            "mapping_type": "subfamily",
            "erp_code": f"SUB{i:05d}",
            "resto_code": f"subcat_{i:05d}_grocery_and_fresh_produce",
            "resto_label": f"Subfamily {i:05d}: grocery, fresh produce, dairy, bakery, "
            "frozen food, drinks and daily household essentials for the whole family",
            "is_active": True,
        }
        for i in range(MAX_SEED_ROWS)
    ]
    body = json.dumps({"vendor_id": str(vendor.pk), "mappings": rows})
    assert len(body) > 2.5 * 1024 * 1024

    response = admin_api.post(SEED_URL, body, content_type="application/json")

    assert response.status_code == 200, response.content[:500]
    assert response.json()["totals"]["created"] == MAX_SEED_ROWS
