"""Shopify's compare-and-set in the push: what it expects after a failed call, what a stale
refusal does to our stock and to the conflict, what is sent after it, and rows not
applied because another row of their call was refused."""

import json
from datetime import timedelta
from decimal import Decimal
from importlib import import_module

import pytest
from django.apps import apps
from django.test import override_settings
from django.utils import timezone

from channels_sync.adapters import CallResult, ItemResult, Outcome, adapter_class
from channels_sync.adapters.shopify import ShopifyAdapter
from channels_sync.models import (
    ChannelListing,
    Conflict,
    ConflictEvent,
    ConflictPolicy,
    PushAttempt,
)
from channels_sync.services.channels import channel_update
from channels_sync.services.conflict_resolution import conflict_resolve
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import channel_reconcile, listing_observe
from core.sandbox import Fault
from inventory.models import StockLevel
from inventory.services import Origin, stock_adjust, stock_set
from tests.channels_sync.conflict_fixtures import POLLED
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
    "CHANNEL_PUSH_MAX_ATTEMPTS": 1000,
}
CLS = adapter_class("shopify")


def _stock(product, warehouse, quantity: int) -> None:
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)


def _on_hand(product, warehouse) -> Decimal:
    return StockLevel.objects.get(product=product, warehouse=warehouse).on_hand


def _sent(shopify) -> list[list[dict]]:
    """The `quantities` rows of every mutation the sandbox received, in order."""
    rows = []
    for request in shopify.app.requests:
        body = json.loads(request.body)
        if "inventorySetQuantities" in body["query"]:
            rows.append(body["variables"]["input"]["quantities"])
    return rows


@pytest.fixture
def pushed(shopify, wire, warehouse):
    """A Shopify channel (policy given) whose listings were each pushed 10."""

    def make(policy: str, count: int = 1, **fields):
        products = [ProductFactory() for _ in range(count)]
        for product in products:
            _stock(product, warehouse, 10)
        channel = wire(
            shopify,
            "shopify",
            warehouses=[warehouse],
            products=products,
            dirty=True,
            conflict_policy=policy,
            **fields,
        )
        assert channel_push(channel_id=channel.pk).pushed == count
        listings = list(channel.listings.order_by("pk"))
        keys = [CLS.keys_from_listing(listing) for listing in listings]
        assert [shopify.app.quantity(k) for k in keys] == [10] * count
        return channel, listings, products, keys

    return make


# --- the expected quantity survives a failed call -------------------------------------------


@override_settings(**FAST)
def test_retry_after_a_failed_call_expects_the_last_known_quantity(shopify, pushed, warehouse):
    # given a listing pushed 10 whose next call (12) failed with a 503
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)
    shopify.app.inject(Fault(status=503))
    failed = channel_push(channel_id=channel.pk)
    assert (failed.failed, failed.pushed) == (1, 0)

    # when the merchant edits the level in Shopify before the retry
    shopify.app.stock_set_external(keys, 4, notify=False)
    retry = channel_push(channel_id=channel.pk, respect_backoff=False)

    # then the retry still expects 10: refused, the edit stands and a conflict shows it
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 10
    assert (retry.stale, retry.pushed) == (1, 0)
    assert shopify.app.quantity(keys) == 4
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(12), Decimal(4))
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity, listing.dirty) == (
        None,
        4,
        True,
    )


@override_settings(**FAST)
def test_a_failed_write_that_landed_is_recorded_as_pushed(shopify, pushed, warehouse):
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)
    shopify.app.inject(Fault(status=503))
    channel_push(channel_id=channel.pk)
    shopify.app.stock_set_external(keys, 12, notify=False)  # the write landed after all

    report = channel_push(channel_id=channel.pk, respect_backoff=False)

    assert (report.stale, report.pushed) == (0, 1)
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 10
    assert not Conflict.objects.exists()
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity, listing.dirty) == (
        12,
        12,
        False,
    )


