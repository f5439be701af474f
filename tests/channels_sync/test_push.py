"""The desired-state push pipeline, end to end against the marketplace sandboxes."""

from collections import Counter
from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings

from channels_sync import tasks
from channels_sync.adapters import StockUpdate
from channels_sync.models import Channel, ChannelListing, PushAttempt
from channels_sync.selectors import listings_to_push, plan
from channels_sync.services.push import _listings_settle, channel_push
from channels_sync.services.tokens import channel_adapter
from core.models import DeadLetter
from inventory.models import StockMovement
from inventory.services import Origin, stock_adjust, stock_set
from inventory.services.bulk import LevelTarget, stock_levels_sync
from tests.channels_sync.conftest import listing_keys
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory

ORIGIN = Origin(source="test", actor="test")

# Retries and throttle waits shortened so fault tests run in seconds.
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
}


def _set(product, warehouse, quantity) -> None:
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)


def _products(warehouse, quantities) -> list:
    products = []
    for quantity in quantities:
        product = ProductFactory()
        _set(product, warehouse, quantity)
        products.append(product)
    return products


def _sandbox_quantities(server, channel) -> dict[int, int | None]:
    from channels_sync.adapters import adapter_class

    cls = adapter_class(channel.type)
    return {
        listing.pk: server.app.quantity(cls.keys_from_listing(listing))
        for listing in channel.listings.all()
    }


def _desired(channel) -> dict[int, int]:
    return {
        row["id"]: item.quantity for item in plan(channel, _rows(channel)) for row in [item.row]
    }


def _rows(channel) -> list[dict]:
    return listings_to_push(channel, include_clean=True)


# --- dirty marks ------------------------------------------------------------------------------


def test_listing_marked_dirty_in_the_movement_transaction(shopee, wire, warehouse):
    # given a pushed (clean) listing
    (product,) = _products(warehouse, [5])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product])
    listing = channel.listings.get()
    assert not listing.dirty

    # when a movement rolls back, then when one commits
    def adjust_then_fail() -> None:
        with transaction.atomic():
            stock_adjust(product=product, warehouse=warehouse, delta=Decimal(1), origin=ORIGIN)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        adjust_then_fail()
    listing.refresh_from_db()
    assert not listing.dirty
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(1), origin=ORIGIN)
    # then only the committed one marked it
    listing.refresh_from_db()
    assert listing.dirty
    assert listing.dirty_version == 1


def test_listing_marked_dirty_by_bulk_sync(shopee, wire, warehouse, store):
    products = _products(warehouse, [5, 6])
    channel = wire(shopee, "shopee", warehouses=[store], products=products)
    with transaction.atomic():
        stock_levels_sync(
            targets=[LevelTarget(products[0].pk, warehouse.pk, Decimal(9))], origin=ORIGIN
        )
    dirty = dict(channel.listings.values_list("product_id", "dirty"))
    # A change in any warehouse marks the product's listings (shared pools).
    assert dirty == {products[0].pk: True, products[1].pk: False}


# --- pushing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["shopee", "lazada", "tiktok", "tokopedia"])
def test_push_sends_desired_quantities_then_nothing_when_unchanged(request, wire, warehouse, kind):
    server = request.getfixturevalue(kind)
    products = _products(warehouse, [5, 0, "7.5"])
    channel = wire(server, kind, warehouses=[warehouse], products=products, dirty=True)
    # when
    report = channel_push(channel_id=channel.pk)
    # then the sandbox holds the floor of each pool
    assert report.pushed == 3, report
    assert sorted(_sandbox_quantities(server, channel).values()) == [0, 5, 7]
    assert not channel.listings.filter(dirty=True).exists()
    calls = len(server.app.requests)
    # when the stock moves without changing what the channel shows, nothing is sent
    stock_adjust(product=products[2], warehouse=warehouse, delta=Decimal("0.2"), origin=ORIGIN)
    report = channel_push(channel_id=channel.pk)
    assert (report.pushed, report.unchanged, report.calls) == (0, 1, 0)
    assert len(server.app.requests) == calls


