"""An inactive warehouse is never the vendor's default, whichever path writes it."""

import pytest
from django.contrib.auth.models import User

from inventory import services
from inventory.models import Warehouse
from tests.inventory.factories import WarehouseFactory

pytestmark = pytest.mark.django_db


def test_warehouse_create_refuses_an_inactive_default(api, vendor, warehouse):
    body = {"code": "OFF", "name": "Off", "is_default": True, "active": False}

    response = api.post("/api/v1/warehouses/", body, format="json")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "warehouse_inactive"
    assert Warehouse.objects.get(vendor=vendor, is_default=True).pk == warehouse.pk
    assert not Warehouse.objects.filter(code="OFF").exists()


def test_warehouse_deactivating_the_default_moves_the_default(api, vendor, warehouse, stocked):
    # given: a second active warehouse, created after the default
    product = stocked(10)
    other = services.warehouse_create(vendor=vendor, code="SECOND", name="Second")

    # when: the default is deactivated (what the admin's change form calls)
    services.warehouse_update(warehouse=warehouse, active=False)

    # then: the other takes over, and a reservation naming no warehouse goes there
    default = Warehouse.objects.get(vendor=vendor, is_default=True)
    assert default.pk == other.pk
    services.stock_set(
        product=product,
        warehouse=other,
        quantity=5,
        origin=services.Origin(source="test", actor="test"),
    )
    response = api.post(
        "/api/v1/reservations/",
        {"sku": product.sku, "quantity": "1"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert response.status_code == 201, response.content
    assert response.json()["warehouse"] == "SECOND"


def test_warehouse_admin_refuses_an_inactive_default_on_the_field(client, vendor, warehouse):
    off = WarehouseFactory(vendor=vendor, code="OFF", active=False)
    User.objects.create_superuser("root", "r@example.com", "pw")
    client.force_login(User.objects.get(username="root"))
    url = f"/admin/inventory/warehouse/{off.pk}/change/"
    data = {
        "name": off.name,
        "type": off.type,
        "erp_id": off.erp_id or "",
        "is_default": "on",
    }

    response = client.post(url, data)

    assert response.status_code == 200  # the form again, not a 500
    errors = response.context["adminform"].form.errors
    assert "is_default" in errors
    assert Warehouse.objects.get(vendor=vendor, is_default=True).pk == warehouse.pk
