"""Shopee's module-prefixed error codes, its `error_auth` business refusals and multi-location
models: the adapter against the sandbox, and the push pipeline end to end."""

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.shopee import ShopeeAdapter, classify, stock_list
from channels_sync.models import ChannelListing, PushAttempt
from channels_sync.sandbox.shopee import ShopeeSandbox
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from core.sandbox import Fault, SandboxServer
from inventory.services import Origin, stock_set
from tests.channels_sync.conftest import listing_keys
from tests.inventory.factories import ProductFactory

LISTINGS = [
    {"item_id": "100", "model_id": "1"},
    {"item_id": "100", "model_id": "2"},
    {"item_id": "100", "model_id": "3"},
    {"item_id": "200", "model_id": "0"},
    # A multi-location seller's models: one stock figure per location.
    {"item_id": "700", "model_id": "1", "location_id": "SGZ"},
    {"item_id": "700", "model_id": "1", "location_id": "SGW"},
    {"item_id": "700", "model_id": "2", "location_id": "SGZ"},
    {"item_id": "700", "model_id": "2", "location_id": "SGW"},
]
ORIGIN = Origin(source="test", actor="test")


@pytest.fixture(scope="module")
def server():
    with SandboxServer(ShopeeSandbox()) as running:
        yield running


@pytest.fixture
def shop(server):
    app = server.app
    app.reset()
    app.url = server.url
    app.seed_listings(LISTINGS, quantity=5)
    return app


def adapter_for(shop: ShopeeSandbox) -> ShopeeAdapter:
    return ShopeeAdapter(base_url=shop.url, credentials=shop.credentials(), timeout=5)


def update(listing_id: int, quantity: int, **keys) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys=keys, quantity=quantity)


def item_100(*quantities: int) -> list[StockUpdate]:
    return [
        update(model, quantity, item_id="100", model_id=str(model))
        for model, quantity in enumerate(quantities, start=1)
    ]


def shopee_answer(error: str, message: str, response: dict | None = None) -> str:
    body = {"error": error, "message": message, "warning": "", "request_id": "r"}
    if response is not None:
        body["response"] = response
    return json.dumps(body)


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "message", "expected"),
    [
        (200, "product.error_server", "Internal error.", (Outcome.RETRYABLE, False)),
        (200, "product.error_inner", "", (Outcome.RETRYABLE, False)),
        (200, "product.error_param", "item_id is invalid", (Outcome.PERMANENT, False)),
        (200, "product.error_too_many_request", "", (Outcome.THROTTLED, False)),
        (403, "product.error_sign", "Wrong sign.", (Outcome.AUTH, False)),
        (403, "product.error_auth", "Invalid access_token.", (Outcome.AUTH, True)),
        (403, "error_auth", "Invalid access_token.", (Outcome.AUTH, True)),
        (200, "invalid_access_token", "", (Outcome.AUTH, True)),
        (200, "invalid_acceess_token", "", (Outcome.AUTH, True)),
        (403, "error_auth", "Invalid partner_id.", (Outcome.AUTH, False)),
        (403, "error_auth", "The shop is not authorised by this partner.", (Outcome.AUTH, False)),
        # update_stock's business refusals in Shopee's own words: not credentials.
        (
            200,
            "error_auth",
            "Total stock must be more than reserved stock.",
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            "product.error_auth",
            "Stock should be larger than reserved stock.",
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            "error_auth",
            "Lack of location_id, please double check.",
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            "error_auth",
            "The location_id input is not matched the shop's location_id(more/wrong)",
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            "error_auth",
            "You do not have right to use seller location_id",
            (Outcome.PERMANENT, False),
        ),
        (
            200,
            "error_auth",
            "Please wait for the holiday mode set then to edit item",
            (Outcome.THROTTLED, False),
        ),
        (200, "error_auth", "Your shop can not use model level dts", (Outcome.PERMANENT, False)),
        (200, "error_auth", "cnsc shop not upgraded", (Outcome.PERMANENT, False)),
        (200, "error_auth", "No permission to current api.", (Outcome.PERMANENT, False)),
    ],
)
def test_shopee_classify_reads_the_code_after_the_module_and_error_auth_by_message(
    status, error, message, expected
):
    assert classify(status, error, message) == expected


# --- module-prefixed codes through every call -----------------------------------------------------


def test_shopee_prefixed_partial_failure_keeps_the_models_that_updated(shop):
    shop.configure(module_prefix=True, reject=[{"item_id": "100", "model_id": "2"}])
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(7, 8, 9))

    assert result.outcome == Outcome.PARTIAL
    assert [(item.listing_id, item.ok, item.retryable) for item in result.items] == [
        (1, True, False),
        (2, False, False),
        (3, True, False),
    ]
    assert result.error.startswith("product.error_busi_update_stock_failed: ")
    assert [shop.quantity({"item_id": "100", "model_id": m}) for m in "123"] == [7, 5, 9]


