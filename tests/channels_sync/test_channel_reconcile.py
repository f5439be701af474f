"""Channel-side reconciliation against the marketplace sandboxes served over HTTP."""

import signal
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from channels_sync import tasks
from channels_sync.adapters import adapter_class
from channels_sync.models import Channel, ChannelListing, Conflict, ConflictEvent, ConflictPolicy
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import (
    RUN_LOCK_KEY,
    channel_reconcile,
    listing_observe,
)
from channels_sync.services.run_lock import RunLock
from core.sandbox import Fault
from inventory.services import Origin, stock_set
from tests.channels_sync.conftest import listing_keys
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")
KINDS = ["shopee", "lazada", "tiktok", "tokopedia"]
FAST = {"CHANNEL_THROTTLE_WAIT_SECONDS": 0.05, "CHANNEL_RECONCILE_SETTLE_SECONDS": 0}


def _pushed_channel(server, wire, warehouse, kind, quantities, **fields) -> Channel:
    """A channel whose listings were pushed (the sandbox shows `quantities`)."""
    products = []
    for quantity in quantities:
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        products.append(product)
    channel = wire(server, kind, warehouses=[warehouse], products=products, dirty=True, **fields)
    assert channel_push(channel_id=channel.pk).pushed == len(quantities)
    return channel


def _listing(channel, n) -> ChannelListing:
    cls = adapter_class(channel.type)
    columns = cls.keys_to_columns(cls.keys_clean(listing_keys(channel.type, n)))
    return channel.listings.get(
        external_item_id=columns["external_item_id"],
        external_variant_id=columns["external_variant_id"],
    )


@pytest.mark.parametrize("kind", KINDS)
@override_settings(**FAST)
def test_reconcile_clean_channel_opens_no_conflict(request, wire, warehouse, kind):
    server = request.getfixturevalue(kind)
    channel = _pushed_channel(server, wire, warehouse, kind, [5, 0, 7])

    report = channel_reconcile(channel_id=channel.pk, trigger="test")

    assert (report.read, report.matching, report.mismatched) == (3, 3, 0), report
    assert report.errors == []
    assert report.stopped == ""
    assert not Conflict.objects.exists()
    observed = dict(channel.listings.values_list("last_pushed_quantity", "last_observed_quantity"))
    assert observed == {5: 5, 0: 0, 7: 7}
    channel.refresh_from_db()
    assert channel.reconciled_at is not None


@pytest.mark.parametrize("kind", KINDS)
@override_settings(**FAST)
def test_reconcile_edit_behind_our_back_opens_one_conflict_then_updates_it(
    request, wire, warehouse, kind
):
    server = request.getfixturevalue(kind)
    channel = _pushed_channel(server, wire, warehouse, kind, [5, 6])
    server.app.stock_set_external(listing_keys(kind, 1), 2, notify=False)

    first = channel_reconcile(channel_id=channel.pk, trigger="test")

    assert (first.read, first.matching, first.mismatched, first.conflicts_opened) == (2, 1, 1, 1)
    conflict = Conflict.objects.get()
    listing = _listing(channel, 1)
    assert conflict.kind == Conflict.Kind.STOCK_MISMATCH
    assert conflict.source == Conflict.Source.RECONCILIATION
    assert (conflict.listing_id, conflict.channel_id) == (listing.pk, channel.pk)
    assert (conflict.ours, conflict.theirs) == (Decimal(6), Decimal(2))
    assert conflict.ours_at == listing.last_pushed_at
    assert listing.last_observed_quantity == 2

    # a second run, the marketplace moved again: the same conflict, updated
    server.app.stock_set_external(listing_keys(kind, 1), 1, notify=False)
    second = channel_reconcile(channel_id=channel.pk, trigger="test")
    assert (second.conflicts_opened, second.conflicts_updated) == (0, 1)
    assert Conflict.objects.count() == 1
    conflict.refresh_from_db()
    assert (conflict.status, conflict.theirs) == (Conflict.Status.OPEN, Decimal(1))
    assert list(conflict.events.values_list("action", flat=True)) == [
        ConflictEvent.Action.OPENED,
        ConflictEvent.Action.UPDATED,
    ]