def test_push_convergence_under_errors_and_throttling(shopee, lazada, tiktok, wire, warehouse):
    # given three marketplaces answering 30% of calls with errors and throttling past 8/s
    products = _products(warehouse, range(1, 25))
    channels = []
    for server, kind in ((shopee, "shopee"), (lazada, "lazada"), (tiktok, "tiktok")):
        server.app.configure(error_ratio=0.3, throttle_per_second=8, seed=7)
        channels.append(
            wire(
                server,
                kind,
                warehouses=[warehouse],
                products=products,
                per_item=4,
                dirty=True,
                batch_size=3,
                rate_limit_per_second=6,
                rate_limit_burst=2,
            )
        )
    # when stock changes and the pipeline runs until nothing is left
    for product in products[::3]:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    with override_settings(**FAST):
        for _ in range(30):
            reports = [channel_push(channel_id=c.pk, respect_backoff=False) for c in channels]
            if not ChannelListing.objects.filter(dirty=True).exists():
                break
    # then every listing shows its desired quantity on every marketplace
    for server, channel in zip((shopee, lazada, tiktok), channels, strict=True):
        assert _sandbox_quantities(server, channel) == _desired(channel)
        assert not channel.listings.exclude(status="ok").exists()
        # and no marketplace saw more calls in any second than the channel's limit allows
        assert server.app.max_calls_in_window(1.0) <= 6 + 2
        assert server.app.counts["errors"] > 0
    assert all(r.stopped == "" for r in reports)
    assert PushAttempt.objects.filter(outcome="retryable").exists()


def test_push_item_rejection_dead_letters_that_item_only(
    shopee, wire, warehouse, django_capture_on_commit_callbacks
):
    products = _products(warehouse, [3, 4, 5])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, per_item=3)
    rejected = listing_keys("shopee", 1, per_item=3)
    shopee.app.configure(reject=[rejected])
    ChannelListing.objects.update(dirty=True)
    # when
    report = channel_push(channel_id=channel.pk)
    # then the other two are pushed, the rejected one is dead-lettered
    assert (report.pushed, report.dead_lettered) == (2, 1)
    bad = channel.listings.get(product=products[1])
    assert bad.status == "error"
    assert bad.last_error
    letter = DeadLetter.objects.get()
    assert letter.task_name == "channels_sync.push_listing"
    assert letter.kwargs == {"listing_id": bad.pk}
    assert shopee.app.quantity(listing_keys("shopee", 0, per_item=3)) == 3
    assert shopee.app.quantity(listing_keys("shopee", 2, per_item=3)) == 5
    # and retrying the dead letter after the marketplace accepts it pushes it
    shopee.app.configure(reject=[])
    from core.services import dead_letter_retry

    with django_capture_on_commit_callbacks(execute=True):
        dead_letter_retry(dead_letter=letter, actor="test")
    assert shopee.app.quantity(rejected) == 4
    bad.refresh_from_db()
    assert bad.status == "ok"


def test_push_retryable_failures_dead_letter_after_eight_attempts(lazada, wire, warehouse):
    (product,) = _products(warehouse, [2])
    channel = wire(lazada, "lazada", warehouses=[warehouse], products=[product], dirty=True)
    lazada.app.configure(error_ratio=1.0)
    with override_settings(**FAST):
        for _ in range(10):
            channel_push(channel_id=channel.pk, respect_backoff=False)
    listing = channel.listings.get()
    attempts = list(PushAttempt.objects.order_by("id").values_list("outcome", "attempt"))
    assert attempts == [("retryable", n) for n in range(1, 9)]
    assert listing.status == "error"
    assert not listing.dirty
    assert DeadLetter.objects.get().attempts == 8


def test_push_throttle_waits_without_using_an_attempt(tiktok, wire, warehouse):
    products = _products(warehouse, [1, 2, 3])
    channel = wire(
        tiktok, "tiktok", warehouses=[warehouse], products=products, dirty=True, batch_size=1
    )
    tiktok.app.configure(throttle_per_second=1)
    with override_settings(**FAST):
        report = channel_push(channel_id=channel.pk)
    assert report.pushed == 3
    assert report.throttled >= 1
    assert set(channel.listings.values_list("push_failures", flat=True)) == {0}
    throttled = PushAttempt.objects.filter(outcome="throttled")
    assert throttled.exists()
    assert set(throttled.values_list("attempt", flat=True)) == {1}