def test_shopee_prefixed_partial_failure_without_a_failure_list_names_the_success_list(shop):
    # given: the partial error on a 2xx, with models in success_list only
    response = {
        "success_list": [{"model_id": 1, "location_id": "", "stock": 4}],
        "failure_list": [],
    }
    shop.inject(
        Fault(
            status=200, body=shopee_answer("product.error_busi_update_stock_failed", "", response)
        )
    )

    result = adapter_for(shop).push_stock(item_100(4, 4))

    # then: the model Shopee confirmed applied; the other is not known to have
    assert result.outcome == Outcome.PARTIAL
    assert [(item.ok, item.error) for item in result.items] == [
        (True, ""),
        (False, "product.error_busi_update_stock_failed"),
    ]


def test_shopee_prefixed_server_error_on_a_200_is_retryable(shop):
    shop.inject(Fault(status=200, body=shopee_answer("product.error_server", "Server error.")))

    result = adapter_for(shop).push_stock(item_100(4))

    assert result.outcome == Outcome.RETRYABLE
    assert result.error == "product.error_server: Server error."
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 5


def test_shopee_prefixed_codes_in_read_back_token_and_orders(shop):
    shop.configure(module_prefix=True)
    adapter = adapter_for(shop)
    spent = adapter.credentials["refresh_token"]
    adapter.token_refresh()
    stale = ShopeeAdapter(
        base_url=shop.url, credentials={**adapter.credentials, "refresh_token": spent}
    )

    # an unknown item is left out of the read-back, not a failure
    observed = adapter.fetch_stock(
        [{"item_id": "999", "model_id": "5"}, {"item_id": "100", "model_id": "1"}]
    )
    with pytest.raises(AdapterError) as refresh:
        stale.token_refresh()
    shop.expire_tokens()
    with pytest.raises(AdapterError) as orders:
        adapter.orders_updated(
            since=datetime.fromtimestamp(time.time() - 60, tz=UTC),
            until=datetime.fromtimestamp(time.time(), tz=UTC),
        )
    with pytest.raises(AdapterError) as reading:
        adapter.fetch_stock([{"item_id": "100", "model_id": "1"}])

    assert [(o.keys, o.quantity) for o in observed] == [({"item_id": "100", "model_id": "1"}, 5)]
    assert (refresh.value.outcome, refresh.value.token_expired) == (Outcome.AUTH, False)
    assert "auth.error_auth: Invalid refresh_token." in str(refresh.value)
    assert (orders.value.outcome, orders.value.token_expired) == (Outcome.AUTH, True)
    assert "order.error_auth: Invalid access_token." in str(orders.value)
    assert (reading.value.outcome, reading.value.token_expired) == (Outcome.AUTH, True)
    assert "product.error_auth" in str(reading.value)


# --- error_auth business refusals ---------------------------------------------------------------


def test_shopee_stock_below_reserved_is_a_permanent_refusal_not_bad_credentials(shop):
    shop.configure(
        module_prefix=True, reserved_stock=[{"item_id": "100", "model_id": "2", "reserved": 6}]
    )
    adapter = adapter_for(shop)

    locked = adapter.push_stock(item_100(7, 3))
    fine = adapter.push_stock(item_100(7, 6))

    assert locked.outcome == Outcome.PERMANENT
    assert locked.token_expired is False
    assert locked.error == "product.error_auth: Stock should be larger than reserved stock."
    assert fine.outcome == Outcome.OK
    assert [shop.quantity({"item_id": "100", "model_id": m}) for m in "12"] == [7, 6]


def test_shopee_holiday_mode_refuses_every_item_for_now_without_touching_stock(shop):
    shop.configure(holiday_mode=True)
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(1))

    # the refusal lasts as long as the holiday: a shop-wide pause of an hour
    assert (result.outcome, result.token_expired) == (Outcome.THROTTLED, False)
    assert result.retry_after == 3600.0
    assert result.error == "error_auth: Please wait for the holiday mode set then to edit item."
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 5


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"item_id": "700", "model_id": "1"}, "Lack of location_id, please double check."),
        (
            {"item_id": "700", "model_id": "1", "location_id": "SGX"},
            "The location_id input is not matched the shop's location_id(more/wrong), please "
            "double check.",
        ),
        (
            {"item_id": "100", "model_id": "1", "location_id": "SGZ"},
            "You do not have right to use seller location_id, please check.",
        ),
    ],
)
def test_shopee_location_refusals_are_permanent(shop, keys, message):
    result = adapter_for(shop).push_stock([update(1, 4, **keys)])

    assert (result.outcome, result.token_expired) == (Outcome.PERMANENT, False)
    assert result.error == f"error_auth: {message}"
    assert shop.updates == []


