"""The push pipeline on an Amazon channel: the rate Amazon names is honoured, and both paths
(patches, feeds) converge under errors and throttling."""

import random
import time
from decimal import Decimal

import pytest

from channels_sync.adapters.amazon import AmazonAdapter
from channels_sync.models import ChannelListing, PushAttempt
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from inventory.services import stock_adjust
from tests.channels_sync.test_push import FAST, ORIGIN, _desired, _products, _sandbox_quantities


@pytest.fixture
def fast(settings):
    for name, value in FAST.items():
        setattr(settings, name, value)
    settings.AMAZON_FEED_POLL_SECONDS = 0.05
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 5.0


def first_call_fails(ratio: float) -> int:
    """A fault seed whose first stock call fails (the gate draws timeout, then error)."""
    for seed in range(1000):
        rng = random.Random(seed)
        rng.random()
        if rng.random() < ratio:
            return seed
    raise AssertionError("no seed")


def converge(channel, rounds: int = 40) -> list:
    """Push until nothing is dirty; a run stopped by throttles is requeued after its wait, as
    the push task does (cut to a second: the sandbox counts throttles per second)."""
    reports = []
    for _ in range(rounds):
        report = channel_push(channel_id=channel.pk, respect_backoff=False)
        reports.append(report)
        if not ChannelListing.objects.filter(channel=channel, dirty=True).exists():
            break
        if report.stopped == "throttled":
            time.sleep(min(report.requeue_after or 0.0, 1.1))
    return reports


def test_amazon_push_sends_desired_quantities_by_patch(amazon, wire, warehouse):
    products = _products(warehouse, [5, 0, "7.5"])
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=products, dirty=True)

    report = channel_push(channel_id=channel.pk)

    assert (report.pushed, report.calls) == (3, 1)
    assert sorted(_sandbox_quantities(amazon, channel).values()) == [0, 5, 7]
    assert [r.method for r in amazon.app.requests] == ["PATCH"] * 3


def test_amazon_push_honours_the_rate_amazon_names(amazon, wire, warehouse, fast):
    # given Amazon naming 2 patches a second (burst 2, not the documented 5), and a channel
    # allowing 1000 calls a second with a burst of one
    amazon.app.configure(rate_limits={"patchListingsItem": [2.0, 2]})
    products = _products(warehouse, [1, 2, 3, 4, 5])
    channel = wire(
        amazon,
        "amazon",
        warehouses=[warehouse],
        products=products,
        dirty=True,
        batch_size=1,
        rate_limit_per_second=1000,
        rate_limit_burst=1,
    )

    report = channel_push(channel_id=channel.pk)

    # then the run slowed to that rate after the first answer (the adapter alone, with the
    # documented burst of 5, would have sent the first five at once): no 429
    assert report.pushed == 5
    assert report.throttled == 0
    assert amazon.app.op_throttled == {}
    assert amazon.app.max_in_window("patchListingsItem", 1.0) <= 2 + 2
    assert report.waited_seconds >= 1.5  # four waits of about 0.5 s in the push's own bucket


def test_amazon_push_by_patch_converges_under_errors_and_throttling(amazon, wire, warehouse, fast):
    amazon.app.configure(error_ratio=0.3, throttle_per_second=3, seed=11)
    products = _products(warehouse, range(1, 9))
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=products, dirty=True)
    for product in products[::2]:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(4), origin=ORIGIN)

    reports = converge(channel)

    assert _sandbox_quantities(amazon, channel) == _desired(channel)
    assert not channel.listings.exclude(status="ok").exists()
    assert amazon.app.counts["errors"] > 0
    assert amazon.app.counts["throttled"] > 0
    assert all(r.stopped in ("", "throttled") for r in reports)
    assert PushAttempt.objects.filter(channel=channel, outcome="retryable").exists()


