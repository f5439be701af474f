"""The admin console: every ModelAdmin renders, and the console actions call the services."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule

from core.auth import api_key_hash
from core.models import ApiKey, DeadLetter, IdempotencyRecord
from core.services import api_key_create, dead_letter_record, dead_letter_resolve
from inventory.models import Product, Reservation, StockLevel, StockMovement
from inventory.services import stock_reserve
from tests.conftest import TEST_ORIGIN
from tests.inventory.factories import VendorFactory
from tests.testapp.models import SecretNote

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def one_of_each(stocked, warehouse):
    """At least one row for every model the admin shows."""
    product = stocked(5)
    stock_reserve(product=product, warehouse=warehouse, quantity=Decimal(1), origin=TEST_ORIGIN)
    api_key_create(name="k", scopes=["read"])
    dead_letter_record(source="test", task_name="x.y", args=[1], error=RuntimeError("boom"))
    IdempotencyRecord.objects.create(
        owner="o",
        key="k",
        method="POST",
        path="/",
        fingerprint="f",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    VendorFactory()
    Group.objects.create(name="ops")
    IntervalSchedule.objects.create(every=10, period="seconds")
    CrontabSchedule.objects.create(minute="1")
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    SecretNote.objects.create(name="n", secret="s")


def test_every_model_admin_renders_changelist_search_and_change(staff, one_of_each):
    checked = 0
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert staff.get(changelist).status_code == 200, changelist
        if model_admin.search_fields:
            assert staff.get(changelist, {"q": "x"}).status_code == 200, changelist
        instance = model._default_manager.first()
        if instance is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[instance.pk])
            assert staff.get(change).status_code == 200, change
            checked += 1
        if model_admin.has_add_permission(type("R", (), {"user": User.objects.get()})()):
            add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
            assert staff.get(add).status_code == 200, add
    assert checked >= 10


def test_admin_creates_an_api_key_and_shows_it_once(staff):
    response = staff.post(
        reverse("admin:core_apikey_add"),
        {"name": "shop bridge", "scopes": ["read", "write"], "rate_limit_per_minute": ""},
        follow=True,
    )
    assert response.status_code == 200
    key = re.search(r"id='new-api-key'>([^<]+)<", response.content.decode()).group(1)
    api_key = ApiKey.objects.get(name="shop bridge")
    assert api_key.key_hash == api_key_hash(key)
    assert api_key.created_by == "user:ops"
    # The change page never shows it again.
    change = staff.get(reverse("admin:core_apikey_change", args=[api_key.pk]))
    assert key not in change.content.decode()


def test_admin_revokes_api_keys(staff):
    created = api_key_create(name="old", scopes=["read"])
    staff.post(
        reverse("admin:core_apikey_changelist"),
        {"action": "revoke_keys", "_selected_action": [created.api_key.pk]},
    )
    created.api_key.refresh_from_db()
    assert created.api_key.revoked_at is not None
    assert created.api_key.revoked_by == "user:ops"


def test_admin_adjusts_stock_through_the_service(staff, stocked):
    product = stocked(5)
    level = StockLevel.objects.get(product=product)
    url = reverse("admin:inventory_stocklevel_adjust", args=[level.pk])
    assert staff.get(url).status_code == 200

    response = staff.post(url, {"operation": "adjust", "quantity": "-2", "reason": "broken"})

    assert response.status_code == 302
    level.refresh_from_db()
    assert level.on_hand == Decimal(3)
    movement = StockMovement.objects.latest("id")
    assert (movement.source, movement.actor, movement.reason) == ("admin", "user:ops", "broken")


def test_admin_adjust_needs_a_reason_and_reports_refusals(staff, stocked):
    product = stocked(1)
    level = StockLevel.objects.get(product=product)
    url = reverse("admin:inventory_stocklevel_adjust", args=[level.pk])

    no_reason = staff.post(url, {"operation": "adjust", "quantity": "1", "reason": ""})
    too_much = staff.post(url, {"operation": "adjust", "quantity": "-5", "reason": "x"})

    assert no_reason.status_code == 200
    assert "This field is required" in no_reason.content.decode()
    assert "insufficient_stock" in too_much.content.decode()
    level.refresh_from_db()
    assert level.on_hand == Decimal(1)


def test_admin_sets_a_counted_quantity(staff, stocked):
    product = stocked(5)
    level = StockLevel.objects.get(product=product)
    url = reverse("admin:inventory_stocklevel_adjust", args=[level.pk])
    staff.post(url, {"operation": "set", "quantity": "9", "reason": "stocktake"})
    level.refresh_from_db()
    assert level.on_hand == Decimal(9)


def test_admin_changes_min_and_max_but_not_quantities(staff, stocked):
    product = stocked(5)
    level = StockLevel.objects.get(product=product)
    staff.post(
        reverse("admin:inventory_stocklevel_change", args=[level.pk]),
        {"min_stock": "2", "max_stock": "50", "on_hand": "999"},
    )
    level.refresh_from_db()
    assert (level.min_stock, level.max_stock, level.on_hand) == (
        Decimal(2),
        Decimal(50),
        Decimal(5),
    )


def test_admin_retries_and_resolves_dead_letters(staff, django_capture_on_commit_callbacks):
    retry_me = dead_letter_record(
        source="test", task_name="core.purge_idempotency_keys", error=RuntimeError("db down")
    )
    close_me = dead_letter_record(source="test", task_name="x.y", error=RuntimeError("bad data"))
    changelist = reverse("admin:core_deadletter_changelist")

    with django_capture_on_commit_callbacks(execute=True):
        staff.post(changelist, {"action": "retry_selected", "_selected_action": [retry_me.pk]})
    form = staff.post(changelist, {"action": "resolve_selected", "_selected_action": [close_me.pk]})
    assert b"Resolve dead letters" in form.content
    staff.post(
        changelist,
        {
            "action": "resolve_selected",
            "_selected_action": [close_me.pk],
            "apply": "1",
            "note": "fixed the source row",
        },
    )

    retry_me.refresh_from_db()
    close_me.refresh_from_db()
    assert retry_me.status == DeadLetter.Status.RETRIED
    assert close_me.status == DeadLetter.Status.RESOLVED
    assert close_me.note == "fixed the source row"
    assert close_me.resolved_by == "user:ops"


def test_admin_releases_reservations(staff, stocked, warehouse):
    product = stocked(5)
    reservation = stock_reserve(
        product=product, warehouse=warehouse, quantity=Decimal(2), origin=TEST_ORIGIN
    )
    staff.post(
        reverse("admin:inventory_reservation_changelist"),
        {"action": "release_selected", "_selected_action": [reservation.pk]},
    )
    reservation.refresh_from_db()
    assert reservation.status == Reservation.Status.RELEASED
    assert StockLevel.objects.get(product=product).reserved == 0


def test_admin_creates_and_edits_products_through_services(staff, vendor):
    add = staff.post(
        reverse("admin:inventory_product_add"),
        {
            "vendor": vendor.pk,
            "sku": "ADM-1",
            "name": "Made in admin",
            "attributes": "{}",
            "price_excl_vat": "10",
            "price_incl_vat": "11",
            "manage_stock": "on",
        },
    )
    assert add.status_code == 302, add.content.decode()[:2000]
    product = Product.objects.get(sku="ADM-1")
    assert product.vat_amount == Decimal("1.0000")


def test_admin_refuses_a_maximum_below_the_minimum(staff, stocked):
    level = StockLevel.objects.get(product=stocked(5))
    response = staff.post(
        reverse("admin:inventory_stocklevel_change", args=[level.pk]),
        {"min_stock": "10", "max_stock": "2"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "max_stock": ["The maximum must not be below the minimum."]
    }
    level.refresh_from_db()
    assert level.min_stock is None


def test_admin_resolve_reports_letters_already_resolved(staff):
    open_letter = dead_letter_record(source="t", task_name="a.b", args=[1], error=RuntimeError("x"))
    done = dead_letter_record(source="t", task_name="a.b", args=[2], error=RuntimeError("x"))
    dead_letter_resolve(dead_letter=done, actor="user:other", note="already handled")

    response = staff.post(
        reverse("admin:core_deadletter_changelist"),
        {
            "action": "resolve_selected",
            "_selected_action": [open_letter.pk, done.pk],
            "apply": "1",
            "note": "fixed",
        },
        follow=True,
    )

    assert response.status_code == 200
    text = response.content.decode()
    assert "Resolved 1 dead letter(s)." in text
    assert f"#{done.pk}: This dead letter is already resolved." in text
    open_letter.refresh_from_db()
    assert open_letter.status == DeadLetter.Status.RESOLVED