# --- multi-location models ------------------------------------------------------------------------


def test_shopee_stock_list_puts_a_models_locations_in_one_entry():
    updates = [
        update(1, 3, item_id="700", model_id="1", location_id="SGZ"),
        update(2, 4, item_id="700", model_id="2", location_id="SGZ"),
        update(3, 5, item_id="700", model_id="1", location_id="SGW"),
        update(4, 6, item_id="700", model_id="0"),
    ]

    assert stock_list(updates) == [
        {
            "model_id": 1,
            "seller_stock": [
                {"location_id": "SGZ", "stock": 3},
                {"location_id": "SGW", "stock": 5},
            ],
        },
        {"model_id": 2, "seller_stock": [{"location_id": "SGZ", "stock": 4}]},
        {"model_id": 0, "seller_stock": [{"stock": 6}]},
    ]


def test_shopee_multi_location_push_is_one_entry_per_model_and_reads_back_per_location(shop):
    adapter = adapter_for(shop)
    updates = [
        update(1, 3, item_id="700", model_id="1", location_id="SGZ"),
        update(2, 4, item_id="700", model_id="1", location_id="SGW"),
        update(3, 8, item_id="700", model_id="2", location_id="SGW"),
    ]

    result = adapter.push_stock(updates)
    observed = adapter.fetch_stock([dict(u.keys) for u in updates] + [LISTINGS[6]])

    assert result.outcome == Outcome.OK
    assert [(item.listing_id, item.ok) for item in result.items] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert shop.requests[-2].json() == {
        "item_id": 700,
        "stock_list": [
            {
                "model_id": 1,
                "seller_stock": [
                    {"location_id": "SGZ", "stock": 3},
                    {"location_id": "SGW", "stock": 4},
                ],
            },
            {"model_id": 2, "seller_stock": [{"location_id": "SGW", "stock": 8}]},
        ],
    }
    # each location as set; model 2's other location untouched
    assert [o.quantity for o in observed] == [3, 4, 8, 5]
    model_2 = shop.requests[-1]
    assert model_2.path == "/api/v2/product/get_model_list"


def test_shopee_sandbox_refuses_a_model_named_twice_in_one_stock_list(shop):
    # given: the shape of one entry per location (what Shopee refuses)
    credentials = shop.credentials()
    path = "/api/v2/product/update_stock"
    timestamp = str(int(time.time()))
    params = {
        "partner_id": "2001887",
        "timestamp": timestamp,
        "access_token": credentials["access_token"],
        "shop_id": "1",
        "sign": shop.expected_sign(path, timestamp, credentials["access_token"], "1"),
    }
    body = {
        "item_id": 700,
        "stock_list": [
            {"model_id": 1, "seller_stock": [{"location_id": "SGZ", "stock": 1}]},
            {"model_id": 1, "seller_stock": [{"location_id": "SGW", "stock": 2}]},
        ],
    }

    answer = requests.post(shop.url + path, params=params, json=body, timeout=5)

    assert (answer.status_code, answer.json()["error"]) == (400, "error_param")
    assert answer.json()["message"] == "Duplicate model_id in stock_list."
    assert shop.quantity(LISTINGS[4]) == 5
    assert shop.quantity(LISTINGS[5]) == 5


def test_shopee_batches_count_models_and_never_split_a_models_locations():
    adapter = ShopeeAdapter(base_url="http://shopee.invalid", credentials={})
    updates = [
        update(1, 1, item_id="700", model_id="1", location_id="SGZ"),
        update(2, 1, item_id="700", model_id="2", location_id="SGZ"),
        update(3, 1, item_id="700", model_id="1", location_id="SGW"),
        update(4, 1, item_id="700", model_id="3", location_id="SGZ"),
        update(5, 1, item_id="100", model_id="1"),
        update(6, 1, item_id="700", model_id="2", location_id="SGW"),
    ]

    batches = adapter.batches(updates, 2)

    assert [[u.listing_id for u in batch] for batch in batches] == [[1, 3, 2, 6], [4], [5]]


# --- the push pipeline end to end -----------------------------------------------------------


def _stocked(warehouse, quantities) -> list:
    products = []
    for quantity in quantities:
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        products.append(product)
    return products


