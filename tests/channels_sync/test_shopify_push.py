"""Pushing to Shopify: compare-and-set refusals (stale), their conflicts and convergence."""

import json
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_sync.adapters import adapter_class
from channels_sync.models import ChannelListing, Conflict, ConflictPolicy, PushAttempt
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from inventory.services import Origin, stock_set
from tests.channels_sync.conflict_fixtures import POLLED
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
    "CHANNEL_PUSH_MAX_ATTEMPTS": 1000,
}


def _stock(product, warehouse, quantity: int) -> None:
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)


@pytest.fixture
def pushed(shopify, wire, warehouse):
    """A Shopify channel (policy given) whose one listing was pushed 10."""

    def make(policy: str, **fields):
        product = ProductFactory()
        _stock(product, warehouse, 10)
        channel = wire(
            shopify,
            "shopify",
            warehouses=[warehouse],
            products=[product],
            dirty=True,
            conflict_policy=policy,
            **fields,
        )
        report = channel_push(channel_id=channel.pk)
        assert report.pushed == 1, report
        listing = channel.listings.get()
        assert listing.last_pushed_quantity == 10
        keys = adapter_class("shopify").keys_from_listing(listing)
        assert shopify.app.quantity(keys) == 10
        return channel, listing, product, keys

    return make


def _sent(shopify) -> list[dict]:
    """The `quantities` rows of every mutation the sandbox received."""
    rows = []
    for request in shopify.app.requests:
        body = json.loads(request.body)
        if "inventorySetQuantities" in body["query"]:
            rows.append(body["variables"]["input"]["quantities"])
    return rows


def test_shopify_push_of_an_unknown_level_reads_it_first(shopify, wire, warehouse):
    product = ProductFactory()
    _stock(product, warehouse, 6)
    channel = wire(shopify, "shopify", warehouses=[warehouse], products=[product], dirty=True)

    report = channel_push(channel_id=channel.pk)

    assert (report.pushed, report.calls, report.stale) == (1, 1, 0)
    ((row,),) = _sent(shopify)
    assert (row["quantity"], row["changeFromQuantity"]) == (6, 0)  # the sandbox held 0
    key = PushAttempt.objects.get(channel=channel).idempotency_key
    assert len(key) == 64  # the attempt row's own key; the call carries a UUID made from it


def test_shopify_stale_push_under_use_ours_opens_a_conflict_and_converges(
    shopify, pushed, warehouse, django_capture_on_commit_callbacks
):
    # given a listing pushed 10, edited to 4 in the Shopify admin, and our stock now 12
    channel, listing, product, keys = pushed(ConflictPolicy.USE_OURS, orders_cursor=POLLED)
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)

    # when the push sends 12 expecting 10; the policy acts after the commit and the push
    # it queues runs
    with django_capture_on_commit_callbacks(execute=True):
        report = channel_push(channel_id=channel.pk)

    # then the refusal used no attempt and opened a conflict (ours: what the push tried to
    # show) that the policy resolved
    assert (report.stale, report.pushed, report.failed, report.dead_lettered) == (1, 0, 0, 0)
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.kind, conflict.source) == (Conflict.Kind.STOCK_MISMATCH, "push")
    assert (conflict.ours, conflict.theirs) == (Decimal(12), Decimal(4))
    assert conflict.status == Conflict.Status.AUTO_RESOLVED
    assert conflict.strategy == ConflictPolicy.USE_OURS
    assert not DeadLetter.objects.exists()
    # and the next push sent ours, expecting what the shop showed, and converged
    refused, accepted = _sent(shopify)[-2:]
    assert refused[0]["changeFromQuantity"] == 10
    assert accepted[0] == {
        "inventoryItemId": f"gid://shopify/InventoryItem/{keys['inventory_item_id']}",
        "locationId": f"gid://shopify/Location/{keys['location_id']}",
        "quantity": 12,
        "changeFromQuantity": 4,
    }
    assert shopify.app.quantity(keys) == 12
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.last_observed_quantity) == (12, 4)
    assert listing.channel_quantity == 12
    assert (listing.dirty, listing.push_failures, listing.push_stale_streak) == (False, 0, 0)
    assert channel_push(channel_id=channel.pk).calls == 0


def test_shopify_stale_push_under_manual_records_then_sends_ours_expecting_the_observed(
    shopify, pushed, warehouse
):
    channel, listing, product, keys = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)

    report = channel_push(channel_id=channel.pk)

    assert report.stale == 1
    conflict = Conflict.objects.get(listing=listing)
    assert conflict.status == Conflict.Status.OPEN
    assert (conflict.ours, conflict.theirs) == (Decimal(12), Decimal(4))
    listing.refresh_from_db()
    # The observation is recorded; the change stays pending (dirty), nothing taken as shown.
    assert (listing.dirty, listing.last_pushed_quantity, listing.last_observed_quantity) == (
        True,
        None,
        4,
    )
    assert listing.channel_quantity == 4
    assert listing.next_push_at is None
    # The next push sends ours expecting the observed figure; the conflict stays for staff.
    again = channel_push(channel_id=channel.pk)
    assert (again.calls, again.pushed, again.stale) == (1, 1, 0)
    assert shopify.app.quantity(keys) == 12
    conflict.refresh_from_db()
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(12), Decimal(4))