@override_settings(**FAST)
def test_our_own_timed_out_write_that_landed_is_no_conflict_after_stock_moved(
    shopify, pushed, warehouse
):
    # given a listing pushed 10 whose push of 12 got a 503 but landed
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)
    shopify.app.inject(Fault(status=503))
    failed = channel_push(channel_id=channel.pk)
    assert (failed.failed, failed.pushed) == (1, 0)
    shopify.app.stock_set_external(keys, 12, notify=False)  # the write landed after all

    # when our stock goes to 15 before the retry, which expects 10
    _stock(product, warehouse, 15)
    retry = channel_push(channel_id=channel.pk, respect_backoff=False)

    # then the refusal shows our own 12: recorded as shown, no conflict, sent again at once
    assert _sent(shopify)[-1][0] == {
        "inventoryItemId": f"gid://shopify/InventoryItem/{keys['inventory_item_id']}",
        "locationId": f"gid://shopify/Location/{keys['location_id']}",
        "quantity": 15,
        "changeFromQuantity": 10,
    }
    assert (retry.stale, retry.requeued, retry.pushed) == (0, 1, 0)
    assert retry.requeue_after is not None
    assert not Conflict.objects.exists()
    listing.refresh_from_db()
    assert (listing.channel_quantity, listing.dirty, listing.push_stale_streak) == (12, True, 0)
    assert (listing.next_push_at, listing.last_error) == (None, "")

    again = channel_push(channel_id=channel.pk)

    assert (again.pushed, again.stale) == (1, 0)
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 12
    assert shopify.app.quantity(keys) == 15
    assert not Conflict.objects.exists()
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity, listing.dirty) == (
        15,
        15,
        False,
    )


@override_settings(**FAST)
def test_a_quantity_sent_before_the_last_confirmed_push_is_no_own_write(shopify, pushed, warehouse):
    # given a listing pushed 10 (confirmed), then a push of 12 that failed with a 503
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)
    shopify.app.inject(Fault(status=503))
    channel_push(channel_id=channel.pk)
    _stock(product, warehouse, 10)
    assert channel_push(channel_id=channel.pk, respect_backoff=False).pushed == 1
    # when the merchant sets 12 by hand (the failed call is older than the confirmed push)
    shopify.app.stock_set_external(keys, 12, notify=False)
    _stock(product, warehouse, 11)

    report = channel_push(channel_id=channel.pk)

    # then it is a stale refusal of someone else's figure: the conflict opens
    assert (report.stale, report.requeued) == (1, 0)
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.ours, conflict.theirs) == (Decimal(11), Decimal(12))


@override_settings(**FAST)
def test_an_absurd_stale_read_back_is_a_retry_not_a_conflict(shopify, pushed, warehouse):
    # given a listing pushed 10 whose level the shop now answers as 10^12
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 10**12, notify=False)
    _stock(product, warehouse, 12)

    report = channel_push(channel_id=channel.pk)

    # then the refusal is a retry of the row (an attempt used): nothing recorded, no conflict
    assert (report.stale, report.failed, report.pushed) == (0, 1, 0)
    assert not Conflict.objects.exists()
    listing.refresh_from_db()
    assert (listing.channel_quantity, listing.last_observed_quantity) == (10, None)
    assert (listing.dirty, listing.push_failures) == (True, 1)
    assert listing.next_push_at is not None
    assert "level not read back" in listing.last_error

    # and the next sweep does the same, without failing the run
    again = channel_push(channel_id=channel.pk, respect_backoff=False)
    assert (again.stale, again.failed, again.stopped) == (0, 1, "")
    listing.refresh_from_db()
    assert listing.push_failures == 2


def test_a_confirmed_push_keeps_an_observation_recorded_during_its_call(
    shopify, pushed, warehouse, monkeypatch
):
    # given a listing pushed 10; its push of 12 lands, then a sale in the shop (7) is
    # reported by a stock webhook processed before the push's answer is written
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)
    original = ShopifyAdapter.push_stock

    def landed_then_sold(self, updates, *, idempotency_key=""):
        result = original(self, updates, idempotency_key=idempotency_key)
        shopify.app.stock_set_external(keys, 7, notify=False)
        listing_observe(
            listing=listing.pk,
            quantity=7,
            observed_at=timezone.now(),
            source=Conflict.Source.WEBHOOK,
        )
        return result

    monkeypatch.setattr(ShopifyAdapter, "push_stock", landed_then_sold)
    assert channel_push(channel_id=channel.pk).pushed == 1
    monkeypatch.setattr(ShopifyAdapter, "push_stock", original)

    # then the push is recorded, and the channel's figure stays the newer observation
    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity, listing.dirty) == (
        12,
        7,
        False,
    )
    assert listing.last_pushed_at >= listing.last_observed_at

    # and the next push expects it: no stale refusal
    _stock(product, warehouse, 13)
    report = channel_push(channel_id=channel.pk)
    assert (report.pushed, report.stale) == (1, 0)
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 7
    assert shopify.app.quantity(keys) == 13


