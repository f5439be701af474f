import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from core.errors import DomainError
from inventory.models import Warehouse
from inventory.services import warehouse_create, warehouse_default_set, warehouse_update
from tests.inventory.factories import VendorFactory, WarehouseFactory

pytestmark = pytest.mark.django_db


def defaults(vendor) -> list[str]:
    return list(
        Warehouse.objects.filter(vendor=vendor, is_default=True).values_list("code", flat=True)
    )


def test_warehouse_create_makes_the_vendors_first_warehouse_its_default():
    # given: a vendor without warehouses
    vendor = VendorFactory()

    # when
    first = warehouse_create(vendor=vendor, code="A", name="A")
    second = warehouse_create(vendor=vendor, code="B", name="B")

    # then: the first is the default though it was not asked to be; the second is not
    assert (first.is_default, second.is_default) == (True, False)
    assert defaults(vendor) == ["A"]


def test_warehouse_create_asked_default_takes_over_and_inactive_first_is_skipped():
    vendor = VendorFactory()

    closed = warehouse_create(vendor=vendor, code="OLD", name="Old", active=False)
    open_ = warehouse_create(vendor=vendor, code="NEW", name="New")
    assert (closed.is_default, open_.is_default) == (False, True)

    chosen = warehouse_create(vendor=vendor, code="HUB", name="Hub", is_default=True)

    assert chosen.is_default
    assert defaults(vendor) == ["HUB"]


def test_warehouse_default_set_moves_the_default_and_refuses_an_inactive_warehouse():
    vendor = VendorFactory()
    warehouse_create(vendor=vendor, code="A", name="A")
    b = warehouse_create(vendor=vendor, code="B", name="B")
    closed = warehouse_create(vendor=vendor, code="C", name="C", active=False)

    assert warehouse_default_set(warehouse=b).is_default
    assert warehouse_default_set(warehouse=b).is_default  # idempotent
    assert defaults(vendor) == ["B"]
    with pytest.raises(DomainError) as refused:
        warehouse_default_set(warehouse=closed)
    assert refused.value.code == "warehouse_inactive"
    assert defaults(vendor) == ["B"]


def test_warehouse_update_unsetting_the_default_falls_back_to_the_first_warehouse():
    vendor = VendorFactory()
    warehouse_create(vendor=vendor, code="A", name="A")
    b = warehouse_create(vendor=vendor, code="B", name="B", is_default=True)

    updated = warehouse_update(warehouse=b, is_default=False, name="Bee")

    assert (updated.name, updated.is_default) == ("Bee", False)
    assert defaults(vendor) == ["A"]


def test_warehouse_update_moves_the_default_from_a_factory_made_one():
    vendor = VendorFactory()
    WarehouseFactory(vendor=vendor, code="A", is_default=True)
    b = WarehouseFactory(vendor=vendor, code="B")

    assert warehouse_update(warehouse=b, is_default=True).is_default
    assert defaults(vendor) == ["B"]


def test_warehouse_admin_add_and_change_go_through_the_default_rule(client):
    # given: staff in the admin, and a vendor without warehouses
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    vendor = VendorFactory()
    form = {"vendor": vendor.pk, "name": "x", "erp_id": "", "type": "storage", "active": "on"}

    # when: two warehouses are added, neither ticked as default
    for code in ("A", "B"):
        response = client.post(reverse("admin:inventory_warehouse_add"), {**form, "code": code})
        assert response.status_code == 302, response.content
    assert defaults(vendor) == ["A"]

    # then: ticking B's box moves the default to B
    b = Warehouse.objects.get(vendor=vendor, code="B")
    response = client.post(
        reverse("admin:inventory_warehouse_change", args=[b.pk]),
        {"name": "Bee", "erp_id": "", "type": "storage", "active": "on", "is_default": "on"},
    )
    assert response.status_code == 302, response.content
    assert defaults(vendor) == ["B"]
    assert Warehouse.objects.get(pk=b.pk).name == "Bee"