def test_push_expired_token_is_refreshed_and_retried(shopee, wire, warehouse):
    (product,) = _products(warehouse, [6])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    before = dict(channel.credentials)
    shopee.app.expire_tokens()
    # when
    report = channel_push(channel_id=channel.pk)
    # then the token was refreshed, stored, and the push went through
    assert report.pushed == 1, report
    channel.refresh_from_db()
    assert channel.credentials["access_token"] != before["access_token"]
    # Shopee's refresh token is single use: the new one is kept
    assert channel.credentials["refresh_token"] != before["refresh_token"]
    assert not channel.needs_reauth
    assert shopee.app.counts["refreshes"] == 1
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 6


def test_push_token_near_expiry_is_refreshed_first(lazada, wire, warehouse):
    (product,) = _products(warehouse, [6])
    channel = wire(lazada, "lazada", warehouses=[warehouse], products=[product], dirty=True)
    credentials = dict(channel.credentials)
    credentials["access_token_expires_at"] = "2000-01-01T00:00:00+00:00"
    Channel.objects.filter(pk=channel.pk).update(credentials=credentials)
    report = channel_push(channel_id=channel.pk)
    assert report.pushed == 1
    assert lazada.app.counts["refreshes"] == 1
    channel.refresh_from_db()
    assert channel.token_expires_at.year > 2000


def test_push_revoked_auth_flags_channel_alerts_once_and_stops(
    shopee, wire, warehouse, slack, django_capture_on_commit_callbacks
):
    products = _products(warehouse, [1, 2])
    channel = wire(
        shopee, "shopee", warehouses=[warehouse], products=products, dirty=True, batch_size=1
    )
    shopee.app.revoke()
    # when
    with override_settings(**FAST), django_capture_on_commit_callbacks(execute=True):
        first = channel_push(channel_id=channel.pk)
        calls = len(shopee.app.requests)
        second = channel_push(channel_id=channel.pk)
        tasks.sweep()
    # then
    channel.refresh_from_db()
    assert channel.needs_reauth
    assert first.stopped == second.stopped == "needs_reauth"
    assert calls <= 2  # one push, one refused refresh
    assert len(shopee.app.requests) == calls  # no retry storm
    wait_for(lambda: len(slack.messages) == 1)
    assert "re-authorisation" in slack.messages[0]["text"]
    assert ChannelListing.objects.filter(dirty=True).count() == 2


def test_push_dry_run_sends_nothing(shopee, wire, warehouse):
    products = _products(warehouse, [4, 9])
    channel = wire(
        shopee, "shopee", warehouses=[warehouse], products=products, dirty=True, dry_run=True
    )
    report = channel_push(channel_id=channel.pk)
    assert report.dry_run
    assert report.calls == 0
    assert shopee.app.requests == []
    assert set(PushAttempt.objects.values_list("outcome", flat=True)) == {"dry_run"}
    assert sorted(channel.listings.values_list("desired_quantity", flat=True)) == [4, 9]
    assert set(channel.listings.values_list("last_pushed_quantity", flat=True)) == {None}


def test_push_one_off_dry_run_of_live_channel_changes_nothing(shopee, wire, warehouse):
    products = _products(warehouse, [4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    report = channel_push(channel_id=channel.pk, dry_run=True)
    assert report.dry_run
    assert shopee.app.requests == []
    assert channel.listings.get().dirty
    assert channel_push(channel_id=channel.pk).pushed == 1


def test_push_after_crash_between_accept_and_record_is_harmless(tiktok, wire, warehouse):
    # given the marketplace accepted a push that was never recorded (a crash in between)
    (product,) = _products(warehouse, [8])
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=[product], dirty=True)
    listing = channel.listings.get()
    adapter = channel_adapter(channel)
    update = StockUpdate(listing.pk, adapter.keys_from_listing(listing), 8)
    assert adapter.push_stock([update]).outcome == "ok"
    # when the pipeline pushes again
    report = channel_push(channel_id=channel.pk)
    # then the same absolute quantity is set again: nothing doubles
    assert report.pushed == 1
    assert tiktok.app.quantity(adapter.keys_from_listing(listing)) == 8
    listing.refresh_from_db()
    assert listing.last_pushed_quantity == 8
    assert not listing.dirty


def test_push_change_during_push_keeps_listing_dirty(shopee, wire, warehouse):
    (product,) = _products(warehouse, [8])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    planned = plan(channel, listings_to_push(channel))
    # a stock change commits after planning, before the result is recorded
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(-3), origin=ORIGIN)
    _listings_settle(planned, pushed=True)
    listing = channel.listings.get()
    assert listing.dirty
    assert listing.last_pushed_quantity == 8
    channel_push(channel_id=channel.pk)
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 5