def test_shopify_stale_again_and_again_backs_off_and_never_dead_letters(shopify, pushed, warehouse):
    # given a shop whose level keeps moving under `use_ours`; the policy's resolution is not
    # run here (no commit callbacks)
    channel, listing, product, keys = pushed(ConflictPolicy.USE_OURS)
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)
    channel_push(channel_id=channel.pk)  # first stale: no hold

    # when our stock changes again and the shop moved again meanwhile
    shopify.app.stock_set_external(keys, 5, notify=False)
    _stock(product, warehouse, 13)
    before = timezone.now()
    report = channel_push(channel_id=channel.pk)

    # then the second stale in a row holds the listing back like a retry
    assert report.stale == 1
    listing.refresh_from_db()
    assert listing.push_stale_streak == 2
    assert listing.next_push_at is not None
    assert listing.next_push_at > before
    assert listing.push_failures == 0
    _stock(product, warehouse, 14)
    calls = len(shopify.app.requests)
    assert channel_push(channel_id=channel.pk).calls == 0  # held back: no call
    assert len(shopify.app.requests) == calls
    conflict = Conflict.objects.get(listing=listing)  # refreshed, never doubled
    assert (conflict.ours, conflict.theirs) == (Decimal(13), Decimal(5))
    assert not DeadLetter.objects.exists()
    assert ChannelListing.objects.get(pk=listing.pk).status == ChannelListing.Status.OK


def test_shopify_stale_showing_the_desired_quantity_is_recorded_as_pushed(
    shopify, pushed, warehouse
):
    # given our earlier write of 12 that landed although its call failed
    channel, listing, product, keys = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 12, notify=False)
    _stock(product, warehouse, 12)

    report = channel_push(channel_id=channel.pk)

    assert (report.stale, report.pushed) == (0, 1)
    assert not Conflict.objects.exists()
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity, listing.dirty) == (
        12,
        12,
        False,
    )


def test_shopify_stale_against_a_read_back_is_recorded_and_retried_with_it(
    shopify, wire, warehouse
):
    # given a listing never pushed, last read back at 3, that the shop now shows as 5
    product = ProductFactory()
    _stock(product, warehouse, 8)
    channel = wire(shopify, "shopify", warehouses=[warehouse], products=[product], dirty=True)
    listing = channel.listings.get()
    ChannelListing.objects.filter(pk=listing.pk).update(
        last_observed_quantity=3, channel_quantity=3
    )
    keys = adapter_class("shopify").keys_from_listing(listing)
    shopify.app.stock_set_external(keys, 5, notify=False)

    first = channel_push(channel_id=channel.pk)

    assert first.stale == 1
    assert not Conflict.objects.exists()  # nothing of ours to compare with
    listing.refresh_from_db()
    assert (listing.dirty, listing.last_observed_quantity, listing.last_pushed_quantity) == (
        True,
        5,
        None,
    )
    assert listing.channel_quantity == 5

    second = channel_push(channel_id=channel.pk)

    assert second.pushed == 1
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 5
    assert shopify.app.quantity(keys) == 8


@override_settings(**FAST)
def test_shopify_push_converges_under_errors_and_throttling(shopify, wire, warehouse):
    # given 20 listings on a shop that fails a third of its calls, throttles by rate and
    # has a small cost bucket
    products = []
    for n in range(20):
        product = ProductFactory()
        _stock(product, warehouse, 3 + n)
        products.append(product)
    channel = wire(
        shopify, "shopify", warehouses=[warehouse], products=products, dirty=True, batch_size=5
    )
    shopify.app.configure(
        error_ratio=0.3, throttle_per_second=4, seed=7, cost_maximum=30, cost_restore_rate=400
    )

    # when the push runs until nothing is left dirty
    for _ in range(60):
        channel_push(channel_id=channel.pk, respect_backoff=False)
        if not ChannelListing.objects.filter(channel=channel, dirty=True).exists():
            break

    # then the shop shows every desired quantity, and faults did happen
    cls = adapter_class("shopify")
    shown = {
        listing.product_id: shopify.app.quantity(cls.keys_from_listing(listing))
        for listing in channel.listings.all()
    }
    assert shown == {product.pk: 3 + n for n, product in enumerate(products)}
    counts = shopify.app.counts
    assert counts["errors"] > 0
    assert counts["throttled"] + counts["read_throttled"] > 0
    assert not DeadLetter.objects.exists()
    assert not Conflict.objects.exists()
