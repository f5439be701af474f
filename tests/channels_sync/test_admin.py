import json
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from channels_sync.models import AllocationRule, Channel, ChannelListing, PushAttempt
from channels_sync.sandbox import ShopeeSandbox
from channels_sync.services.push import channel_push
from core.sandbox import SandboxServer
from tests.channels_sync.factories import (
    AllocationRuleFactory,
    ChannelFactory,
    ChannelListingFactory,
)
from tests.inventory.factories import VendorFactory, WarehouseFactory

ADMIN = "/admin/channels_sync"
PARTNER_KEY = "pk-admin-secret-0001"
ACCESS_TOKEN = "at-admin-secret-0002"
WEBHOOK_SECRET = "wh-admin-secret-0003"
# The read-only rules inline has no rows on a new channel.
NO_RULES = {
    "rules-TOTAL_FORMS": "0",
    "rules-INITIAL_FORMS": "0",
    "rules-MIN_NUM_FORMS": "0",
    "rules-MAX_NUM_FORMS": "1000",
}


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def shopee() -> Iterator[tuple[ShopeeSandbox, SandboxServer]]:
    app = ShopeeSandbox()
    with SandboxServer(app) as server:
        yield app, server


def _channel_form(warehouse, **fields) -> dict:
    return {
        "name": "Shopee ID",
        "type": "shopee",
        "vendor": str(warehouse.vendor_id),
        "base_url": "https://partner.shopeemobile.com/",
        "auth_base_url": "",
        "warehouses": [warehouse.pk],
        "new_credentials": json.dumps(
            {
                "partner_id": "2001887",
                "partner_key": PARTNER_KEY,
                "shop_id": "1",
                "access_token": ACCESS_TOKEN,
            }
        ),
        "new_webhook_secret": WEBHOOK_SECRET,
        "active": "on",
        "push_enabled": "on",
        "priority": "100",
        "rate_limit_per_second": "",
        "rate_limit_burst": "",
        "batch_size": "",
        "conflict_policy": "use_ours",
        **NO_RULES,
        **fields,
    }


def _secret_free(page) -> str:
    text = page.content.decode()
    for secret in (PARTNER_KEY, ACCESS_TOKEN, WEBHOOK_SECRET, "at-rotated"):
        assert secret not in text
    return text


@pytest.mark.django_db
def test_admin_channel_add_and_change_go_through_the_services(warehouse, store, staff_client):
    # given: a channel added in the console, secrets typed once
    added = staff_client.post(f"{ADMIN}/channel/add/", _channel_form(warehouse))
    assert added.status_code == 302, added.content.decode()[:3000]
    channel = Channel.objects.get()
    assert channel.credentials["partner_key"] == PARTNER_KEY
    assert channel.webhook_secret == WEBHOOK_SECRET
    assert channel.base_url == "https://partner.shopeemobile.com"
    assert list(channel.warehouses.values_list("code", flat=True)) == ["MAIN"]

    # the pages show the field names held, never a value
    page = staff_client.get(f"{ADMIN}/channel/{channel.pk}/change/")
    assert page.status_code == 200
    text = _secret_free(page)
    assert "access_token, partner_id, partner_key, shop_id" in text
    assert "New credentials (merged)" in text
    _secret_free(staff_client.get(f"{ADMIN}/channel/"))

    # when: new tokens are typed (merged) on a channel flagged for re-authorisation
    Channel.objects.filter(pk=channel.pk).update(needs_reauth=True, reauth_reason="refused")
    form = _channel_form(
        warehouse,
        warehouses=[warehouse.pk, store.pk],
        new_credentials=json.dumps({"access_token": "at-rotated"}),
        new_webhook_secret="",
        priority="7",
    )
    for fixed in ("type", "vendor"):
        del form[fixed]
    changed = staff_client.post(f"{ADMIN}/channel/{channel.pk}/change/", form)

    # then
    assert changed.status_code == 302, changed.content.decode()[:3000]
    channel.refresh_from_db()
    assert channel.credentials["access_token"] == "at-rotated"
    assert channel.credentials["partner_key"] == PARTNER_KEY
    assert channel.webhook_secret == WEBHOOK_SECRET  # left empty: kept
    assert (channel.needs_reauth, channel.priority) == (False, 7)
    assert sorted(channel.warehouses.values_list("code", flat=True)) == ["MAIN", "STORE"]
    _secret_free(staff_client.get(f"{ADMIN}/channel/{channel.pk}/change/"))


