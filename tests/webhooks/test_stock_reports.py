"""Stock reports by webhook (Shopee reserved stock change, TikTok inventory status change):
signed by the sandboxes, received over HTTP, processed through the reconciliation's
comparison."""

import json
import time
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import override_settings

from channels_sync.adapters import adapter_class
from channels_sync.models import Channel, Conflict
from channels_sync.ratelimit import rate_limit_take
from channels_sync.sandbox.tiktok import INVENTORY_STATUS_CHANGE
from channels_sync.services.push import channel_push
from channels_sync.services.reconcile import channel_reconcile
from core.models import DeadLetter
from core.sandbox import Fault
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent
from webhooks.tasks import process_event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("_no_settle"),
]


@pytest.fixture
def _no_settle(settings):
    settings.CHANNEL_RECONCILE_SETTLE_SECONDS = 0


@pytest.fixture
def pushed(hooked, stocked, warehouse):
    """A channel on a sandbox with two listings pushed at 5 and 6, webhooks to the server."""

    def make(server, kind):
        products = [stocked(5), stocked(6)]
        channel = hooked(server, kind, warehouses=[warehouse], products=products, dirty=True)
        assert channel_push(channel_id=channel.pk).pushed == 2
        return channel

    return make


@pytest.mark.parametrize("kind", ["shopee", "tiktok", "tokopedia"])
def test_stock_report_records_the_observation_and_opens_a_conflict(request, pushed, kind):
    server = request.getfixturevalue(kind)
    channel = pushed(server, kind)

    delivery = server.app.stock_set_external(listing_keys(kind, 1), 2)

    assert delivery.http_status == 200
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.status) == ("stock", WebhookEvent.Status.PROCESSED)
    conflict = Conflict.objects.get()
    assert conflict.source == Conflict.Source.WEBHOOK
    assert (conflict.ours, conflict.theirs) == (Decimal(6), Decimal(2))
    cls = adapter_class(kind)
    columns = cls.keys_to_columns(cls.keys_clean(listing_keys(kind, 1)))
    listing = channel.listings.get(external_variant_id=columns["external_variant_id"])
    assert listing.last_observed_quantity == 2
    assert conflict.listing_id == listing.pk


def test_stock_report_agreeing_with_ours_opens_nothing(tiktok, pushed):
    channel = pushed(tiktok, "tiktok")

    tiktok.app.stock_set_external(listing_keys("tiktok", 0), 5)

    assert WebhookEvent.objects.get(channel=channel).status == WebhookEvent.Status.PROCESSED
    assert not Conflict.objects.exists()


def test_stock_report_duplicate_is_kept_once(shopee, pushed, live_server):
    channel = pushed(shopee, "shopee")
    body, headers = shopee.app.stock_notification(listing_keys("shopee", 1), 0)
    shopee.app.stock_set_external(listing_keys("shopee", 1), 0, notify=False)
    url = shopee.app.options["webhook_url"]

    first = shopee.app._deliver("", "stock", body, headers)
    again = shopee.app._deliver("", "stock", body, headers)

    assert (first.http_status, again.http_status) == (200, 200)
    assert WebhookEvent.objects.filter(channel=channel).count() == 1
    assert Conflict.objects.count() == 1
    assert url.startswith(live_server.url)


def test_stock_report_for_an_unknown_listing_is_ignored(tiktok, pushed):
    channel = pushed(tiktok, "tiktok")
    tiktok.app.seed_listings([{"product_id": "777", "sku_id": "888"}])

    tiktok.app.stock_set_external({"product_id": "777", "sku_id": "888"}, 3)

    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.status) == ("stock", WebhookEvent.Status.IGNORED)
    assert not Conflict.objects.exists()


def test_stock_report_for_a_dirty_listing_records_without_conflict(shopee, pushed):
    channel = pushed(shopee, "shopee")
    channel.listings.update(dirty=True)

    shopee.app.stock_set_external(listing_keys("shopee", 0), 1)

    assert WebhookEvent.objects.get(channel=channel).status == WebhookEvent.Status.PROCESSED
    assert not Conflict.objects.exists()
    assert set(channel.listings.values_list("last_observed_quantity", flat=True)) == {1, None}