def test_push_promotion_locked_item_is_dead_lettered_others_converge_no_reauth(
    shopee, wire, warehouse
):
    # given: three items on a shop answering with module prefixes; item 1 has 50 units
    # reserved by a running promotion, more than we want to show
    products = _stocked(warehouse, [3, 4, 5])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    locked = listing_keys("shopee", 1)
    shopee.app.configure(
        module_prefix=True, reserved_stock=[{**locked, "reserved": 50}], token_errors="official"
    )

    # when
    first = channel_push(channel_id=channel.pk)
    second = channel_push(channel_id=channel.pk)

    # then: the others show their quantity, the locked one is dead-lettered on its own, and
    # the shop is not flagged for re-authorisation
    channel.refresh_from_db()
    assert channel.needs_reauth is False
    assert (first.pushed, first.dead_lettered, first.stopped) == (2, 1, "")
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 3
    assert shopee.app.quantity(listing_keys("shopee", 2)) == 5
    assert shopee.app.quantity(locked) == 0
    bad = channel.listings.get(product=products[1])
    assert bad.status == "error"
    assert bad.last_error == "product.error_auth: Stock should be larger than reserved stock."
    assert DeadLetter.objects.get().kwargs == {"listing_id": bad.pk}
    assert (second.calls, second.dead_lettered) == (0, 0)
    assert not ChannelListing.objects.filter(dirty=True).exists()


def test_push_expired_token_in_the_official_wording_is_refreshed_and_converges(
    shopee, wire, warehouse
):
    products = _stocked(warehouse, [3, 4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    shopee.app.configure(module_prefix=True, token_errors="official")
    shopee.app.expire_tokens()
    old_token = channel.credentials["access_token"]

    report = channel_push(channel_id=channel.pk)

    channel.refresh_from_db()
    assert (report.pushed, report.dead_lettered, report.stopped) == (2, 0, "")
    assert channel.needs_reauth is False
    assert channel.credentials["access_token"] != old_token
    assert shopee.app.counts["refreshes"] == 1
    assert shopee.app.quantity(listing_keys("shopee", 0)) == 3
    assert shopee.app.quantity(listing_keys("shopee", 1)) == 4


def test_push_revoked_token_in_the_official_wording_flags_reauth_without_dead_letters(
    shopee, wire, warehouse
):
    products = _stocked(warehouse, [3])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    shopee.app.revoke()

    report = channel_push(channel_id=channel.pk)

    channel.refresh_from_db()
    assert report.stopped == "needs_reauth"
    assert channel.needs_reauth is True
    assert report.dead_lettered == 0
    assert not DeadLetter.objects.exists()
    assert channel.listings.get().dirty is True


def test_push_multi_location_listings_of_one_model_converge(shopee, wire, warehouse, store):
    # given: one model kept at two locations, a listing each (fed by different products)
    products = _stocked(warehouse, [6, 9])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=())
    keys = [LISTINGS[4], LISTINGS[5]]
    shopee.app.seed_listings(keys, quantity=1)
    ChannelListing.objects.bulk_create(
        ChannelListing(
            channel=channel,
            product=product,
            dirty=True,
            **ShopeeAdapter.keys_to_columns(key),
        )
        for product, key in zip(products, keys, strict=True)
    )

    report = channel_push(channel_id=channel.pk)
    again = channel_push(channel_id=channel.pk)

    assert (report.pushed, report.calls, report.dead_lettered) == (2, 1, 0)
    assert [shopee.app.quantity(key) for key in keys] == [6, 9]
    assert again.calls == 0


def test_push_holiday_mode_pauses_the_shop_then_converges_after_the_holiday(
    shopee, wire, warehouse
):
    # given: a shop in holiday mode edits no stock
    products = _stocked(warehouse, [3, 4])
    channel = wire(shopee, "shopee", warehouses=[warehouse], products=products, dirty=True)
    shopee.app.configure(holiday_mode=True, module_prefix=True)

    during = channel_push(channel_id=channel.pk)

    # then: the whole run pauses for an hour: no attempt used, nothing dead-lettered
    assert (during.stopped, during.requeue_after, during.throttled) == ("throttled", 3600.0, 1)
    assert (during.pushed, during.dead_lettered, during.failed, during.calls) == (0, 0, 0, 1)
    assert not DeadLetter.objects.exists()
    rows = list(channel.listings.order_by("pk").values_list("status", "push_failures", "dirty"))
    assert rows == [("ok", 0, True), ("ok", 0, True)]
    assert not any(channel.listings.values_list("next_push_at", flat=True))
    assert PushAttempt.objects.get(channel=channel).outcome == PushAttempt.Outcome.THROTTLED

    # when: the holiday ends and the requeued run goes
    shopee.app.configure(holiday_mode=False)
    after = channel_push(channel_id=channel.pk)

    assert (after.pushed, after.dead_lettered) == (2, 0)
    assert [shopee.app.quantity(listing_keys("shopee", n)) for n in (0, 1)] == [3, 4]
    assert not channel.listings.filter(dirty=True).exists()
