"""The conflict console: list and filters, bulk strategies, the resolve form, the links from the
listing and order consoles, and what staff without the change permission may do."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from channels_sync.models import Conflict
from inventory.services import stock_set
from orders.models import Order
from tests.channels_sync.conflict_fixtures import ORIGIN
from tests.inventory.factories import ProductFactory, WarehouseFactory

ADMIN = "/admin/channels_sync/conflict/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                "view_conflict",
                "change_conflict",
                "view_channellisting",
                "view_order",
            ]
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client() -> Client:
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_conflict"))
    client = Client()
    client.force_login(user)
    return client


def _action(client: Client, action: str, conflicts: list[Conflict]):
    return client.post(
        ADMIN,
        {"action": action, "_selected_action": [c.pk for c in conflicts], "index": "0"},
        follow=True,
    )


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_console_lists_figures_and_filters_by_age_and_kind(make_shop, staff_client):
    shop = make_shop(10)
    fresh = shop.mismatch(7)
    old = Conflict.objects.create(
        kind="duplicate_order",
        vendor=shop.channel.vendor,
        source="order",
        reference="OLD-1",
        detected_at=timezone.now() - timedelta(days=8),
    )

    page = staff_client.get(ADMIN)
    assert page.status_code == 200
    text = page.content.decode()
    assert "-3.000" in text  # the difference column
    assert "resolve…" in text

    def listed(query: str) -> set[int]:
        response = staff_client.get(ADMIN + query)
        assert response.status_code == 200
        return {c.pk for c in response.context["cl"].result_list}

    assert listed("?age=lt1h") == {fresh.pk}
    assert listed("?age=gt7d") == {old.pk}
    assert listed("?age=gt1d") == {old.pk}
    assert listed("?kind__exact=duplicate_order") == {old.pk}
    assert listed(f"?listing={shop.listing.pk}") == {fresh.pk}
    assert listed("?listing=abc") == set()
    assert listed(f"?listing={2**64}") == set()
    assert listed("?listing=0") == set()


@pytest.mark.parametrize(
    "query",
    [
        "?listing=²",
        "?order=①",
        "?order=٣",
        "?listing=１",  # noqa: RUF001 - a fullwidth digit, on purpose
        "?order=-1",
        "?order=",
        "?listing=1.0",
    ],
)
def test_console_linked_filters_take_hostile_values_without_a_500(make_shop, staff_client, query):
    make_shop(10).mismatch(7)
    response = staff_client.get(ADMIN + query)
    assert response.status_code == 200
    expected = 1 if query.endswith("=") else 0
    assert len(response.context["cl"].result_list) == expected


def test_console_bulk_use_ours_reports_resolved_and_refused(
    make_shop, staff_client, django_capture_on_commit_callbacks
):
    # given: two shops out of step; one conflict is an oversell (use theirs does not apply)
    first, second = make_shop(10), make_shop(5)
    a, b = first.mismatch(7), second.mismatch(2)
    oversell = Conflict.objects.create(
        kind="oversell", vendor=first.channel.vendor, source="order", reference="O-1"
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = _action(staff_client, "resolve_use_theirs", [a, b, oversell])

    messages = _messages(response)
    assert "2 conflict(s) resolved: use theirs (move our stock to theirs)." in messages
    assert any(
        m.startswith(f"1 not resolved: #{oversell.pk}: 'use_theirs' does not") for m in messages
    ), messages
    assert (first.on_hand(), second.on_hand()) == (7, 2)
    a.refresh_from_db()
    assert (a.status, a.resolved_by) == ("resolved", "user:ops")
    oversell.refresh_from_db()
    assert oversell.status == "open"


def test_console_bulk_ignore_and_use_ours(
    make_shop, staff_client, django_capture_on_commit_callbacks
):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    with django_capture_on_commit_callbacks(execute=True):
        _action(staff_client, "resolve_use_ours", [conflict])
    assert shop.shows() == 10
    response = _action(staff_client, "resolve_ignore", [conflict])
    assert any("not resolved" in m and "already" in m for m in _messages(response))


def test_console_resolve_form_sets_a_value(
    make_shop, staff_client, django_capture_on_commit_callbacks
):
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    url = f"{ADMIN}{conflict.pk}/resolve/"

    page = staff_client.get(url)
    assert page.status_code == 200
    assert b"resolve-conflict-form" in page.content
    choices = [value for value, _ in page.context["form"].fields["strategy"].choices]
    assert "set_value" in choices

    # a missing value is refused on the field, nothing changes
    refused = staff_client.post(url, {"strategy": "set_value", "value": "", "note": ""})
    assert refused.status_code == 200
    assert refused.context["form"].errors["value"] == ["set_value needs a value."]
    conflict.refresh_from_db()
    assert conflict.status == "open"

    with django_capture_on_commit_callbacks(execute=True):
        done = staff_client.post(url, {"strategy": "set_value", "value": "4", "note": "counted"})

    assert done.status_code == 302
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_value, conflict.note) == ("resolved", 4, "counted")
    assert (shop.on_hand(), shop.shows()) == (4, 4)
    history = staff_client.get(f"{ADMIN}{conflict.pk}/change/")
    assert history.status_code == 200
    assert b"counted" in history.content


def test_console_resolve_form_shows_a_stock_refusal(make_shop, staff_client, warehouse, vendor):
    # given: 10 pushed from two warehouses of 5; the channel shows 2 (8 must come out of one)
    second = WarehouseFactory(vendor=vendor, code="SECOND")
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(5), origin=ORIGIN)
    stock_set(product=product, warehouse=second, quantity=Decimal(5), origin=ORIGIN)
    shop = make_shop(10, product=product, warehouses=[warehouse, second])
    conflict = shop.mismatch(2)

    response = staff_client.post(f"{ADMIN}{conflict.pk}/resolve/", {"strategy": "use_theirs"})

    assert response.status_code == 200
    assert "Only 5.000" in str(response.context["form"].non_field_errors())
    conflict.refresh_from_db()
    assert conflict.status == "open"


def test_console_oversell_form_offers_only_its_strategies(make_shop, staff_client):
    shop = make_shop(10)
    oversell = Conflict.objects.create(
        kind="oversell", vendor=shop.channel.vendor, source="order", reference="O-2"
    )
    page = staff_client.get(f"{ADMIN}{oversell.pk}/resolve/")
    choices = [value for value, _ in page.context["form"].fields["strategy"].choices]
    assert choices == ["use_ours", "set_value", "ignore"]


def test_console_view_only_staff_can_neither_resolve_nor_act(make_shop, viewer_client):
    shop = make_shop(10)
    conflict = shop.mismatch(7)

    assert viewer_client.get(ADMIN).context["action_form"] is None
    assert viewer_client.get(f"{ADMIN}{conflict.pk}/resolve/").status_code == 403
    refused = viewer_client.post(f"{ADMIN}{conflict.pk}/resolve/", {"strategy": "ignore"})
    assert refused.status_code == 403
    _action(viewer_client, "resolve_ignore", [conflict])
    conflict.refresh_from_db()
    assert conflict.status == "open"
    assert viewer_client.get(f"{ADMIN}{conflict.pk}/change/").status_code == 200
    assert viewer_client.get(f"{ADMIN}add/").status_code == 403


def test_console_links_from_the_listing_and_the_order(make_shop, staff_client):
    from orders.services import order_apply_market
    from tests.orders.conftest import market_line, market_order

    # given: an order that oversold a listing
    shop = make_shop(1)
    order = order_apply_market(
        channel=shop.channel,
        order=market_order("paid", [market_line(shop.keys, 3)], external_id="LINK-1"),
        source="webhook",
    )
    conflict = Conflict.objects.get()
    assert conflict.listing == shop.listing

    # the listing console counts its open conflicts and links to them
    listings = staff_client.get("/admin/channels_sync/channellisting/")
    assert f"{ADMIN}?listing={shop.listing.pk}" in listings.content.decode()
    change = staff_client.get(f"/admin/channels_sync/channellisting/{shop.listing.pk}/change/")
    assert change.status_code == 200
    assert "1 open" in change.content.decode()

    # the order's page links to the conflicts naming it
    page = staff_client.get(f"/admin/orders/order/{order.pk}/change/")
    assert f"{ADMIN}?order={order.pk}" in page.content.decode()
    assert "1 (1 open)" in page.content.decode()
    found = staff_client.get(f"{ADMIN}?order={order.pk}")
    assert [c.pk for c in found.context["cl"].result_list] == [conflict.pk]
    assert Order.objects.count() == 1


def test_console_resolve_form_shows_a_stale_refusal(make_shop, staff_client):
    from channels_sync.models import ChannelListing

    shop = make_shop(10)
    conflict = shop.mismatch(7)
    ChannelListing.objects.filter(pk=shop.listing.pk).update(dirty=True)

    response = staff_client.post(f"{ADMIN}{conflict.pk}/resolve/", {"strategy": "use_theirs"})

    assert response.status_code == 200
    errors = str(response.context["form"].non_field_errors())
    assert "The listing changed since the conflict was seen; reconcile it again." in errors
    conflict.refresh_from_db()
    assert conflict.status == "open"