@pytest.mark.django_db
def test_admin_channel_form_refuses_bad_input(warehouse, staff_client):
    foreign = WarehouseFactory(vendor=VendorFactory(), code="FAR")
    cases = [
        ({"new_credentials": "{not json"}, "Not valid JSON"),
        ({"new_credentials": "[1, 2]"}, "must be a JSON object"),
        ({"new_credentials": ""}, "missing credential fields"),
        ({"new_credentials": json.dumps({"partner_id": "1"})}, "missing credential fields"),
        ({"batch_size": "51"}, "Shopee takes 1 to 50 listings per call."),
        ({"warehouses": [warehouse.pk, foreign.pk]}, "FAR"),
        ({"base_url": "ftp://x.example"}, "Enter a valid http(s) URL."),
    ]
    for fields, error in cases:
        page = staff_client.post(f"{ADMIN}/channel/add/", _channel_form(warehouse, **fields))
        assert page.status_code == 200, fields
        assert error in page.content.decode(), fields
        _secret_free(page)
    assert not Channel.objects.exists()


@pytest.mark.django_db
def test_admin_channel_dry_run_and_push_now(warehouse, stocked, staff_client, shopee):
    sandbox, server = shopee
    channel = ChannelFactory(
        name="Live shop",
        base_url=server.url,
        credentials=sandbox.credentials(),
        warehouses=[warehouse],
    )
    ChannelListingFactory(
        channel=channel, product=stocked(5), external_item_id="4001", external_variant_id="0"
    )
    sandbox.seed_listings([{"item_id": "4001", "model_id": "0"}])
    changelist = f"{ADMIN}/channel/"

    # when: a dry run
    dry = staff_client.post(
        changelist, {"action": "dry_run_now", "_selected_action": [channel.pk]}, follow=True
    )

    # then: counts, nothing sent
    assert "Dry run of Live shop: 1 planned, 1 would change, 0 unchanged." in dry.content.decode()
    assert sandbox.updates == []
    assert PushAttempt.objects.get().outcome == PushAttempt.Outcome.DRY_RUN

    # when: push now (tasks run eagerly in the tests)
    pushed = staff_client.post(
        changelist, {"action": "push_now", "_selected_action": [channel.pk]}, follow=True
    )

    # then
    assert "Push queued for 1 channel(s)." in pushed.content.decode()
    assert sandbox.quantity({"item_id": "4001", "model_id": "0"}) == 5
    page = staff_client.get(changelist)
    assert page.status_code == 200
    assert sandbox.credentials()["partner_key"] not in page.content.decode()


@pytest.mark.django_db
def test_admin_listing_pages_and_retry(warehouse, staff_client):
    channel = ChannelFactory(warehouses=[warehouse])
    failed = ChannelListingFactory(
        channel=channel,
        dirty=False,
        status=ChannelListing.Status.ERROR,
        last_error="Stock can not be less than the reserved stock",
        push_failures=8,
        external_sku="SELLER-SKU-1",
    )
    ok = ChannelListingFactory(channel=channel, dirty=False)
    changelist = f"{ADMIN}/channellisting/"

    errors = staff_client.get(changelist, {"status__exact": "error"})
    assert errors.status_code == 200
    assert "Stock can not be less than" in errors.content.decode()
    assert f"/channellisting/{ok.pk}/change/" not in errors.content.decode()
    found = staff_client.get(changelist, {"q": "SELLER-SKU-1"}).content.decode()
    assert f"/channellisting/{failed.pk}/change/" in found
    assert staff_client.get(f"{changelist}{failed.pk}/change/").status_code == 200

    # when
    staff_client.post(changelist, {"action": "retry_selected", "_selected_action": [failed.pk]})

    # then: a fresh start, marked for a push
    failed.refresh_from_db()
    assert (failed.status, failed.push_failures, failed.last_error) == ("ok", 0, "")
    assert failed.dirty is True

    staff_client.post(changelist, {"action": "exclude_selected", "_selected_action": [ok.pk]})
    ok.refresh_from_db()
    assert ok.status == ChannelListing.Status.EXCLUDED