def test_a_reconciliation_read_becomes_the_expected_quantity(shopify, pushed, warehouse):
    # given a listing pushed 10, edited to 4 in Shopify, found by the reconciliation
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 4, notify=False)

    report = channel_reconcile(channel_id=channel.pk, settle_seconds=0)

    assert report.conflicts_opened == 1
    listing.refresh_from_db()
    assert (listing.channel_quantity, listing.last_observed_quantity) == (4, 4)
    assert listing.last_pushed_quantity == 10  # its own meaning: what we last pushed

    # when our stock falls to 3: a lowering goes at once, expecting what was read
    _stock(product, warehouse, 3)
    lowered = channel_push(channel_id=channel.pk)

    assert (lowered.pushed, lowered.stale) == (1, 0)
    assert _sent(shopify)[-1][0] == {
        "inventoryItemId": f"gid://shopify/InventoryItem/{keys['inventory_item_id']}",
        "locationId": f"gid://shopify/Location/{keys['location_id']}",
        "quantity": 3,
        "changeFromQuantity": 4,
    }
    # and an increase goes too, expecting what the lowering left
    _stock(product, warehouse, 20)
    raised = channel_push(channel_id=channel.pk)
    assert (raised.pushed, raised.stale) == (1, 0)
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 3
    assert shopify.app.quantity(keys) == 20


def test_an_increase_over_an_open_conflict_lands_and_use_theirs_then_applies(
    shopify, pushed, warehouse
):
    # given a listing pushed 10, set to 4 by the merchant, the conflict opened by the
    # reconciliation (manual policy)
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 4, notify=False)
    assert channel_reconcile(channel_id=channel.pk, settle_seconds=0).conflicts_opened == 1
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.ours, conflict.theirs) == (Decimal(10), Decimal(4))

    # when our stock goes to 20
    _stock(product, warehouse, 20)
    report = channel_push(channel_id=channel.pk)

    # then 20 is sent expecting 4 and lands; the conflict stays open with ours = 20
    assert (report.calls, report.pushed, report.stale) == (1, 1, 0)
    assert _sent(shopify)[-1][0]["quantity"] == 20
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 4
    assert shopify.app.quantity(keys) == 20
    listing.refresh_from_db()
    assert (listing.dirty, listing.last_pushed_quantity, listing.channel_quantity) == (
        False,
        20,
        20,
    )
    conflict.refresh_from_db()
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(20), Decimal(4))

    # and a person's use_theirs moves our stock to the merchant's 4, which is pushed
    conflict_resolve(conflict_id=conflict.pk, strategy="use_theirs", actor="staff")
    assert _on_hand(product, warehouse) == Decimal(4)
    after = channel_push(channel_id=channel.pk)
    assert (after.pushed, after.stale) == (1, 0)
    assert _sent(shopify)[-1][0]["quantity"] == 4
    assert shopify.app.quantity(keys) == 4
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_value) == ("resolved", Decimal(4))


def test_channel_quantity_migration_fills_from_the_newer_of_push_and_read_back(pushed):
    migration = import_module("channels_sync.migrations.0007_listing_channel_quantity")
    channel, listings, _products, _keys = pushed(ConflictPolicy.MANUAL, count=4)
    pushed_one, observed_one, unknown, read_later = listings
    now = timezone.now()
    ChannelListing.objects.filter(pk=pushed_one.pk).update(
        last_pushed_quantity=7,
        last_pushed_at=now,
        last_observed_quantity=5,
        last_observed_at=now - timedelta(hours=1),
        channel_quantity=None,
    )
    ChannelListing.objects.filter(pk=read_later.pk).update(
        last_pushed_quantity=7,
        last_pushed_at=now - timedelta(hours=1),
        last_observed_quantity=4,
        last_observed_at=now,
        channel_quantity=None,
    )
    ChannelListing.objects.filter(pk=observed_one.pk).update(
        last_pushed_quantity=None, last_observed_quantity=5, channel_quantity=None
    )
    ChannelListing.objects.filter(pk=unknown.pk).update(
        last_pushed_quantity=None, last_observed_quantity=None, channel_quantity=None
    )

    migration.channel_quantity_fill(apps, None)

    filled = dict(channel.listings.values_list("pk", "channel_quantity"))
    assert filled == {pushed_one.pk: 7, observed_one.pk: 5, unknown.pk: None, read_later.pk: 4}


# --- a stale refusal never moves our stock by itself -------------------------------------------


