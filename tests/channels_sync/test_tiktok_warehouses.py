"""TikTok Shop: every warehouse of a SKU in each update (the push groups end to end), and the
token and timeout codes of every call path."""

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from channels_sync import selectors
from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.tiktok import TikTokAdapter, json_body, whole_call_outcome
from channels_sync.models import ChannelListing, PushAttempt
from channels_sync.sandbox.tiktok import TikTokSandbox
from channels_sync.services.push import channel_push
from channels_sync.services.tokens import channel_adapter
from core.models import DeadLetter
from core.sandbox import Fault, SandboxServer
from inventory.services import Origin, stock_adjust, stock_set
from tests.inventory.factories import ProductFactory

PRODUCT = "1729592969712207008"
EAST, WEST = "7068517275539719001", "7068517275539719002"
TWO_EAST = {"product_id": PRODUCT, "sku_id": "1729592969712207012", "warehouse_id": EAST}
TWO_WEST = {"product_id": PRODUCT, "sku_id": "1729592969712207012", "warehouse_id": WEST}
ONE = {"product_id": PRODUCT, "sku_id": "1729592969712207013"}  # a single warehouse
ORIGIN = Origin(source="test", actor="test")


def update(listing_id: int, keys: dict, quantity: int) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys=dict(keys), quantity=quantity)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(TikTokSandbox()) as running:
        yield running


@pytest.fixture
def sandbox(server) -> TikTokSandbox:
    app = server.app
    app.reset()
    app.configure(listings=[{**keys, "quantity": 7} for keys in (TWO_EAST, TWO_WEST, ONE)])
    return app


@pytest.fixture
def adapter(server, sandbox) -> TikTokAdapter:
    return TikTokAdapter(
        base_url=server.url, auth_base_url=server.url, credentials=sandbox.credentials()
    )


# --- every warehouse of a SKU ---------------------------------------------------------------------


def test_tiktok_sandbox_refuses_an_update_that_leaves_out_a_warehouse(adapter, sandbox):
    # a body the adapter would not send (it adds the SKU's other warehouses), sent as is
    body = json_body(
        {
            "skus": [
                {"id": TWO_EAST["sku_id"], "inventory": [{"warehouse_id": EAST, "quantity": 3}]},
                {"id": ONE["sku_id"], "inventory": [{"quantity": 4}]},
            ]
        }
    )
    path = f"/product/202309/products/{PRODUCT}/inventory/update"
    response, _ = adapter._signed("POST", path, body)
    result = adapter._classify_push(response, [update(1, TWO_EAST, 3), update(2, ONE, 4)], 0)

    assert result.outcome == Outcome.PARTIAL
    assert [(item.listing_id, item.ok) for item in result.items] == [(1, False), (2, True)]
    assert result.items[0].error == (
        "12019028 You must include all warehouse IDs assigned to this SKU. Do not omit any."
    )
    assert result.items[0].retryable is False
    errors = json.loads(result.error)["data"]["errors"]
    assert errors[0]["detail"]["extra_errors"] == [
        {
            "warehouse_id": WEST,
            "code": 12019028,
            "message": "You must include all warehouse IDs assigned to this SKU. Do not omit any.",
        }
    ]
    # all or nothing: the named warehouse was not changed either
    assert (sandbox.quantity(TWO_EAST), sandbox.quantity(TWO_WEST), sandbox.quantity(ONE)) == (
        7,
        7,
        4,
    )


def test_tiktok_sku_with_all_its_warehouses_applies_and_reads_back_per_warehouse(adapter, sandbox):
    result = adapter.push_stock([update(1, TWO_EAST, 3), update(2, TWO_WEST, 8)])
    observed = adapter.fetch_stock([TWO_EAST, TWO_WEST, {k: ONE[k] for k in ONE}])

    assert result.outcome == Outcome.OK
    assert json.loads(sandbox.requests[-2].body) == {
        "skus": [
            {
                "id": TWO_EAST["sku_id"],
                "inventory": [
                    {"warehouse_id": EAST, "quantity": 3},
                    {"warehouse_id": WEST, "quantity": 8},
                ],
            }
        ]
    }
    assert [(o.keys, o.quantity) for o in observed] == [(TWO_EAST, 3), (TWO_WEST, 8), (ONE, 7)]
    search = json.loads(sandbox.requests[-1].body)
    assert search == {"sku_ids": [TWO_EAST["sku_id"], ONE["sku_id"]]}