@pytest.mark.django_db
def test_admin_rules_are_set_through_rule_set(warehouse, stocked, staff_client):
    channel = ChannelFactory(warehouses=[warehouse])
    product = stocked(10)
    listing = ChannelListingFactory(channel=channel, product=product, dirty=False)
    form = {
        "channel": channel.pk,
        "scope": "product",
        "product": product.pk,
        "listing": "",
        "strategy": "fixed",
        "parameter": "3",
        "buffer_units": "0",
        "buffer_percent": "0",
        "max_shown": "",
        "zero_below": "",
    }

    added = staff_client.post(f"{ADMIN}/allocationrule/add/", form)
    assert added.status_code == 302, added.content.decode()[:3000]
    rule = AllocationRule.objects.get()
    assert (rule.scope, rule.product_id, rule.parameter) == ("product", product.pk, 3)
    listing.refresh_from_db()
    assert listing.dirty is True  # rule_set marked the product's listings

    # adding a rule for the same target replaces it, as the API does
    again = staff_client.post(f"{ADMIN}/allocationrule/add/", {**form, "parameter": "4"})
    assert again.status_code == 302
    assert AllocationRule.objects.get().parameter == 4

    changed = staff_client.post(
        f"{ADMIN}/allocationrule/{rule.pk}/change/",
        {"strategy": "percentage", "parameter": "25", "buffer_units": "1", "buffer_percent": "0"},
    )
    assert changed.status_code == 302, changed.content.decode()[:3000]
    rule.refresh_from_db()
    assert (rule.strategy, rule.parameter, rule.buffer_units) == ("percentage", 25, 1)

    refused = staff_client.post(
        f"{ADMIN}/allocationrule/add/", {**form, "strategy": "percentage", "parameter": ""}
    )
    assert "A percentage rule needs a parameter of 0 to 100." in refused.content.decode()
    no_product = staff_client.post(f"{ADMIN}/allocationrule/add/", {**form, "product": ""})
    assert "A product rule names its product." in no_product.content.decode()
    assert AllocationRule.objects.count() == 1
    assert staff_client.get(f"{ADMIN}/allocationrule/").status_code == 200
    # the channel page shows its rules read-only
    page = staff_client.get(f"{ADMIN}/channel/{channel.pk}/change/")
    assert page.status_code == 200
    assert "percentage" in page.content.decode()


@pytest.mark.django_db
def test_admin_attempt_pages_render_read_only(warehouse, stocked, staff_client):
    channel = ChannelFactory(warehouses=[warehouse])
    ChannelListingFactory(channel=channel, product=stocked(2))
    AllocationRuleFactory(channel=channel)
    channel_push(channel_id=channel.pk, dry_run=True)
    attempt = PushAttempt.objects.get()

    listed = staff_client.get(f"{ADMIN}/pushattempt/", {"outcome__exact": "dry_run"})
    shown = staff_client.get(f"{ADMIN}/pushattempt/{attempt.pk}/change/")

    assert listed.status_code == 200
    assert f"/pushattempt/{attempt.pk}/change/" in listed.content.decode()
    assert shown.status_code == 200
    assert "&quot;quantity&quot;: 2" in shown.content.decode()
    assert 'name="_save"' not in shown.content.decode()


@pytest.mark.django_db
def test_admin_rule_form_shows_the_services_refusals_on_their_fields(warehouse, staff_client):
    channel = ChannelFactory(warehouses=[warehouse])
    form = {
        "channel": channel.pk,
        "scope": "channel",
        "product": "",
        "listing": "",
        "strategy": "all",
        "parameter": "",
        "buffer_units": "0",
        "buffer_percent": "150",
        "max_shown": "",
        "zero_below": "",
    }

    refused = staff_client.post(f"{ADMIN}/allocationrule/add/", form)

    assert refused.status_code == 200
    errors = refused.context["adminform"].form.errors
    assert errors == {"buffer_percent": ["buffer_percent must be 0 to 100."]}
    assert not AllocationRule.objects.exists()