def test_amazon_push_by_feed_converges_and_dead_letters_only_the_refused_sku(
    amazon, wire, warehouse, fast, settings
):
    # given a feed for every push of more than 5 SKUs, 30% of createFeed calls failing, one
    # createFeed a second accepted, feeds taking a moment, and one SKU Amazon refuses
    settings.AMAZON_FEED_THRESHOLD = 5
    amazon.app.configure(
        error_ratio=0.3,
        throttle_per_second=1,
        seed=first_call_fails(0.3),
        feed_delay=0.1,
        rate_limits={
            "createFeedDocument": [50.0, 50],
            "createFeed": [50.0, 50],
            "getFeedDocument": [50.0, 50],
        },
        reject=[{"seller_sku": "SKU-3"}],
    )
    products = _products(warehouse, range(1, 13))
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=products, dirty=True)

    reports = converge(channel)

    # then every other listing shows its desired quantity, through feeds only
    desired = _desired(channel)
    shown = _sandbox_quantities(amazon, channel)
    refused = channel.listings.get(external_item_id="SKU-3")
    assert shown.pop(refused.pk) == 0
    assert shown == {pk: q for pk, q in desired.items() if pk != refused.pk}
    assert refused.status == "error"
    assert DeadLetter.objects.get().kwargs == {"listing_id": refused.pk}
    assert not any(r.method == "PATCH" for r in amazon.app.requests)
    # the failed createFeed was retried at once, inside the sandbox's one-a-second window
    assert amazon.app.counts["errors"] > 0
    assert amazon.app.counts["throttled"] > 0
    assert sum(r.throttled for r in reports) > 0
    assert not channel.listings.filter(dirty=True).exists()


def test_amazon_push_never_sends_over_a_live_feed_so_the_newest_quantities_land_last(
    amazon, wire, warehouse, fast, settings
):
    # given feeds for pushes of more than 2 SKUs, taking 2.5 s on Amazon's side, a push
    # waiting 0.2 s for one, and a run allowed 0.3 s of throttle waits in place
    settings.AMAZON_FEED_THRESHOLD = 2
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.2
    settings.CHANNEL_PUSH_INLINE_WAIT_SECONDS = 0.3
    amazon.app.configure(feed_delay=2.5)
    products = _products(warehouse, [3, 4, 5])
    channel = wire(amazon, "amazon", warehouses=[warehouse], products=products, dirty=True)

    # when the first push leaves its feed running, and the stock changes meanwhile
    started = time.monotonic()
    first = channel_push(channel_id=channel.pk)
    for product in products:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(10), origin=ORIGIN)
    second = channel_push(channel_id=channel.pk, respect_backoff=False)

    # then both runs stopped throttled, using no attempt, and sent one feed in all
    for report in (first, second):
        assert (report.pushed, report.failed, report.stopped) == (0, 0, "throttled")
        assert report.requeue_after == pytest.approx(0.05)
    assert set(PushAttempt.objects.filter(channel=channel).values_list("outcome", flat=True)) == {
        "throttled"
    }
    assert not channel.listings.filter(push_failures__gt=0).exists()
    created = [r for r in amazon.app.requests if r.path == "/feeds/2021-06-30/feeds"]
    assert len(created) == 1
    assert time.monotonic() - started < 2.5  # (the test's own timing: still live by now)

    # when the feed has landed, the next run sends the new quantities, and they stay
    time.sleep(max(0.0, started + 2.6 - time.monotonic()))
    amazon.app.configure(feed_delay=0)  # (the new feed is processed at once)
    third = channel_push(channel_id=channel.pk, respect_backoff=False)
    assert third.pushed == 3
    assert sorted(_sandbox_quantities(amazon, channel).values()) == [13, 14, 15]
    assert [q for _sku, q in amazon.app.updates] == sorted([3, 4, 5]) + sorted([13, 14, 15])


def test_amazon_adapter_is_the_channels_adapter(amazon, wire):
    from channels_sync.services.tokens import channel_adapter

    channel = wire(amazon, "amazon", products=(), options={"product_type": "SHOES"})
    adapter = channel_adapter(channel)
    assert isinstance(adapter, AmazonAdapter)
    assert adapter.product_type == "SHOES"