@override_settings(**FAST)
def test_reconcile_agreeing_again_closes_the_open_conflict(shopee, wire, warehouse):
    # given: the seller set 9 where we pushed 5 (a manual channel: the conflict stays open)
    channel = _pushed_channel(
        shopee, wire, warehouse, "shopee", [5], conflict_policy=ConflictPolicy.MANUAL
    )
    shopee.app.stock_set_external(listing_keys("shopee", 0), 9, notify=False)
    channel_reconcile(channel_id=channel.pk)
    conflict = Conflict.objects.get()
    assert conflict.status == Conflict.Status.OPEN

    # when: the seller puts 5 back
    shopee.app.stock_set_external(listing_keys("shopee", 0), 5, notify=False)
    report = channel_reconcile(channel_id=channel.pk)

    # then: the conflict describes nothing anymore: closed, by the system, with a note
    assert (report.matching, report.conflicts_closed) == (1, 1)
    conflict.refresh_from_db()
    assert (conflict.status, conflict.strategy, conflict.resolved_by) == (
        Conflict.Status.AUTO_RESOLVED,
        "",
        "system",
    )
    assert (conflict.resolved_value, conflict.note) == (Decimal(5), "the channel agrees again")
    event = conflict.events.order_by("id").last()
    assert (event.action, event.actor, event.note) == (
        ConflictEvent.Action.AUTO_RESOLVED,
        "system",
        "the channel agrees again",
    )
    # a later difference opens a new conflict
    shopee.app.stock_set_external(listing_keys("shopee", 0), 3, notify=False)
    again = channel_reconcile(channel_id=channel.pk)
    assert (again.conflicts_opened, again.conflicts_closed) == (1, 0)
    assert Conflict.objects.filter(status=Conflict.Status.OPEN).count() == 1


@override_settings(**FAST)
def test_listing_observe_agreeing_closes_only_a_comparable_listing_conflict(
    shopee, wire, warehouse
):
    # given: an open mismatch; the listing then has a stock change waiting for its push
    channel = _pushed_channel(
        shopee, wire, warehouse, "shopee", [5], conflict_policy=ConflictPolicy.MANUAL
    )
    listing = _listing(channel, 0)
    shopee.app.stock_set_external(listing_keys("shopee", 0), 9, notify=False)
    channel_reconcile(channel_id=channel.pk)
    ChannelListing.objects.filter(pk=listing.pk).update(dirty=True)

    # when: a webhook reports our figure while the listing is dirty: not compared
    skipped = listing_observe(
        listing=listing.pk, quantity=5, observed_at=timezone.now(), source="webhook"
    )

    # then: left open; once clean, the same report closes it
    assert (skipped.outcome, skipped.closed_conflict_id) == ("skipped", None)
    assert Conflict.objects.get().status == Conflict.Status.OPEN
    ChannelListing.objects.filter(pk=listing.pk).update(dirty=False)
    matched = listing_observe(
        listing=listing.pk, quantity=5, observed_at=timezone.now(), source="webhook"
    )
    assert matched.outcome == "match"
    assert matched.closed_conflict_id == Conflict.objects.get().pk
    assert Conflict.objects.get().status == Conflict.Status.AUTO_RESOLVED