def test_sweep_pushes_listing_whose_enqueue_was_lost(lazada, wire, warehouse):
    (product,) = _products(warehouse, [3])
    channel = wire(lazada, "lazada", warehouses=[warehouse], products=[product])
    # a mark committed without its push ever being queued
    ChannelListing.objects.filter(channel=channel).update(dirty=True)
    assert tasks.sweep() == [channel.pk]
    assert lazada.app.quantity(listing_keys("lazada", 0)) == 3


def test_shared_pool_strategies_never_hand_out_more_than_the_pool(shopee, lazada, wire, warehouse):
    from channels_sync.services.channels import rule_set

    products = _products(warehouse, [10, 7])
    first = wire(shopee, "shopee", warehouses=[warehouse], products=products, priority=1)
    second = wire(lazada, "lazada", warehouses=[warehouse], products=products, priority=2)
    for channel in (first, second):
        rule_set(channel=channel, actor="test", strategy="equal_split")
    desired_first, desired_second = _desired(first), _desired(second)
    by_product = {}
    for channel, desired in ((first, desired_first), (second, desired_second)):
        for listing in channel.listings.all():
            by_product.setdefault(listing.product_id, []).append(desired[listing.pk])
    assert sorted(by_product[products[0].pk]) == [5, 5]
    assert sorted(by_product[products[1].pk]) == [3, 4]


def test_demand_weighted_uses_each_channels_committed_sales(shopee, lazada, wire, warehouse):
    from channels_sync.services.channels import rule_set
    from inventory.services import stock_commit, stock_reserve

    (product,) = _products(warehouse, [100])
    first = wire(shopee, "shopee", warehouses=[warehouse], products=[product])
    second = wire(lazada, "lazada", warehouses=[warehouse], products=[product])
    for channel, sold in ((first, 30), (second, 10)):
        reservation = stock_reserve(
            product=product,
            warehouse=warehouse,
            quantity=Decimal(sold),
            origin=Origin(source=f"channel:{channel.pk}", actor="test"),
        )
        stock_commit(
            reservation=reservation, origin=Origin(source=f"channel:{channel.pk}", actor="test")
        )
        rule_set(channel=channel, actor="test", strategy="demand_weighted")
    assert StockMovement.objects.filter(kind="commit").count() == 2
    # 60 left, shared 3:1 by the last 30 days' sales
    assert list(_desired(first).values()) == [45]
    assert list(_desired(second).values()) == [15]


# --- queueing ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_push_burst_of_changes_queues_one_task_of_the_final_quantity(shopee, wire, warehouse):
    from config.celery import app

    (product,) = _products(warehouse, [0])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product])
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("push")
    app.conf.task_always_eager = False
    try:
        # when 100 separate transactions change the SKU
        for _ in range(100):
            stock_adjust(product=product, warehouse=warehouse, delta=Decimal(1), origin=ORIGIN)
        with app.connection_for_write() as connection:
            queued = connection.default_channel.client.llen("push")
    finally:
        app.conf.task_always_eager = True
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("push")
    # then one push task waits in the push queue
    assert queued == 1
    # and running it sends the final quantity in one call
    tasks.push_channel(channel.pk)
    assert len(shopee.app.requests) == 1
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 100


@pytest.mark.worker
def test_push_runs_on_a_real_worker_from_the_push_queue(shopee, wire, warehouse, celery_worker):
    (product,) = _products(warehouse, [0])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product])
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(12), origin=ORIGIN)
    wait_for(lambda: shopee.app.quantity(listing_keys("shopee", 0)) == 12)
    wait_for(lambda: not ChannelListing.objects.filter(channel=channel, dirty=True).exists())


def test_push_after_unconfirmed_send_sends_even_the_old_quantity(shopee, wire, warehouse):
    # given 5 pushed, then a push of 10 the marketplace applied but answered with an error
    (product,) = _products(warehouse, [5])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    keys = listing_keys("shopee", 0)
    assert channel_push(channel_id=channel.pk).pushed == 1
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    shopee.app.configure(error_ratio=1.0)
    with override_settings(**FAST):
        assert channel_push(channel_id=channel.pk).failed == 1
    listing = channel.listings.get()
    adapter = channel_adapter(channel)
    adapter.push_stock([StockUpdate(listing.pk, keys, 10)])  # what the marketplace applied
    # when the stock goes back to the quantity last confirmed
    shopee.app.configure(error_ratio=0.0)
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(-5), origin=ORIGIN)
    report = channel_push(channel_id=channel.pk, respect_backoff=False)
    # then it is sent, not skipped as unchanged
    assert report.pushed == 1
    assert shopee.app.quantity(keys) == 5


