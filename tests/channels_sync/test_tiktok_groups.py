"""TikTok Shop push groups: every warehouse of a SKU in each update even when one has no
listing here or its listing is excluded, and an unchanged warehouse pulled in only to
complete its SKU never pays for its sibling's refusal."""

import json
from decimal import Decimal

from channels_sync.adapters.base import Outcome, StockUpdate
from channels_sync.adapters.tiktok import TikTokAdapter
from channels_sync.models import ChannelListing
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from core.sandbox import Fault
from inventory.services import Origin, stock_adjust, stock_set
from tests.inventory.factories import ProductFactory

PRODUCT = "1729592969712207008"
SKU = "1729592969712207012"
EAST, WEST, NORTH = "7068517275539719001", "7068517275539719002", "7068517275539719003"
AT_EAST = {"product_id": PRODUCT, "sku_id": SKU, "warehouse_id": EAST}
AT_WEST = {"product_id": PRODUCT, "sku_id": SKU, "warehouse_id": WEST}
AT_NORTH = {"product_id": PRODUCT, "sku_id": SKU, "warehouse_id": NORTH}
SEARCH = "/product/202309/inventory/search"
UPDATE = f"/product/202309/products/{PRODUCT}/inventory/update"
ORIGIN = Origin(source="test", actor="test")


def update(listing_id: int, keys: dict, quantity: int, **extra) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys=dict(keys), quantity=quantity, **extra)


def adapter_for(server) -> TikTokAdapter:
    return TikTokAdapter(
        base_url=server.url, auth_base_url=server.url, credentials=server.app.credentials()
    )


def inventory_sent(request) -> dict[str, int]:
    """Warehouse -> quantity of the one SKU of an inventory update's body."""
    (sku,) = json.loads(request.body)["skus"]
    return {row["warehouse_id"]: row["quantity"] for row in sku["inventory"]}


# --- the adapter ------------------------------------------------------------------------------


def test_tiktok_fills_in_a_warehouse_without_listing_from_one_read_before_the_update(tiktok):
    # given: the SKU is stocked in three warehouses; the channel knows two of them
    tiktok.app.seed_listings(
        [{**AT_EAST, "quantity": 1}, {**AT_WEST, "quantity": 2}, {**AT_NORTH, "quantity": 11}]
    )

    result = adapter_for(tiktok).push_stock([update(1, AT_EAST, 5), update(2, AT_WEST, 6)])

    assert result.outcome == Outcome.OK
    assert [(item.listing_id, item.ok) for item in result.items] == [(1, True), (2, True)]
    read, write = tiktok.app.requests[-2:]
    assert (read.path, json.loads(read.body)) == (SEARCH, {"sku_ids": [SKU]})
    assert write.path == UPDATE
    assert inventory_sent(write) == {EAST: 5, WEST: 6, NORTH: 11}
    assert [tiktok.app.quantity(k) for k in (AT_EAST, AT_WEST, AT_NORTH)] == [5, 6, 11]


def test_tiktok_passenger_goes_at_the_figure_read_just_before_the_update(tiktok):
    # given: west (a listing the push does not manage) last known at 6, sold down to 4 since
    tiktok.app.seed_listings([{**AT_EAST, "quantity": 1}, {**AT_WEST, "quantity": 4}])

    result = adapter_for(tiktok).push_stock(
        [update(1, AT_EAST, 5), update(2, AT_WEST, 6, expected=6, passenger=True)]
    )

    assert result.outcome == Outcome.OK
    assert inventory_sent(tiktok.app.requests[-1]) == {EAST: 5, WEST: 4}
    assert tiktok.app.quantity(AT_WEST) == 4


def test_tiktok_failed_read_makes_the_batch_retryable_and_sends_no_update(tiktok):
    tiktok.app.seed_listings([{**AT_EAST, "quantity": 1}, {**AT_WEST, "quantity": 2}])
    tiktok.app.inject(Fault(status=200, body='{"code":12052048,"message":"Not in the shop."}'))

    result = adapter_for(tiktok).push_stock([update(1, AT_EAST, 5)])

    assert result.outcome == Outcome.RETRYABLE
    assert result.error.startswith("inventory read before the update: ")
    assert [request.path for request in tiktok.app.requests] == [SEARCH]
    assert tiktok.app.quantity(AT_EAST) == 1


def test_tiktok_read_throttled_or_token_expired_keeps_its_outcome(tiktok):
    tiktok.app.seed_listings([{**AT_EAST, "quantity": 1}])
    adapter = adapter_for(tiktok)
    tiktok.app.inject(Fault(status=429, body='{"code":36009002,"message":"Too many requests"}'))
    throttled = adapter.push_stock([update(1, AT_EAST, 5)])
    tiktok.app.expire_tokens()
    expired = adapter.push_stock([update(1, AT_EAST, 5)])

    assert (throttled.outcome, throttled.token_expired) == (Outcome.THROTTLED, False)
    assert (expired.outcome, expired.token_expired) == (Outcome.AUTH, True)
    assert [request.path for request in tiktok.app.requests] == [SEARCH, SEARCH]
    assert tiktok.app.quantity(AT_EAST) == 1


def test_tiktok_single_warehouse_listing_is_sent_without_a_read(tiktok):
    keys = {"product_id": PRODUCT, "sku_id": SKU}
    tiktok.app.seed_listings([{**keys, "quantity": 1}])

    result = adapter_for(tiktok).push_stock([update(1, keys, 5)])

    assert result.outcome == Outcome.OK
    assert [request.path for request in tiktok.app.requests] == [UPDATE]