def test_tiktok_batches_never_split_a_skus_warehouses_even_past_the_size():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    third = {**TWO_EAST, "warehouse_id": "W3"}
    updates = [
        update(1, TWO_EAST, 1),
        update(2, ONE, 1),
        update(3, TWO_WEST, 1),
        update(4, third, 1),
    ]

    batches = adapter.batches(updates, 2)

    assert [[u.listing_id for u in batch] for batch in batches] == [[1, 3, 4], [2]]
    assert adapter.push_group(TWO_EAST) == adapter.push_group(TWO_WEST)
    assert adapter.push_group(TWO_EAST) != adapter.push_group(ONE)
    assert adapter.push_group({"product_id": PRODUCT}) is None


# --- token, timeout and parameter codes -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"code": 105002, "message": "Expired credentials."}, (Outcome.AUTH, True)),
        (
            401,
            {
                "code": 36009004,
                "message": "Invalid credentials. The x-tts-access-token header is invalid.",
            },
            (Outcome.AUTH, True),
        ),
        (200, {"code": 101000, "message": "invalid x-tts-access-token"}, (Outcome.AUTH, True)),
        (401, {"code": 105001, "message": "Invalid access token."}, (Outcome.AUTH, True)),
        (
            401,
            {"code": 36009004, "message": "Invalid app_key query parameter."},
            (Outcome.AUTH, False),
        ),
        (400, {"code": 36009004, "message": "Invalid timestamp."}, (Outcome.RETRYABLE, False)),
        (
            400,
            {"code": 36009004, "message": "Invalid parameter: skus."},
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            {"code": 36009007, "message": "Request timeout, try again."},
            (Outcome.RETRYABLE, False),
        ),
        (200, {"code": 36009003, "message": "Internal error."}, (Outcome.RETRYABLE, False)),
        (429, {"code": 36009002, "message": "Too many requests."}, (Outcome.THROTTLED, False)),
        (401, {"code": 106001, "message": "The sign is invalid."}, (Outcome.AUTH, False)),
        (200, {"code": 0, "message": "Success"}, None),
    ],
)
def test_tiktok_whole_call_outcome(status, body, expected):
    assert whole_call_outcome(status, body) == expected


@pytest.mark.parametrize("code", [36009004, 101000])
def test_tiktok_bad_token_codes_ask_for_a_refresh_on_every_call_path(adapter, sandbox, code):
    sandbox.configure(invalid_token_code=code)
    adapter.credentials["access_token"] = "not-a-token"

    pushed = adapter.push_stock([update(1, ONE, 3)])
    with pytest.raises(AdapterError) as reading:
        adapter.fetch_stock([ONE])
    with pytest.raises(AdapterError) as fetching:
        adapter.orders_fetch(["576000000000000001"])
    adapter.token_refresh()
    again = adapter.push_stock([update(1, ONE, 3)])

    assert (pushed.outcome, pushed.token_expired) == (Outcome.AUTH, True)
    assert f'"code": {code}' in pushed.error
    assert (reading.value.outcome, reading.value.token_expired) == (Outcome.AUTH, True)
    assert (fetching.value.outcome, fetching.value.token_expired) == (Outcome.AUTH, True)
    assert again.outcome == Outcome.OK
    assert sandbox.quantity(ONE) == 3


def test_tiktok_timeout_code_is_retryable_whole_and_per_sku(adapter, sandbox):
    sandbox.inject(
        Fault(status=200, body='{"code":36009007,"message":"Request timeout, please try again."}')
    )
    whole = adapter.push_stock([update(1, ONE, 3)])
    per_sku = {
        "code": 0,
        "message": "Success",
        "data": {
            "errors": [
                {
                    "code": 36009007,
                    "message": "Request timeout, please try again.",
                    "detail": {"sku_id": ONE["sku_id"], "extra_errors": []},
                }
            ]
        },
    }
    sandbox.inject(Fault(status=200, body=json.dumps(per_sku)))
    item = adapter.push_stock([update(1, ONE, 3)])

    assert whole.outcome == Outcome.RETRYABLE
    assert item.outcome == Outcome.PARTIAL
    assert (item.items[0].ok, item.items[0].retryable) == (False, True)


# --- the push pipeline end to end -----------------------------------------------------------


def _listings(channel, server, keys_list, quantities, warehouse, dirty=False):
    """Listings of new products holding `quantities`, known to the sandbox at 0."""
    server.app.seed_listings(keys_list, quantity=0)
    products = []
    for quantity in quantities:
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        products.append(product)
    ChannelListing.objects.bulk_create(
        ChannelListing(
            channel=channel, product=product, dirty=dirty, **TikTokAdapter.keys_to_columns(keys)
        )
        for product, keys in zip(products, keys_list, strict=True)
    )
    return products


