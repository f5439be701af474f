import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.sandbox import SandboxServer
from erp_mapping.models import ErpConnection, SyncRun
from erp_mapping.sandbox import ErpSandbox
from inventory.models import StockLevel
from tests.inventory.factories import ProductFactory, VendorFactory

TOKEN = "api-test-token"


@pytest.fixture
def admin_api(make_client):
    return make_client(("admin",))


@pytest.mark.django_db
def test_connection_put_stores_the_token_encrypted_and_never_returns_it(vendor, admin_api):
    url = f"/api/v1/erp/connections/{vendor.pk}/"

    created = admin_api.put(
        url, {"base_url": "https://erp.example.com/api/", "token": "s3cret-token"}, format="json"
    )

    assert created.status_code == 201
    assert created.json()["base_url"] == "https://erp.example.com/api"
    assert created.json()["has_token"] is True
    assert "token" not in created.json()
    assert "s3cret-token" not in created.content.decode()
    stored = ErpConnection.objects.get(vendor=vendor)
    assert stored.token == "s3cret-token"
    # the column holds ciphertext only
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM erp_mapping_erpconnection WHERE id = %s", [stored.pk])
        assert cursor.fetchone()[0].startswith("enc1:")

    # an update without a token keeps the stored one
    updated = admin_api.put(
        url, {"base_url": "https://erp2.example.com", "enabled": False}, format="json"
    )
    assert updated.status_code == 200
    stored.refresh_from_db()
    assert (stored.base_url, stored.enabled, stored.token) == (
        "https://erp2.example.com",
        False,
        "s3cret-token",
    )
    shown = admin_api.get(url)
    assert shown.status_code == 200
    assert shown.json()["enabled"] is False


@pytest.mark.django_db
def test_connection_put_errors(vendor, admin_api, api):
    url = f"/api/v1/erp/connections/{vendor.pk}/"
    none = admin_api.get(url)
    assert (none.status_code, none.json()["code"]) == (404, "erp_connection_not_found")

    refused = api.put(url, {"base_url": "https://x.example", "token": "t"}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    first = admin_api.put(url, {"base_url": "https://x.example"}, format="json")
    assert (first.status_code, first.json()["code"]) == (400, "token_required")
    on_premise = admin_api.put(
        url, {"base_url": "http://sage01:8080/api", "token": "t"}, format="json"
    )
    assert on_premise.status_code == 201
    bad = admin_api.put(url, {"base_url": "not a url", "token": "t"}, format="json")
    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")
    assert "base_url" in bad.json()["details"]
    missing = admin_api.put(
        "/api/v1/erp/connections/00000000-0000-0000-0000-000000000000/",
        {"base_url": "https://x.example", "token": "t"},
        format="json",
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "vendor_not_found")


@pytest.mark.django_db
def test_sync_runs_list_and_detail(vendor, api, django_assert_num_queries):
    other = VendorFactory()
    now = timezone.now()
    done = SyncRun.objects.create(
        vendor=vendor,
        status=SyncRun.Status.COMPLETED,
        started_at=now,
        skus_processed=3,
        details={"unknown_sku_list": ["X"]},
    )
    SyncRun.objects.create(vendor=other, status=SyncRun.Status.FAILED, started_at=now)

    with django_assert_num_queries(4):  # key, count, page, (throttle touch excluded: cache)
        listed = api.get("/api/v1/erp/sync-runs/", {"vendor": str(vendor.pk)})

    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [done.pk]
    assert "details" not in listed.json()["results"][0]
    failed = api.get("/api/v1/erp/sync-runs/", {"status": "failed"}).json()["results"]
    assert [r["vendor_id"] for r in failed] == [str(other.pk)]
    detail = api.get(f"/api/v1/erp/sync-runs/{done.pk}/").json()
    assert detail["details"] == {"unknown_sku_list": ["X"]}
    assert detail["skus_processed"] == 3
    assert api.get("/api/v1/erp/sync-runs/999999/").json()["code"] == "not_found"


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_admin_connection_form_and_pull_now(
    vendor, warehouse, staff_client, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.STORAGES = {
        **settings.STORAGES,
        "erp_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    ProductFactory(sku="ADM-1")
    app = ErpSandbox(token=TOKEN, rows=[{"sku": "ADM-1", "qty": 8}])
    with SandboxServer(app) as server:
        # given: a connection made in the admin, token typed once
        added = staff_client.post(
            "/admin/erp_mapping/erpconnection/add/",
            {"vendor": str(vendor.pk), "base_url": server.url, "token": TOKEN, "enabled": "on"},
        )
        assert added.status_code == 302, added.content.decode()[:2000]
        connection = ErpConnection.objects.get(vendor=vendor)
        assert connection.token == TOKEN
        page = staff_client.get(f"/admin/erp_mapping/erpconnection/{connection.pk}/change/")
        assert TOKEN not in page.content.decode()

        # when: "pull now"
        with django_capture_on_commit_callbacks(execute=True):
            staff_client.post(
                "/admin/erp_mapping/erpconnection/",
                {"action": "pull_now", "_selected_action": [connection.pk]},
            )

    # then: a run by the admin trigger applied the ERP's count
    run = SyncRun.objects.get()
    assert (run.status, run.trigger) == (SyncRun.Status.COMPLETED, SyncRun.Trigger.ADMIN)
    assert StockLevel.objects.get(product__sku="ADM-1").on_hand == 8
    listing = staff_client.get("/admin/erp_mapping/syncrun/")
    assert listing.status_code == 200
    assert run.archive_path in listing.content.decode()
    detail = staff_client.get(f"/admin/erp_mapping/syncrun/{run.pk}/change/")
    assert detail.status_code == 200