def test_new_listing_marks_the_other_channels_sharing_the_product(shopee, lazada, wire, warehouse):
    from channels_sync.services.listings import listings_upsert

    (product,) = _products(warehouse, [10])
    first = wire(shopee, "shopee", warehouses=[warehouse], products=[product])
    second = wire(lazada, "lazada", warehouses=[warehouse])
    listings_upsert(
        channel=second, rows=[{"sku": product.sku, "keys": listing_keys("lazada", 0)}], actor="t"
    )
    assert first.listings.get().dirty


def test_dead_lettered_listing_starts_counting_again(lazada, wire, warehouse):
    (product,) = _products(warehouse, [2])
    channel = wire(lazada, "lazada", warehouses=[warehouse], products=[product], dirty=True)
    lazada.app.configure(error_ratio=1.0)
    with override_settings(**FAST):
        for _ in range(8):
            channel_push(channel_id=channel.pk, respect_backoff=False)
    listing = channel.listings.get()
    assert listing.status == "error"
    assert (listing.push_failures, listing.next_push_at) == (0, None)


# --- crash safety -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_push_busy_answers_leave_one_waiting_retry(shopee, wire, warehouse):
    from django.core.cache import cache

    from channels_sync.services.push import RUN_LOCK_KEY
    from config.celery import app

    # given another run holds the channel's lock
    (product,) = _products(warehouse, [4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    cache.set(RUN_LOCK_KEY.format(channel_id=channel.pk), "another run", timeout=60)
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("push")
    app.conf.task_always_eager = False
    try:
        # when five pushes of the channel find it busy
        reports = [tasks.push_channel(channel.pk) for _ in range(5)]
        with app.connection_for_write() as connection:
            queued = connection.default_channel.client.llen("push")
    finally:
        app.conf.task_always_eager = True
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("push")
    # then one delayed retry waits, not five chains
    assert [report["stopped"] for report in reports] == ["busy"] * 5
    assert queued == 1


@pytest.mark.django_db(transaction=True)
def test_push_commits_each_attempt_row_before_its_call(shopee, wire, warehouse):
    from django.db import connections

    products = _products(warehouse, [3, 4])
    channel = wire(
        shopee, "shopee", warehouses=[warehouse], products=products, dirty=True, per_item=1
    )
    seen = []
    handle = shopee.app.handle

    def handle_and_look(request):
        # What another connection sees while the marketplace handles the call.
        if request.path.endswith("update_stock"):
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute(
                        "SELECT outcome, item_count FROM channels_sync_pushattempt ORDER BY id"
                    )
                    seen.append(cursor.fetchall())
            finally:
                connections["default"].close()
        return handle(request)

    shopee.app.handle = handle_and_look
    try:
        report = channel_push(channel_id=channel.pk)
    finally:
        del shopee.app.handle
    assert report.calls == 2
    # (the rows of a round of calls are inserted together, before its first call)
    assert seen == [[("sending", 1), ("sending", 1)], [("ok", 1), ("sending", 1)]]
    assert list(PushAttempt.objects.order_by("id").values_list("outcome", flat=True)) == [
        "ok",
        "ok",
    ]


def test_push_marks_calls_left_unanswered_by_a_dead_run_interrupted(shopee, wire, warehouse):
    # given a dead run's call with no answer recorded
    (product,) = _products(warehouse, [6])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    left = PushAttempt.objects.create(
        channel=channel, items=[], idempotency_key="x", outcome=PushAttempt.Outcome.SENDING
    )
    # when the next run goes
    report = channel_push(channel_id=channel.pk)
    # then that call is marked interrupted, and the listing is pushed again
    left.refresh_from_db()
    assert left.outcome == "interrupted"
    assert report.pushed == 1
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 6
    assert not PushAttempt.objects.filter(outcome="sending").exists()


@pytest.mark.django_db(transaction=True)
def test_push_run_that_lost_its_lock_stops_and_leaves_the_new_holder_alone(shopee, wire, warehouse):
    from django.core.cache import cache
    from django.db import connections

    from channels_sync.services.push import RUN_LOCK_KEY

    products = _products(warehouse, [1, 2, 3, 4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    key = RUN_LOCK_KEY.format(channel_id=channel.pk)
    handle = shopee.app.handle

    def handle_then_lose_the_lock(request):
        # While the first call is out, the lock lapses and another run takes it and sends.
        if cache.get(key) != "another run":
            cache.set(key, "another run", timeout=60)
            try:
                PushAttempt.objects.create(
                    channel=channel, items=[], idempotency_key="theirs", outcome="sending"
                )
            finally:
                connections["default"].close()  # this runs in the sandbox's thread
        return handle(request)

    shopee.app.handle = handle_then_lose_the_lock
    try:
        report = channel_push(channel_id=channel.pk)
    finally:
        del shopee.app.handle
    assert report.stopped == "lock_lost"
    assert report.calls == 1
    assert cache.get(key) == "another run"
    # the new holder's call in flight is not ours to mark
    assert PushAttempt.objects.get(idempotency_key="theirs").outcome == "sending"


def test_push_run_stopping_early_keeps_no_rows_for_calls_it_did_not_make(lazada, wire, warehouse):
    # given three calls to make to a marketplace that fails every one
    products = _products(warehouse, [1, 2, 3])
    channel = wire(
        lazada, "lazada", warehouses=[warehouse], products=products, dirty=True, batch_size=1
    )
    lazada.app.configure(error_ratio=1.0)
    # when the run stops after the first failure
    with override_settings(**{**FAST, "CHANNEL_PUSH_FAILURE_STREAK": 1}):
        report = channel_push(channel_id=channel.pk)
    # then the rows inserted ahead for the two calls it did not make are gone
    assert (report.stopped, report.calls) == ("failing", 1)
    assert list(PushAttempt.objects.values_list("outcome", flat=True)) == ["retryable"]
    assert len(lazada.app.call_times) == 1


def test_push_throttled_resends_record_the_batch_they_resend(tiktok, wire, warehouse):
    # given three one-listing calls to a marketplace accepting one call a second
    products = _products(warehouse, [1, 2, 3])
    channel = wire(
        tiktok, "tiktok", warehouses=[warehouse], products=products, dirty=True, batch_size=1
    )
    tiktok.app.configure(throttle_per_second=1)
    # when the run waits out the throttle and sends again
    with override_settings(**FAST):
        report = channel_push(channel_id=channel.pk)
    # then each row names the listing its call carried
    assert report.throttled >= 1
    adapter = channel_adapter(channel)
    sku_of = {
        listing.pk: adapter.keys_from_listing(listing)["sku_id"]
        for listing in channel.listings.all()
    }
    stock_calls = [
        request for request in tiktok.app.requests if request.path.endswith("/inventory/update")
    ]
    carried = Counter(
        listing_id
        for request in stock_calls
        for listing_id, sku in sku_of.items()
        if f'"{sku}"' in request.body.decode()
    )
    rows = PushAttempt.objects.values_list("items", flat=True)
    recorded = Counter(items[0]["listing"] for items in rows)
    assert len(stock_calls) == report.calls == len(rows)
    assert recorded == carried


@pytest.mark.django_db(transaction=True)
def test_push_failing_runs_leave_one_waiting_retry(shopee, wire, warehouse):
    from config.celery import app

    # given a marketplace that fails every call (the listing backs off, the run asks to be
    # requeued), and stock changes queueing a run each meanwhile
    (product,) = _products(warehouse, [4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=[product], dirty=True)
    shopee.app.configure(error_ratio=1.0)
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("push")
    app.conf.task_always_eager = False
    try:
        # when five runs of the channel each end asking for a delayed retry (the listing due
        # again before each, as a new stock change would make it)
        reports = []
        for _ in range(5):
            ChannelListing.objects.filter(channel=channel).update(dirty=True, next_push_at=None)
            reports.append(tasks.push_channel(channel.pk))
        with app.connection_for_write() as connection:
            queued = connection.default_channel.client.llen("push")
    finally:
        app.conf.task_always_eager = True
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge("push")
    # then one delayed retry waits, not a chain per run
    assert all(report["requeue_after"] is not None for report in reports), reports
    assert queued == 1