def test_push_one_changed_warehouse_sends_the_whole_sku_and_converges(tiktok, wire, warehouse):
    # given: a SKU in two warehouses (a listing each) and a single-warehouse SKU, all pushed
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    keys = [TWO_EAST, TWO_WEST, ONE]
    products = _listings(channel, tiktok, keys, [4, 6, 8], warehouse, dirty=True)
    first = channel_push(channel_id=channel.pk)
    assert (first.pushed, first.dead_lettered) == (3, 0)
    calls = len(tiktok.app.requests)

    # when: only the east warehouse's product changes
    stock_adjust(product=products[0], warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    assert list(channel.listings.filter(dirty=True).values_list("product_id", flat=True)) == [
        products[0].pk
    ]
    report = channel_push(channel_id=channel.pk)

    # then: one call names both warehouses of the SKU (west at its unchanged quantity), the
    # other SKU is not sent, and every listing shows its desired quantity
    assert (report.pushed, report.calls, report.dead_lettered) == (2, 1, 0)
    read, write = tiktok.app.requests[calls:]
    assert json.loads(read.body) == {"sku_ids": [TWO_EAST["sku_id"]]}  # any unlisted warehouse
    sent = json.loads(write.body)
    assert sent == {
        "skus": [
            {
                "id": TWO_EAST["sku_id"],
                "inventory": [
                    {"warehouse_id": EAST, "quantity": 9},
                    {"warehouse_id": WEST, "quantity": 6},
                ],
            }
        ]
    }
    assert [tiktok.app.quantity(k) for k in keys] == [9, 6, 8]
    attempt = PushAttempt.objects.order_by("-pk").first()
    assert attempt.outcome == "ok"
    assert sorted(row["quantity"] for row in attempt.items) == [6, 9]
    assert not channel.listings.filter(dirty=True).exists()
    assert set(channel.listings.values_list("status", flat=True)) == {"ok"}
    assert channel_push(channel_id=channel.pk).calls == 0


def test_push_sibling_on_a_later_page_is_sent_once(tiktok, wire, warehouse, settings):
    # given: pages of one listing, a full resync: the west listing is pulled into the east
    # listing's call, so its own page sends nothing again
    settings.CHANNEL_PUSH_PAGE_SIZE = 1
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    _listings(channel, tiktok, [TWO_EAST, TWO_WEST], [2, 3], warehouse, dirty=True)

    report = channel_push(channel_id=channel.pk, include_clean=True)

    assert (report.pushed, report.calls, report.unchanged) == (2, 1, 1)
    assert [tiktok.app.quantity(k) for k in (TWO_EAST, TWO_WEST)] == [2, 3]


def test_push_group_siblings_are_read_in_one_query(tiktok, wire, warehouse):
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    _listings(channel, tiktok, [TWO_EAST, TWO_WEST, ONE], [1, 2, 3], warehouse)
    rows = selectors.listings_to_push(channel, include_clean=True)
    adapter = channel_adapter(channel)

    with CaptureQueriesContext(connection) as queries:
        siblings = selectors.listings_in_push_groups(channel, adapter, [rows[0]])

    assert len(queries) == 1
    assert [row["id"] for row in siblings] == [rows[1]["id"]]
    assert selectors.listings_in_push_groups(channel, adapter, [rows[2]]) == []


def test_push_bad_token_code_refreshes_and_converges_instead_of_dead_lettering(
    tiktok, wire, warehouse
):
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    _listings(channel, tiktok, [ONE], [5], warehouse, dirty=True)
    channel.credentials = {**channel.credentials, "access_token": "not-a-token"}
    channel.save(update_fields=["credentials"])
    tiktok.app.configure(invalid_token_code=101000)

    report = channel_push(channel_id=channel.pk)

    channel.refresh_from_db()
    assert (report.pushed, report.dead_lettered, report.stopped) == (1, 0, "")
    assert channel.needs_reauth is False
    assert tiktok.app.counts["refreshes"] == 1
    assert tiktok.app.quantity(ONE) == 5
    assert not DeadLetter.objects.exists()


def test_push_revoked_token_flags_reauth_and_dead_letters_nothing(tiktok, wire, warehouse):
    channel = wire(tiktok, "tiktok", warehouses=[warehouse], products=())
    _listings(channel, tiktok, [ONE], [5], warehouse, dirty=True)
    tiktok.app.revoke()

    report = channel_push(channel_id=channel.pk)

    channel.refresh_from_db()
    assert report.stopped == "needs_reauth"
    assert channel.needs_reauth is True
    assert not DeadLetter.objects.exists()
    assert channel.listings.get().dirty is True