def test_stock_report_read_back_failing_is_retried(shopee, pushed):
    # Shopee's push names the model without its stock: the processing reads it back
    channel = pushed(shopee, "shopee")
    shopee.app.configure(error_ratio=1.0)

    shopee.app.stock_set_external(listing_keys("shopee", 0), 1)

    event = WebhookEvent.objects.get(channel=channel)
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.next_attempt_at is not None
    assert "retryable" in event.error
    assert not Conflict.objects.exists()


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (
            "shopee",
            {
                "code": 8,
                "shop_id": 1,
                "timestamp": 1700000000,
                "data": {"item_id": 1000, "variation_id": 5000, "action": "place_order"},
            },
        ),
        (
            "tiktok",
            {
                "type": 27,
                "tts_notification_id": "7327112393057371910",
                "shop_id": "1",
                "timestamp": 1644412885,
                "data": {
                    "product_id": "1000",
                    "sku_id": "5000",
                    "inventory_distribution": {"available_quantity": 50},
                    "update_time": 1627587600,
                },
            },
        ),
    ],
)
def test_adapters_parse_stock_reports(kind, body):
    from tests.channels_sync.factories import credentials_for

    adapter = adapter_class(kind)(base_url="http://127.0.0.1:9", credentials=credentials_for(kind))

    event = adapter.webhook_parse(body=json.dumps(body).encode())

    assert event.topic == "stock"
    (report,) = event.stock
    if kind == "shopee":
        assert (report.keys, report.quantity) == ({"item_id": "1000", "model_id": "5000"}, None)
    else:
        assert (report.keys, report.quantity) == ({"product_id": "1000", "sku_id": "5000"}, 50)
        assert event.event_key == "7327112393057371910"
        assert event.updated_at.timestamp() == 1627587600


def test_adapter_stock_report_of_another_shop_is_other():
    from tests.channels_sync.factories import credentials_for

    adapter = adapter_class("shopee")(
        base_url="http://127.0.0.1:9", credentials=credentials_for("shopee")
    )
    body = {"code": 8, "shop_id": 99, "timestamp": 1, "data": {"item_id": 1, "variation_id": 2}}

    assert adapter.webhook_parse(body=json.dumps(body).encode()).topic == "other"


@override_settings(CHANNEL_RECONCILE_SETTLE_SECONDS=30)
def test_stock_report_processing_waits_the_settle_time(shopee, pushed, monkeypatch):
    from webhooks.services import intake

    calls = []
    monkeypatch.setattr(intake.process_event, "apply_async", lambda **kwargs: calls.append(kwargs))
    pushed(shopee, "shopee")

    shopee.app.stock_set_external(listing_keys("shopee", 0), 1)

    assert [call.get("countdown") for call in calls] == [30]


def test_stock_report_with_an_absurd_quantity_is_read_back_and_never_fails(tiktok, pushed):
    # given TikTok reports (and then shows) 10^12 units of one listing
    channel = pushed(tiktok, "tiktok")

    # when
    delivery = tiktok.app.stock_set_external(listing_keys("tiktok", 0), 10**12)

    # then the event is processed: no observation, no conflict, nothing failed
    assert delivery.http_status == 200
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.status, event.error) == ("stock", WebhookEvent.Status.PROCESSED, "")
    assert not Conflict.objects.exists()
    assert set(channel.listings.values_list("last_observed_quantity", flat=True)) == {None}


def test_stock_report_read_back_takes_a_token_from_the_channels_bucket(shopee, pushed):
    # given a channel whose bucket (shared with its pushes and reconciliations) is spent
    channel = pushed(shopee, "shopee")
    Channel.objects.filter(pk=channel.pk).update(rate_limit_per_second=0.01, rate_limit_burst=1)
    assert rate_limit_take(f"channel:{channel.pk}", rate=0.01, burst=1) == 0
    reads = shopee.app.counts["reads"]
    try:
        # when a report needing a read-back arrives
        shopee.app.stock_set_external(listing_keys("shopee", 0), 1)

        # then nothing is read now: the event waits for a token, its attempt given back
        event = WebhookEvent.objects.get(channel=channel)
        assert shopee.app.counts["reads"] == reads
        assert (event.status, event.attempts) == (WebhookEvent.Status.RECEIVED, 0)
        assert event.next_attempt_at is not None
        assert "rate limit" in event.error
    finally:
        cache.delete(f"ratelimit:channel:{channel.pk}")


