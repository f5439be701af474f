"""Amazon under hostile limits: a shared cache that is down, a rate header out of all
proportion, and a clock of ours running ahead of Amazon's."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_sync.adapters.amazon import AmazonAdapter, client, inflight
from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.sandbox.amazon import AmazonSandbox
from core.sandbox import SandboxServer

SKUS = [f"LIM-{n:02d}" for n in range(25)]


def updates(quantities: dict[str, int]) -> list[StockUpdate]:
    return [
        StockUpdate(listing_id=n, keys={"seller_sku": sku}, quantity=q)
        for n, (sku, q) in enumerate(quantities.items(), start=1)
    ]


@pytest.fixture(scope="module")
def server():
    with SandboxServer(AmazonSandbox()) as running:
        yield running


@pytest.fixture
def sandbox(server, settings) -> AmazonSandbox:
    settings.AMAZON_FEED_POLL_SECONDS = 0.05
    settings.AMAZON_FEED_MAX_WAIT_SECONDS = 0.3
    app = server.app
    app.reset()
    app.configure(listings=[{"seller_sku": sku, "quantity": 1} for sku in SKUS], order_age=300)
    return app


@pytest.fixture
def adapter(server, sandbox) -> AmazonAdapter:
    return AmazonAdapter(base_url=server.url, credentials=sandbox.credentials())


@pytest.fixture
def cache_down(settings):
    """The shared cache (Redis) unreachable: nothing listens on port 1."""
    down = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(CACHES={**settings.CACHES, "default": down}):
        yield
    inflight.local_forget_all()


# --- the cache down -------------------------------------------------------------------------------


def test_amazon_with_the_cache_down_pushes_reads_and_lists_orders_paced_in_process(
    adapter, sandbox, cache_down, caplog
):
    # when every Amazon call runs with the rate limit's shared buckets unreachable
    patched = adapter.push_stock(updates({"LIM-00": 4, "LIM-01": 5}))
    observed = adapter.fetch_stock([{"seller_sku": "LIM-00"}])
    order = sandbox.order_create(
        lines=[{"keys": {"seller_sku": "LIM-02"}, "sku": "LIM-02", "quantity": 1}],
        status="Unshipped",
    )
    now = timezone.now()
    listed = adapter.orders_updated(since=now - timedelta(hours=1), until=now)

    # then they all went through, paced by this process's buckets, the outage logged
    assert patched.outcome == Outcome.OK
    assert [(o.keys, o.quantity) for o in observed] == [({"seller_sku": "LIM-00"}, 4)]
    assert [ref.external_id for ref in listed] == [order.order_id]
    assert any(
        "cache.degraded" in r.getMessage() and "amazon_rate_limit" in r.getMessage()
        for r in caplog.records
    )


def test_amazon_with_the_cache_down_a_live_feed_is_remembered_in_process(
    adapter, sandbox, cache_down, caplog
):
    sandbox.configure(feed_delay=30)

    first = adapter.push_stock(updates(dict.fromkeys(SKUS, 5)))
    second = adapter.push_stock(updates({"LIM-00": 9}))

    # then the feed is held in this process's memory: the second push sends nothing
    assert (first.outcome, second.outcome) == (Outcome.THROTTLED, Outcome.THROTTLED)
    assert sum(1 for r in sandbox.requests if r.path == "/feeds/2021-06-30/feeds") == 1
    assert all(r.method != "PATCH" for r in sandbox.requests)
    assert any("amazon_feeds_inflight" in r.getMessage() for r in caplog.records)


# --- rate headers and inline sleeps ---------------------------------------------------------------


def test_amazon_rate_header_is_clamped_to_the_documented_range(adapter, sandbox):
    sandbox.configure(
        rate_limits={"getListingsItem": [1e-300, 10], "patchListingsItem": [1e300, 5]}
    )

    adapter.fetch_stock([{"seller_sku": "LIM-00"}])
    adapter.push_stock(updates({"LIM-00": 2}))

    # a tenth of the documented 5/s at least, twice it at most
    assert adapter.client.rates == {"getListingsItem": 0.5, "patchListingsItem": 10.0}
    assert client.rate_clamped("createFeed", 1e-300) == pytest.approx(0.00083)
    assert client.rate_clamped("getOrders", 0.0167) == 0.0167


def test_amazon_throttle_waits_are_slept_in_place_only_when_short(adapter, sandbox, monkeypatch):
    # given Amazon naming a vanishing rate for getListingsItem, with a burst of one
    slept: list[float] = []
    monkeypatch.setattr(client.time, "sleep", slept.append)
    sandbox.configure(rate_limits={"getListingsItem": [1e-300, 1]})
    adapter.fetch_stock([{"seller_sku": "LIM-00"}])

    # when the next read is answered 429 every time
    with pytest.raises(AdapterError) as short:
        adapter.fetch_stock([{"seller_sku": "LIM-01"}])

    # then each wait was one token at the clamped rate (0.5/s under the 0.8 margin), not an hour
    assert slept == [2.5, 2.5, 2.5]
    assert (short.value.outcome, short.value.retry_after) == (Outcome.THROTTLED, 2.5)

    # and a wait longer than a worker may sleep goes back at once, as a throttle
    slept.clear()
    monkeypatch.setattr(client, "INLINE_SLEEP_MAX_SECONDS", 1.0)
    with pytest.raises(AdapterError) as long:
        adapter.fetch_stock([{"seller_sku": "LIM-01"}])
    assert slept == []
    assert (long.value.outcome, long.value.retry_after) == (Outcome.THROTTLED, 2.5)


# --- clocks ---------------------------------------------------------------------------------------


def test_amazon_order_list_tolerates_our_clock_a_little_ahead(adapter, sandbox, monkeypatch):
    order = sandbox.order_create(
        lines=[{"keys": {"seller_sku": "LIM-02"}, "sku": "LIM-02", "quantity": 1}],
        status="Unshipped",
    )
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=5))
    now = timezone.now()

    listed = adapter.orders_updated(since=now - timedelta(hours=1), until=now)

    assert [ref.external_id for ref in listed] == [order.order_id]
    assert AmazonAdapter.orders_lag_seconds == 130


def test_amazon_order_list_refused_for_its_time_is_retryable(adapter, sandbox, monkeypatch):
    # our clock 30 s ahead: past the margin, Amazon refuses LastUpdatedBefore (400)
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=30))
    now = timezone.now()

    with pytest.raises(AdapterError) as refused:
        adapter.orders_updated(since=now - timedelta(hours=1), until=now)

    assert refused.value.outcome == Outcome.RETRYABLE
    assert "LastUpdatedBefore must be no later than two minutes" in str(refused.value)
    # another 400 of getOrders stays permanent
    sandbox.marketplace_id = "A1OTHER"
    try:
        with pytest.raises(AdapterError) as other:
            adapter.orders_updated(since=now - timedelta(hours=2), until=now - timedelta(hours=1))
    finally:
        sandbox.marketplace_id = "ATVPDKIKX0DER"
    assert other.value.outcome == Outcome.PERMANENT