@override_settings(**FAST)
def test_reconcile_skips_dirty_and_never_pushed_listings(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5, 6, 7])
    for n in (0, 1, 2):
        shopee.app.stock_set_external(listing_keys("shopee", n), 1, notify=False)
    # a stock change waiting for its push, and a listing whose push is in flight
    ChannelListing.objects.filter(pk=_listing(channel, 0).pk).update(dirty=True)
    ChannelListing.objects.filter(pk=_listing(channel, 1).pk).update(last_pushed_quantity=None)

    report = channel_reconcile(channel_id=channel.pk)

    assert (report.read, report.skipped, report.mismatched) == (3, 2, 1)
    assert list(Conflict.objects.values_list("listing_id", flat=True)) == [_listing(channel, 2).pk]
    # every observation is recorded all the same
    assert set(channel.listings.values_list("last_observed_quantity", flat=True)) == {1}


def test_listing_observe_skips_a_listing_pushed_or_changed_after_the_read_began(
    shopee, wire, warehouse
):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5])
    listing = _listing(channel, 0)
    before_push = listing.last_pushed_at - timedelta(seconds=1)

    pushed_since = listing_observe(
        listing=listing,
        quantity=3,
        observed_at=timezone.now(),
        source="reconciliation",
        read_started=before_push,
    )
    changed_since = listing_observe(
        listing=listing,
        quantity=3,
        observed_at=timezone.now(),
        source="reconciliation",
        version=listing.dirty_version - 1,
    )
    stale = listing_observe(
        listing=listing,
        quantity=3,
        observed_at=before_push,
        source="webhook",
    )

    assert (pushed_since.outcome, pushed_since.reason) == ("skipped", "pushed_since")
    assert (changed_since.outcome, changed_since.reason) == ("skipped", "changed_since")
    assert stale.outcome == "stale"
    assert not Conflict.objects.exists()


def test_listing_observe_never_pushed_records_without_conflict(shopee, wire, warehouse):
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[ProductFactory()])
    listing = channel.listings.get()
    observed_at = timezone.now()

    result = listing_observe(listing=listing, quantity=4, observed_at=observed_at, source="webhook")

    assert (result.outcome, result.reason) == ("skipped", "never_pushed")
    listing.refresh_from_db()
    assert (listing.last_observed_quantity, listing.last_observed_at) == (4, observed_at)
    assert not Conflict.objects.exists()


@pytest.mark.django_db(transaction=True)
@override_settings(CHANNEL_RECONCILE_SETTLE_SECONDS=1.5)
def test_reconcile_difference_gone_by_the_confirming_read_opens_nothing(shopee, wire, warehouse):
    # given two listings read as different, one put back by the marketplace and one whose
    # sale we apply (its listing turns dirty) before the confirming read
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5, 6])
    for n in (0, 1):
        shopee.app.stock_set_external(listing_keys("shopee", n), 1, notify=False)
    second = _listing(channel, 1).pk

    def meanwhile() -> None:
        shopee.app.stock_set_external(listing_keys("shopee", 0), 5, notify=False)
        ChannelListing.objects.filter(pk=second).update(dirty=True)

    timer = threading.Timer(0.5, meanwhile)
    timer.start()
    try:
        report = channel_reconcile(channel_id=channel.pk)
    finally:
        timer.join()

    assert (report.read, report.unconfirmed, report.mismatched) == (2, 2, 0), report
    assert not Conflict.objects.exists()


def test_reconcile_listing_unknown_on_the_marketplace(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5])
    ghost = ChannelListing.objects.create(
        channel=channel,
        product=ProductFactory(),
        external_item_id="9999",
        external_variant_id="9",
        dirty=False,
    )

    report = channel_reconcile(channel_id=channel.pk, settle_seconds=0)

    assert (report.read, report.not_found, report.not_found_ids) == (1, 1, [ghost.pk])
    assert report.errors == []


@override_settings(**FAST)
def test_reconcile_waits_out_throttling_without_failing(shopee, wire, warehouse):
    # given six items (one read call each) and a marketplace taking two reads a second
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [1, 2, 3, 4, 5, 6])
    shopee.app.configure(throttle_per_second=2)

    report = channel_reconcile(channel_id=channel.pk)

    assert shopee.app.counts["read_throttled"] > 0
    assert report.throttled == shopee.app.counts["read_throttled"]
    assert (report.read, report.matching, report.stopped, report.errors) == (6, 6, "", [])