def test_stale_refusal_of_our_own_recorded_sale_takes_nothing_twice(
    shopify, pushed, warehouse, django_capture_on_commit_callbacks
):
    # given a listing pushed 10 under `minimum`; a Shopify sale of 1 (the shop shows 9)
    # recorded here, and a sale of 2 elsewhere: ours 7
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MINIMUM, orders_cursor=POLLED)
    shopify.app.stock_set_external(keys, 9, notify=False)
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(-1), origin=ORIGIN)
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(-2), origin=ORIGIN)

    # when the push sends 7 expecting 10 and is refused (9 observed); the policy acts after
    # the commit and the push it queues runs
    with django_capture_on_commit_callbacks(execute=True):
        report = channel_push(channel_id=channel.pk)

    # then the conflict's figures are true (ours 7, theirs 9): minimum keeps ours, our
    # stock is untouched, and the shop shows 7
    assert report.stale == 1
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.ours, conflict.theirs) == (Decimal(7), Decimal(9))
    assert (conflict.status, conflict.details["resolution"]["applied"]) == (
        Conflict.Status.AUTO_RESOLVED,
        "use_ours",
    )
    assert _on_hand(product, warehouse) == Decimal(7)
    assert _sent(shopify)[-1][0]["quantity"] == 7
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 9
    assert shopify.app.quantity(keys) == 7
    listing.refresh_from_db()
    assert (listing.dirty, listing.last_pushed_quantity, listing.channel_quantity) == (
        False,
        7,
        7,
    )


def test_stale_refusal_under_a_stock_moving_policy_is_refused_then_ours_is_sent(
    shopify, pushed, warehouse, django_capture_on_commit_callbacks
):
    # given a listing pushed 10, edited to 4 in Shopify, our stock now 12, policy use_theirs
    channel, (listing,), (product,), (keys,) = pushed(
        ConflictPolicy.USE_THEIRS, orders_cursor=POLLED
    )
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)

    with django_capture_on_commit_callbacks(execute=True):
        report = channel_push(channel_id=channel.pk)

    # then the policy's stock move is refused while the change is pending, nothing moved
    assert report.stale == 1
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(12), Decimal(4))
    failed = conflict.events.get(action=ConflictEvent.Action.FAILED)
    assert failed.note.startswith("conflict_stale")
    assert _on_hand(product, warehouse) == Decimal(12)
    listing.refresh_from_db()
    assert (listing.dirty, listing.channel_quantity) == (True, 4)
    # and the next push sends ours expecting the merchant's figure; the conflict (figures
    # unchanged, its automatic try failed with them) waits for a person
    with django_capture_on_commit_callbacks(execute=True):
        again = channel_push(channel_id=channel.pk)
    assert (again.calls, again.pushed) == (1, 1)
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 4
    assert shopify.app.quantity(keys) == 12
    conflict.refresh_from_db()
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(12), Decimal(4))
    assert _on_hand(product, warehouse) == Decimal(12)


# --- what the push sends after a stale refusal ------------------------------------------------


def test_under_manual_the_next_push_sends_ours_expecting_the_observed(shopify, pushed, warehouse):
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)
    assert channel_push(channel_id=channel.pk).stale == 1

    # when our stock falls to 0 (nothing left to sell)
    _stock(product, warehouse, 0)
    lowered = channel_push(channel_id=channel.pk)

    # then 0 goes out at once, expecting what the shop was seen to show
    assert (lowered.pushed, lowered.stale) == (1, 0)
    assert _sent(shopify)[-1][0]["quantity"] == 0
    assert _sent(shopify)[-1][0]["changeFromQuantity"] == 4
    assert shopify.app.quantity(keys) == 0
    listing.refresh_from_db()
    assert (listing.dirty, listing.last_pushed_quantity, listing.push_stale_streak) == (
        False,
        0,
        0,
    )
    # the conflict stays for a person (or the reconciliation, which sees the shop agree)
    conflict = Conflict.objects.get(listing=listing)
    assert (conflict.status, conflict.ours, conflict.theirs) == ("open", Decimal(0), Decimal(4))


def test_after_a_stale_refusal_the_reconciliation_compares_the_listing_again(
    shopify, pushed, warehouse
):
    channel, (listing,), (product,), (keys,) = pushed(ConflictPolicy.MANUAL)
    shopify.app.stock_set_external(keys, 4, notify=False)
    _stock(product, warehouse, 12)
    assert channel_push(channel_id=channel.pk).stale == 1
    assert channel_push(channel_id=channel.pk).pushed == 1  # 12, expecting 4

    report = channel_reconcile(channel_id=channel.pk, settle_seconds=0)

    # the shop shows ours: the conflict closes as agreed
    assert (report.conflicts_opened, report.conflicts_closed) == (0, 1)
    assert Conflict.objects.get(listing=listing).status == Conflict.Status.AUTO_RESOLVED


