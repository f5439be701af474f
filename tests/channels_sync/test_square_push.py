"""The push pipeline against the Square sandbox: desired counts reach Square, a refused
change leaves the rest of its (all-or-nothing) batch to retry, faults and throttles
converge, and a push resumed a day later is stamped afresh."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from channels_sync.adapters.square import adapter as square_adapter
from channels_sync.models import ChannelListing, PushAttempt
from channels_sync.selectors import listings_to_push, plan
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from inventory.services import Origin, stock_adjust, stock_set
from tests.channels_sync import square_fixtures
from tests.channels_sync.square_fixtures import square_keys
from tests.inventory.factories import ProductFactory

_square_server = square_fixtures._square_server
square = square_fixtures.square
square_wire = square_fixtures.square_wire

ORIGIN = Origin(source="test", actor="test")
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
}


def products(warehouse, quantities) -> list:
    made = []
    for quantity in quantities:
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        made.append(product)
    return made


def shown(server, channel) -> dict[int, int | None]:
    return {
        listing.pk: server.app.quantity(
            {
                "catalog_object_id": listing.external_item_id,
                "location_id": listing.external_location_id,
            }
        )
        for listing in channel.listings.order_by("pk")
    }


def desired(channel) -> dict[int, int]:
    return {
        item.id: item.quantity
        for item in plan(channel, listings_to_push(channel, include_clean=True))
    }


def sent_changes(server) -> list[dict]:
    return [
        json.loads(r.body) for r in server.app.requests if r.path.endswith("changes/batch-create")
    ]


@pytest.mark.django_db
def test_square_push_sends_desired_counts_then_nothing_when_unchanged(
    square, square_wire, warehouse
):
    stock = products(warehouse, [5, 0, "7.5"])
    channel = square_wire(square, warehouses=[warehouse], products=stock, dirty=True)

    report = channel_push(channel_id=channel.pk)

    assert report.pushed == 3
    assert sorted(shown(square, channel).values()) == [0, 5, 7]
    [body] = sent_changes(square)
    assert [c["physical_count"]["quantity"] for c in body["changes"]] == ["5", "0", "7"]
    # the key is the attempt row's (a UUID), unique to it
    attempt = PushAttempt.objects.get()
    assert attempt.outcome == "ok"
    assert len(body["idempotency_key"]) == 36
    calls = len(square.app.requests)
    stock_adjust(product=stock[2], warehouse=warehouse, delta=Decimal("0.2"), origin=ORIGIN)
    assert channel_push(channel_id=channel.pk).calls == 0
    assert len(square.app.requests) == calls


@pytest.mark.django_db
def test_square_push_refused_change_dead_letters_it_and_retries_the_rest_of_its_batch(
    square, square_wire, warehouse
):
    # given three listings in one batch, the second refused by Square
    stock = products(warehouse, [3, 4, 5])
    channel = square_wire(square, warehouses=[warehouse], products=stock, dirty=True)
    square.app.configure(reject=[square_keys(1)])
    first, bad, third = channel.listings.order_by("pk")
    # when the push runs
    with override_settings(**FAST):
        report = channel_push(channel_id=channel.pk)
    # then the refused one is dead-lettered, the others were not applied and wait to retry
    assert (report.pushed, report.dead_lettered, report.failed) == (0, 1, 3)
    assert shown(square, channel) == {first.pk: 0, bad.pk: 0, third.pk: 0}
    letter = DeadLetter.objects.get()
    assert letter.kwargs == {"listing_id": bad.pk}
    for listing in (first, third):
        listing.refresh_from_db()
        assert (listing.dirty, listing.push_failures, listing.last_pushed_quantity) == (
            True,
            1,
            None,
        )
        assert listing.last_error == "not applied: Square refused the whole batch over changes[1]"
    bad.refresh_from_db()
    assert (bad.status, bad.dirty) == ("error", False)
    attempt = PushAttempt.objects.get()
    assert (attempt.outcome, attempt.http_status) == ("partial", 400)
    assert [row.get("ok", True) for row in attempt.items] == [False, False, False]
    # when the next run sends the rest, without the refused change
    with override_settings(**FAST):
        again = channel_push(channel_id=channel.pk, respect_backoff=False)
    assert again.pushed == 2
    assert shown(square, channel) == {first.pk: 3, bad.pk: 0, third.pk: 5}
    last = sent_changes(square)[-1]
    assert [c["physical_count"]["catalog_object_id"] for c in last["changes"]] == [
        square_keys(0)["catalog_object_id"],
        square_keys(2)["catalog_object_id"],
    ]
    assert not channel.listings.filter(dirty=True).exists()


@pytest.mark.django_db
def test_square_push_converges_under_errors_and_throttling(square, square_wire, warehouse):
    # given Square answering 30% of calls with errors and throttling past 8 calls a second
    stock = products(warehouse, range(1, 25))
    square.app.configure(error_ratio=0.3, throttle_per_second=8, seed=11)
    channel = square_wire(
        square,
        warehouses=[warehouse],
        products=stock,
        dirty=True,
        batch_size=3,
        rate_limit_per_second=6,
        rate_limit_burst=2,
    )
    for product in stock[::3]:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    # when the pipeline runs until nothing is left
    with override_settings(**FAST):
        for _ in range(30):
            report = channel_push(channel_id=channel.pk, respect_backoff=False)
            if not ChannelListing.objects.filter(dirty=True).exists():
                break
    # then Square shows every desired count, within the channel's rate
    assert shown(square, channel) == desired(channel)
    assert not channel.listings.exclude(status="ok").exists()
    assert report.stopped == ""
    assert square.app.counts["errors"] > 0
    assert square.app.max_calls_in_window(1.0) <= 6 + 2
    assert PushAttempt.objects.filter(outcome="retryable").exists()
    # every call had a key of its own
    keys = [body["idempotency_key"] for body in sent_changes(square)]
    assert len(keys) == len(set(keys))


@pytest.mark.django_db
def test_square_push_throttled_resend_carries_a_new_key_and_uses_no_attempt(
    square, square_wire, warehouse
):
    stock = products(warehouse, [1, 2])
    channel = square_wire(square, warehouses=[warehouse], products=stock, dirty=True, batch_size=1)
    square.app.configure(throttle_per_second=1)

    with override_settings(**FAST):
        report = channel_push(channel_id=channel.pk)

    assert report.pushed == 2
    assert report.throttled >= 1
    assert set(channel.listings.values_list("push_failures", flat=True)) == {0}
    keys = [body["idempotency_key"] for body in sent_changes(square)]
    assert len(keys) == len(set(keys)) == PushAttempt.objects.count()
    assert square.app.counts["replays"] == 0


@pytest.mark.django_db
def test_square_push_resumed_25_hours_later_is_stamped_afresh_with_the_new_quantity(
    square, square_wire, warehouse, monkeypatch
):
    # given a push that failed (Square down), and the stock changing meanwhile
    (product,) = products(warehouse, [6])
    channel = square_wire(square, warehouses=[warehouse], products=[product], dirty=True)
    square.app.configure(error_ratio=1)
    with override_settings(**FAST):
        failed = channel_push(channel_id=channel.pk)
    assert failed.failed == 1
    stock_adjust(product=product, warehouse=warehouse, delta=Decimal(-2), origin=ORIGIN)
    [first] = sent_changes(square)
    # when the push resumes 25 hours later (both clocks moved)
    later = datetime.now(UTC) + timedelta(hours=25)
    square.app.configure(error_ratio=0, clock_offset=25 * 3600)
    monkeypatch.setattr(square_adapter, "utc_now", lambda: later)
    resumed = channel_push(channel_id=channel.pk, respect_backoff=False)
    # then the call is built anew: today's quantity, a fresh stamp, a new key; Square takes it
    assert resumed.pushed == 1
    second = sent_changes(square)[-1]
    count = second["changes"][0]["physical_count"]
    assert count["quantity"] == "4"
    assert count["occurred_at"] == square_adapter.rfc3339_ms(later)
    assert first["changes"][0]["physical_count"]["quantity"] == "6"
    assert second["idempotency_key"] != first["idempotency_key"]
    assert square.app.quantity(square_keys(0)) == 4
    assert list(PushAttempt.objects.order_by("id").values_list("outcome", flat=True)) == [
        "retryable",
        "ok",
    ]


@pytest.mark.django_db
def test_square_push_expired_oauth_token_is_refreshed_and_the_batch_sent(
    square, square_wire, warehouse
):
    (product,) = products(warehouse, [6])
    channel = square_wire(square, warehouses=[warehouse], products=[product], dirty=True)
    square.app.expire_tokens()

    report = channel_push(channel_id=channel.pk)

    assert report.pushed == 1
    channel.refresh_from_db()
    assert square.app.token_state(channel.credentials["access_token"]) == "ok"
    assert square.app.quantity(square_keys(0)) == 6


@pytest.mark.django_db
def test_square_push_refused_personal_token_flags_the_channel(square, square_wire, warehouse):
    (product,) = products(warehouse, [6])
    channel = square_wire(
        square,
        warehouses=[warehouse],
        products=[product],
        dirty=True,
        credentials=square.app.personal_credentials(),
    )
    square.app.revoke()

    report = channel_push(channel_id=channel.pk)

    assert report.stopped == "needs_reauth"
    channel.refresh_from_db()
    assert channel.needs_reauth is True
    assert square.app.counts["refreshes"] == 0
    assert channel.listings.get().dirty is True