@pytest.mark.parametrize("kind", ["shopee", "lazada", "tiktok"])
@override_settings(**FAST)
def test_reconcile_refreshes_an_expired_token(request, wire, warehouse, kind):
    server = request.getfixturevalue(kind)
    channel = _pushed_channel(server, wire, warehouse, kind, [5])
    old_token = channel.credentials["access_token"]
    server.app.expire_tokens()  # expired early: our clock still thinks it is good

    report = channel_reconcile(channel_id=channel.pk)

    assert (report.read, report.matching, report.stopped) == (1, 1, "")
    channel.refresh_from_db()
    assert channel.credentials["access_token"] != old_token
    assert server.app.counts["refreshes"] == 1


@override_settings(**FAST)
def test_reconcile_revoked_credentials_flag_the_channel(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5])
    shopee.app.revoke()

    report = channel_reconcile(channel_id=channel.pk)

    assert report.stopped == "needs_reauth"
    channel.refresh_from_db()
    assert channel.needs_reauth
    assert channel.reconciled_at is None


@override_settings(**FAST)
def test_reconcile_stops_when_the_marketplace_keeps_failing(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [1, 2, 3, 4, 5])
    shopee.app.configure(error_ratio=1.0)

    report = channel_reconcile(channel_id=channel.pk)

    assert report.stopped == "failing"
    assert len(report.errors) == 3
    assert report.read == 0
    channel.refresh_from_db()
    assert channel.reconciled_at is None


def test_reconcile_one_run_per_channel(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5])
    lock = RunLock(RUN_LOCK_KEY.format(channel_id=channel.pk), seconds=30)
    assert lock.acquire()
    try:
        report = channel_reconcile(channel_id=channel.pk)
    finally:
        lock.release()
    assert report.stopped == "busy"
    assert shopee.app.counts["reads"] == 0


def test_reconcile_inactive_or_missing_channel_reads_nothing(shopee, wire, warehouse):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5])
    Channel.objects.filter(pk=channel.pk).update(active=False)
    assert channel_reconcile(channel_id=channel.pk).stopped == "inactive"
    assert channel_reconcile(channel_id=999_999).stopped == "missing"
    assert shopee.app.counts["reads"] == 0


@override_settings(**FAST, CHANNEL_RECONCILE_BATCH=2)
def test_reconcile_reads_in_batches_of_the_setting(tiktok, wire, warehouse):
    # TikTok reads 600 SKUs a call: the setting caps it
    channel = _pushed_channel(tiktok, wire, warehouse, "tiktok", [1, 2, 3, 4, 5])

    report = channel_reconcile(channel_id=channel.pk)

    assert (report.read, report.calls) == (5, 3)


@pytest.mark.worker
@override_settings(**FAST)
def test_reconcile_beat_task_on_a_real_worker(shopee, wire, warehouse, celery_worker):
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5, 6])
    shopee.app.stock_set_external(listing_keys("shopee", 0), 3, notify=False)

    tasks.reconcile_channels.delay()

    wait_for(lambda: Channel.objects.get(pk=channel.pk).reconciled_at is not None)
    conflict = Conflict.objects.get()
    assert (conflict.ours, conflict.theirs) == (Decimal(5), Decimal(3))