def test_a_channel_without_compare_and_set_leaves_its_conflicts_figures(shopee, wire, warehouse):
    product = ProductFactory()
    _stock(product, warehouse, 5)
    channel = wire(
        shopee,
        "shopee",
        warehouses=[warehouse],
        products=[product],
        dirty=True,
        conflict_policy=ConflictPolicy.MANUAL,
    )
    listing = channel.listings.get()
    Conflict.objects.create(
        kind=Conflict.Kind.STOCK_MISMATCH,
        vendor=channel.vendor,
        channel=channel,
        listing=listing,
        product=product,
        source=Conflict.Source.RECONCILIATION,
        ours=Decimal(3),
        theirs=Decimal(1),
    )

    report = channel_push(channel_id=channel.pk)

    assert report.pushed == 1
    assert Conflict.objects.get(listing=listing).ours == Decimal(3)


# --- rows not applied because another row of the call was refused ------------------------------


def test_rows_not_applied_for_another_rows_refusal_use_no_attempt(shopify, pushed, warehouse):
    # given two listings pushed 10 in one call; the first edited to 4 in Shopify
    channel, listings, products, keys = pushed(ConflictPolicy.MANUAL, count=2)
    shopify.app.stock_set_external(keys[0], 4, notify=False)
    _stock(products[0], warehouse, 12)
    _stock(products[1], warehouse, 11)

    report = channel_push(channel_id=channel.pk)

    # then the refused row is stale and the other one, not applied, is sent again for free
    assert (report.stale, report.requeued, report.failed, report.pushed) == (1, 1, 0, 0)
    assert report.requeue_after is not None
    other = ChannelListing.objects.get(pk=listings[1].pk)
    assert (other.dirty, other.push_failures, other.next_push_at) == (True, 0, None)
    row = PushAttempt.objects.filter(channel=channel).order_by("-pk").first()
    assert [item.get("ok", True) for item in row.items] == [False, False]

    again = channel_push(channel_id=channel.pk)

    # the stale row goes expecting what was observed, the other with it, first attempt
    assert (again.pushed, again.stale, again.requeued) == (2, 0, 0)
    assert [shopify.app.quantity(k) for k in keys] == [12, 11]
    last = PushAttempt.objects.filter(channel=channel).order_by("-pk").first()
    assert (last.attempt, last.item_count) == (1, 2)


def test_a_call_whose_every_row_asks_to_be_requeued_counts_as_failed(
    shopify, pushed, warehouse, monkeypatch
):
    channel, (listing,), (product,), _keys = pushed(ConflictPolicy.MANUAL)
    _stock(product, warehouse, 12)

    def nothing_refused(self, updates, *, idempotency_key=""):
        items = [
            ItemResult(listing_id=u.listing_id, ok=False, retryable=True, requeue=True, error="x")
            for u in updates
        ]
        return CallResult(outcome=Outcome.PARTIAL, items=items)

    monkeypatch.setattr(ShopifyAdapter, "push_stock", nothing_refused)

    report = channel_push(channel_id=channel.pk)

    assert (report.requeued, report.failed) == (0, 1)
    listing.refresh_from_db()
    assert listing.push_failures == 1
    assert listing.next_push_at is not None


def test_an_observation_read_before_our_last_push_is_not_taken_as_shown(pushed):
    # given a listing whose push of 10 was confirmed after a read began
    _channel, (listing,), _products, _keys = pushed(ConflictPolicy.MANUAL)
    listing.refresh_from_db()
    before = listing.last_pushed_at - timedelta(seconds=1)

    listing_observe(
        listing=listing.pk,
        quantity=3,
        observed_at=timezone.now(),
        source=Conflict.Source.RECONCILIATION,
        read_started=before,
    )

    # then it is recorded as an observation, but the push's figure is the newer knowledge
    listing.refresh_from_db()
    assert (listing.last_observed_quantity, listing.channel_quantity) == (3, 10)

    # and a read begun after the push is what the channel shows
    listing_observe(
        listing=listing.pk,
        quantity=4,
        observed_at=timezone.now(),
        source=Conflict.Source.RECONCILIATION,
    )
    listing.refresh_from_db()
    assert (listing.last_observed_quantity, listing.channel_quantity) == (4, 4)


def test_another_shop_behind_the_channel_forgets_what_it_showed(pushed):
    channel, (listing,), _products, _keys = pushed(ConflictPolicy.MANUAL)

    channel_update(channel=channel, actor="staff", base_url="https://other-shop.example")

    listing.refresh_from_db()
    assert (listing.last_pushed_quantity, listing.channel_quantity) == (None, None)
