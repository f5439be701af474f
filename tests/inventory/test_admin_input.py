"""The admin holds staff input to the API's rules for SKUs and quantities."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from inventory.models import Product, StockLevel

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "pw"))
    return client


def product_form(vendor, sku: str) -> dict:
    return {
        "vendor": vendor.pk,
        "sku": sku,
        "name": "Made in admin",
        "attributes": "{}",
        "price_excl_vat": "10",
        "price_incl_vat": "11",
        "manage_stock": "on",
    }


@pytest.mark.parametrize("sku", ["A/B", "A\u200bB", "A\u202eB", ".."])
def test_admin_input_product_add_refuses_an_unreachable_sku(staff, vendor, sku):
    response = staff.post(reverse("admin:inventory_product_add"), product_form(vendor, sku))

    assert response.status_code == 200
    assert "A SKU cannot contain" in response.content.decode()
    assert not Product.objects.exists()


def test_admin_input_product_add_takes_a_reachable_sku(staff, vendor):
    response = staff.post(reverse("admin:inventory_product_add"), product_form(vendor, "A B-1"))

    assert response.status_code == 302
    assert Product.objects.filter(sku="A B-1").exists()


@pytest.mark.parametrize("quantity", ["1e3", "1_000", "+5", "\u0665"])
def test_admin_input_adjust_refuses_other_quantity_forms(staff, stocked, quantity):
    level = StockLevel.objects.get(product=stocked(5))
    url = reverse("admin:inventory_stocklevel_adjust", args=[level.pk])

    response = staff.post(url, {"operation": "adjust", "quantity": quantity, "reason": "x"})

    assert response.status_code == 200
    assert "Enter a number." in response.content.decode()
    level.refresh_from_db()
    assert level.on_hand == Decimal(5)


def test_admin_input_adjust_takes_the_documented_form(staff, stocked):
    level = StockLevel.objects.get(product=stocked(5))
    url = reverse("admin:inventory_stocklevel_adjust", args=[level.pk])

    response = staff.post(url, {"operation": "adjust", "quantity": " -1.5 ", "reason": "x"})

    assert response.status_code == 302
    level.refresh_from_db()
    assert level.on_hand == Decimal("3.5")