@pytest.mark.parametrize("kind", KINDS)
@override_settings(**FAST)
def test_reconcile_an_absurd_quantity_is_no_observation_and_the_run_goes_on(
    request, wire, warehouse, kind
):
    # given one listing the marketplace shows at 10^12, another edited behind our back
    server = request.getfixturevalue(kind)
    channel = _pushed_channel(server, wire, warehouse, kind, [5, 6])
    server.app.stock_set_external(listing_keys(kind, 0), 10**12, notify=False)
    server.app.stock_set_external(listing_keys(kind, 1), 2, notify=False)

    # when
    report = channel_reconcile(channel_id=channel.pk, trigger="test")

    # then the absurd figure says nothing (not an observation); the other opens its conflict
    assert report.stopped == ""
    assert report.errors == []
    assert (report.read, report.mismatched, report.conflicts_opened) == (1, 1, 1), report
    assert report.not_found_ids == [_listing(channel, 0).pk]
    assert _listing(channel, 0).last_observed_quantity is None
    assert Conflict.objects.get().listing_id == _listing(channel, 1).pk


@pytest.mark.django_db(transaction=True)
@override_settings(**FAST)
def test_reconcile_one_listing_failing_never_stops_the_others(shopee, wire, warehouse):
    # given the database refuses any write to one listing's observation (a trigger)
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [5, 6])
    broken = _listing(channel, 0)
    for n in (0, 1):
        shopee.app.stock_set_external(listing_keys("shopee", n), 1, notify=False)
    table = ChannelListing._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_listing() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'listing refused' USING ERRCODE = '22003'; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            f"CREATE TRIGGER refuse_listing BEFORE UPDATE ON {table} FOR EACH ROW "
            f"WHEN (NEW.id = {int(broken.pk)}) EXECUTE FUNCTION refuse_listing()"
        )
    try:
        # when
        report = channel_reconcile(channel_id=channel.pk, trigger="test")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER refuse_listing ON {table}")
            cursor.execute("DROP FUNCTION refuse_listing()")

    # then the failure is on the report and the other listing's conflict opened
    assert report.stopped == ""
    assert len(report.errors) == 1
    assert report.errors[0].startswith(f"listing {broken.pk}: DataError")
    assert report.conflicts_opened == 1
    assert Conflict.objects.get().listing_id == _listing(channel, 1).pk


@override_settings(**FAST, CHANNEL_RECONCILE_THROTTLE_BUDGET_SECONDS=0.3)
def test_reconcile_throttled_past_its_budget_stops_and_leaves_the_rest(shopee, wire, warehouse):
    # given a marketplace refusing the next 40 reads as throttled (each waits 0.05 s)
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [1, 2])
    shopee.app.inject(Fault(status=429, count=40))

    # when
    report = channel_reconcile(channel_id=channel.pk)

    # then the run stopped once its throttle waits reached the budget, not after 40 of them
    assert report.stopped == "throttled"
    assert report.throttled <= 7
    assert report.read == 0
    channel.refresh_from_db()
    assert channel.reconciled_at is None
    # and the lock is free for the next run
    assert RunLock(RUN_LOCK_KEY.format(channel_id=channel.pk), seconds=5).acquire()


@override_settings(**FAST)
def test_reconcile_stops_at_the_soft_time_limit_and_gives_the_lock_back(shopee, wire, warehouse):
    # given a slow marketplace, and the soft limit arriving mid-run as billiard delivers it (a
    # signal whose handler raises SoftTimeLimitExceeded in the running code)
    channel = _pushed_channel(shopee, wire, warehouse, "shopee", [1, 2, 3, 4])
    shopee.app.configure(latency=0.3)

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        # when
        report = channel_reconcile(channel_id=channel.pk)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    # then the run ended with what it read, and its lock is free again
    assert report.stopped == "time_limit"
    assert 0 < report.read < 4
    shopee.app.configure(latency=0)
    assert channel_reconcile(channel_id=channel.pk).stopped == ""


def test_reconcile_task_has_time_limits(settings):
    from config.celery import app

    task = app.tasks["channels_sync.reconcile_channel"]
    sent = task._get_exec_options()
    assert sent["soft_time_limit"] == settings.CHANNEL_RECONCILE_SOFT_TIME_LIMIT_SECONDS
    assert sent["soft_time_limit"] < sent["time_limit"]