# --- the push pipeline ---------------------------------------------------------------------------


def _listing(channel, warehouse, keys, *, stock, **fields) -> ChannelListing:
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(stock), origin=ORIGIN)
    return ChannelListing.objects.create(
        channel=channel, product=product, **TikTokAdapter.keys_to_columns(keys), **fields
    )


def test_push_sends_an_excluded_warehouse_at_its_figure_and_an_unlisted_one_read(
    tiktok, wire, warehouse
):
    # given: east is synced; west's listing is excluded (the shop shows 6, our last push);
    # north has no listing here; TikTok wants all three in every update of the SKU
    tiktok.app.seed_listings(
        [{**AT_EAST, "quantity": 2}, {**AT_WEST, "quantity": 6}, {**AT_NORTH, "quantity": 11}]
    )
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    east = _listing(channel, warehouse, AT_EAST, stock=2, last_pushed_quantity=2)
    west = _listing(
        channel,
        warehouse,
        AT_WEST,
        stock=40,
        status=ChannelListing.Status.EXCLUDED,
        last_pushed_quantity=6,
    )

    # when: east's stock changes
    stock_adjust(product=east.product, warehouse=warehouse, delta=Decimal(7), origin=ORIGIN)
    report = channel_push(channel_id=channel.pk)

    # then: one update names the three warehouses, west and north at what the shop shows
    assert (report.pushed, report.dead_lettered, report.failed) == (1, 0, 0)
    assert inventory_sent(tiktok.app.requests[-1]) == {EAST: 9, WEST: 6, NORTH: 11}
    assert [tiktok.app.quantity(k) for k in (AT_EAST, AT_WEST, AT_NORTH)] == [9, 6, 11]
    east.refresh_from_db()
    west.refresh_from_db()
    assert (east.status, east.last_pushed_quantity, east.dirty) == ("ok", 9, False)
    # not recorded as pushed by us: the excluded listing is as it was
    assert (west.status, west.last_pushed_quantity, west.last_pushed_at) == ("excluded", 6, None)
    assert not DeadLetter.objects.exists()


def test_push_excluded_warehouse_without_a_known_figure_is_read(tiktok, wire, warehouse):
    tiktok.app.seed_listings([{**AT_EAST, "quantity": 2}, {**AT_WEST, "quantity": 3}])
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    _listing(channel, warehouse, AT_EAST, stock=8, dirty=True)
    west = _listing(channel, warehouse, AT_WEST, stock=40, status=ChannelListing.Status.EXCLUDED)

    report = channel_push(channel_id=channel.pk)

    assert (report.pushed, report.dead_lettered) == (1, 0)
    assert inventory_sent(tiktok.app.requests[-1]) == {EAST: 8, WEST: 3}
    west.refresh_from_db()
    assert (west.status, west.last_pushed_quantity) == ("excluded", None)


def _two_warehouses_pushed(tiktok, wire, warehouse):
    """East and west listings of one SKU, both pushed (east 4, west 6), then east changes."""
    tiktok.app.seed_listings([{**AT_EAST, "quantity": 4}, {**AT_WEST, "quantity": 6}])
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    east = _listing(channel, warehouse, AT_EAST, stock=4, last_pushed_quantity=4)
    west = _listing(channel, warehouse, AT_WEST, stock=6, last_pushed_quantity=6)
    stock_adjust(product=east.product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    return channel, east, west


def test_push_sibling_refused_leaves_the_unchanged_member_as_it_was(tiktok, wire, warehouse):
    # given: a promotion locks east's inventory on TikTok
    channel, east, west = _two_warehouses_pushed(tiktok, wire, warehouse)
    tiktok.app.configure(reject=[AT_EAST])

    report = channel_push(channel_id=channel.pk)

    # then: east alone is dead-lettered; west keeps its status, figure and schedule
    assert (report.pushed, report.dead_lettered, report.failed) == (0, 1, 1)
    east.refresh_from_db()
    west.refresh_from_db()
    assert (east.status, east.last_pushed_quantity) == ("error", None)
    assert east.last_error.startswith("12052393 ")
    assert (west.status, west.last_pushed_quantity, west.last_error) == ("ok", 6, "")
    assert (west.push_failures, west.next_push_at, west.dirty) == (0, None, False)
    assert list(DeadLetter.objects.values_list("kwargs", flat=True)) == [{"listing_id": east.pk}]
    assert [tiktok.app.quantity(k) for k in (AT_EAST, AT_WEST)] == [4, 6]


def test_push_retryable_batch_backs_off_only_the_changed_member(tiktok, wire, warehouse):
    # given: the read before the update fails (TikTok busy): the batch is retried later
    channel, east, west = _two_warehouses_pushed(tiktok, wire, warehouse)
    tiktok.app.inject(Fault(status=503, body='{"code":36009003,"message":"Internal error."}'))

    report = channel_push(channel_id=channel.pk)

    east.refresh_from_db()
    west.refresh_from_db()
    assert (report.dead_lettered, report.failed, report.pushed) == (0, 1, 0)
    assert (east.push_failures, east.dirty, east.status) == (1, True, "ok")
    assert east.next_push_at is not None
    # the unchanged member neither backs off nor loses its figure
    assert (west.push_failures, west.next_push_at, west.last_pushed_quantity) == (0, None, 6)
    assert (west.status, west.last_error) == ("ok", "")
    assert [tiktok.app.quantity(k) for k in (AT_EAST, AT_WEST)] == [4, 6]