def test_stock_report_throttled_read_back_never_uses_up_attempts(shopee, pushed, settings):
    # given a marketplace throttling the next reads, more than the event's retries
    channel = pushed(shopee, "shopee")
    throttled = settings.WEBHOOK_PROCESS_MAX_RETRIES + 3
    shopee.app.inject(Fault(status=429, count=throttled))

    # when the report arrives and its processing is tried again until it goes through (a
    # read may also wait on the channel's own bucket after a 429: how many tries that takes
    # depends on timing, not on attempts)
    shopee.app.stock_set_external(listing_keys("shopee", 0), 1)
    event = WebhookEvent.objects.get(channel=channel)
    outcomes = []
    while "processed" not in outcomes and len(outcomes) < 3 * throttled:
        outcomes.append(process_event.apply(args=[event.pk]).result)
        if outcomes[-1] == "throttled":
            event.refresh_from_db()
            # then it is never failed nor dead-lettered, and no attempt is used up
            assert (event.status, event.attempts) == (WebhookEvent.Status.RECEIVED, 0)
            assert not DeadLetter.objects.exists()

    # and once the marketplace answers, it is processed: more throttled tries than the
    # event's retries went by without failing it
    assert outcomes[-1] == "processed"
    assert set(outcomes[:-1]) == {"throttled"}
    assert len(outcomes) - 1 > settings.WEBHOOK_PROCESS_MAX_RETRIES
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Conflict.objects.get().theirs == Decimal(1)


def test_stock_report_dated_ahead_of_our_clock_is_observed_when_received(tiktok, pushed):
    # given: a report whose update time is an hour ahead of ours (the marketplace's clock)
    channel = pushed(tiktok, "tiktok")
    keys = listing_keys("tiktok", 1)
    tiktok.app.stock_set_external(keys, 2, notify=False)
    body, headers = tiktok.app.signed_webhook(
        INVENTORY_STATUS_CHANGE,
        {
            "product_id": keys["product_id"],
            "sku_id": keys["sku_id"],
            "current_inventory_status": "LOW_STOCK",
            "inventory_distribution": {"total_quantity": 2, "available_quantity": 2},
            "update_time": int(time.time()) + 3600,
        },
    )

    # when
    assert tiktok.app._deliver("", "stock", body, headers).http_status == 200

    # then: observed no later than received, so a read back after it is not stale
    event = WebhookEvent.objects.get(channel=channel)
    assert event.status == WebhookEvent.Status.PROCESSED
    listing = Conflict.objects.get(status=Conflict.Status.OPEN).listing
    assert listing.last_observed_at <= event.received_at
    tiktok.app.stock_set_external(keys, 6, notify=False)
    report = channel_reconcile(channel_id=channel.pk, trigger="test")
    listing.refresh_from_db()
    assert listing.last_observed_quantity == 6
    assert report.conflicts_closed == 1
    assert not Conflict.objects.filter(status=Conflict.Status.OPEN).exists()


def test_stock_report_read_back_with_the_cache_down_waits_without_failing(shopee, pushed, settings):
    # given a Shopee stock report (its quantity is read back under the channel's rate limit)
    channel = pushed(shopee, "shopee")
    shopee.app.stock_set_external(listing_keys("shopee", 0), 1)
    event = WebhookEvent.objects.get(channel=channel)
    WebhookEvent.objects.filter(pk=event.pk).update(status=WebhookEvent.Status.RECEIVED)
    attempts = WebhookEvent.objects.get(pk=event.pk).attempts

    # when the cache holding the rate limit's bucket is unreachable
    down = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(CACHES={**settings.CACHES, "default": down}):
        outcome = process_event.apply(args=[event.pk]).result

    # then the event waits like a throttled one: no attempt used, not failed, no dead letter
    assert outcome == "throttled"
    event.refresh_from_db()
    assert (event.status, event.attempts) == (WebhookEvent.Status.RECEIVED, attempts)
    assert not DeadLetter.objects.exists()
