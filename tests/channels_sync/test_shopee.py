import hashlib
import hmac
import json
import time

import pytest
import requests

from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.shopee import (
    ShopeeAdapter,
    classify,
    public_sign,
    push_signature,
    shop_sign,
)
from channels_sync.sandbox.shopee import ShopeeSandbox
from core.sandbox import Fault, SandboxServer

VECTOR_SIGN = "dd1a23a1caa7ade6e76dfabcc39a1776e9a01e4fc50572eaa0ccef70d9bf9abc"
LISTINGS = [
    {"item_id": "100", "model_id": "1"},
    {"item_id": "100", "model_id": "2"},
    {"item_id": "100", "model_id": "3"},
    {"item_id": "200", "model_id": "0"},
    {"item_id": "300", "model_id": "0"},
]


@pytest.fixture(scope="module")
def server():
    with SandboxServer(ShopeeSandbox()) as running:
        yield running


@pytest.fixture
def shop(server):
    """The Shopee sandbox, reset, with LISTINGS at quantity 5 (`shop.url` is its base URL)."""
    app = server.app
    app.reset()
    app.url = server.url
    app.seed_listings(LISTINGS, quantity=5)
    return app


def adapter_for(shop: ShopeeSandbox, **credentials) -> ShopeeAdapter:
    return ShopeeAdapter(
        base_url=shop.url, credentials={**shop.credentials(), **credentials}, timeout=5
    )


def update(listing_id: int, quantity: int, **keys) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys=keys, quantity=quantity)


def item_100(*quantities: int) -> list[StockUpdate]:
    return [
        update(model, quantity, item_id="100", model_id=str(model))
        for model, quantity in enumerate(quantities, start=1)
    ]


# --- signing ------------------------------------------------------------------------------------


def test_shop_sign_matches_the_reference_vector():
    # given: marketplaces.md section 10 (base string ...1655714431 + token + shop 14701711)
    inputs = {
        "path": "/api/v2/product/update_stock",
        "timestamp": 1655714431,
        "access_token": "59777174636562737266615546704c6d",
        "shop_id": 14701711,
    }

    # when
    adapter_side = shop_sign(partner_key="test_partner_key", partner_id=2001887, **inputs)
    sandbox_side = ShopeeSandbox(partner_id=2001887, partner_key="test_partner_key")
    expected = sandbox_side.expected_sign(
        inputs["path"], "1655714431", inputs["access_token"], "14701711"
    )

    # then
    assert adapter_side == VECTOR_SIGN
    assert expected == VECTOR_SIGN


def test_public_sign_and_push_signature_match_hand_computed_hmacs():
    key = b"another_partner_key"
    public = hmac.new(key, b"9/api/v2/auth/access_token/get1700000000", hashlib.sha256)
    body = b'{"data":{"ordersn":"2201"},"shop_id":1,"code":3}'
    pushed = hmac.new(key, b"https://example.test/hooks/shopee|" + body, hashlib.sha256)

    assert (
        public_sign(
            partner_key=key.decode(),
            partner_id=9,
            path="/api/v2/auth/access_token/get",
            timestamp=1700000000,
        )
        == public.hexdigest()
    )
    assert (
        push_signature(partner_key=key.decode(), url="https://example.test/hooks/shopee", body=body)
        == pushed.hexdigest()
    )
    sandbox_side = ShopeeSandbox(partner_id=9, partner_key=key.decode())
    assert (
        sandbox_side.expected_sign("/api/v2/auth/access_token/get", "1700000000")
        == public.hexdigest()
    )


def test_shopee_adapter_puts_the_common_params_in_the_query_with_a_seconds_timestamp(shop):
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(7))

    assert result.outcome == Outcome.OK
    query = {name: values[0] for name, values in shop.requests[-1].query.items()}
    assert set(query) == {"partner_id", "timestamp", "access_token", "shop_id", "sign"}
    assert query["partner_id"] == "2001887"
    assert query["shop_id"] == "1"
    assert query["access_token"] == adapter.credentials["access_token"]
    assert abs(int(query["timestamp"]) - time.time()) < 10  # seconds, not milliseconds
    assert query["sign"] == shop_sign(
        partner_key="test_partner_key",
        partner_id=2001887,
        path="/api/v2/product/update_stock",
        timestamp=int(query["timestamp"]),
        access_token=adapter.credentials["access_token"],
        shop_id=1,
    )


# --- push ---------------------------------------------------------------------------------------


def test_shopee_push_stock_ok_updates_the_sandbox(shop):
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(7, 8, 0))

    assert result.outcome == Outcome.OK
    assert result.http_status == 200
    assert [(item.listing_id, item.ok) for item in result.items] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert result.latency_ms >= 0
    assert shop.requests[-1].json() == {
        "item_id": 100,
        "stock_list": [
            {"model_id": 1, "seller_stock": [{"stock": 7}]},
            {"model_id": 2, "seller_stock": [{"stock": 8}]},
            {"model_id": 3, "seller_stock": [{"stock": 0}]},
        ],
    }
    assert [shop.quantity({"item_id": "100", "model_id": str(m)}) for m in (1, 2, 3)] == [7, 8, 0]
    assert shop.updates == [
        ({"item_id": "100", "model_id": "1"}, 7),
        ({"item_id": "100", "model_id": "2"}, 8),
        ({"item_id": "100", "model_id": "3"}, 0),
    ]


def test_shopee_push_stock_item_without_models_sends_model_0_and_the_location(shop):
    shop.seed_listings([{"item_id": "600", "model_id": "0", "location_id": "IDZ"}], quantity=5)
    adapter = adapter_for(shop)

    result = adapter.push_stock([update(9, 12, item_id="600", model_id="0", location_id="IDZ")])

    assert result.outcome == Outcome.OK
    assert shop.requests[-1].json() == {
        "item_id": 600,
        "stock_list": [{"model_id": 0, "seller_stock": [{"location_id": "IDZ", "stock": 12}]}],
    }
    assert shop.updates == [({"item_id": "600", "model_id": "0", "location_id": "IDZ"}, 12)]


def test_shopee_sandbox_seeded_with_integer_model_id_0_takes_the_push(shop):
    # given: an item without models seeded as Shopee's API writes it (integer ids, model 0)
    shop.seed_listings([{"item_id": 400, "model_id": 0}], quantity=3)
    adapter = adapter_for(shop)

    # when
    result = adapter.push_stock([update(11, 9, item_id="400", model_id="0")])

    # then: model 0 is the same stock entry as "0", not an unknown ""
    assert result.outcome == Outcome.OK
    assert shop.quantity({"item_id": 400, "model_id": 0}) == 9
    assert shop.quantity({"item_id": "400", "model_id": "0"}) == 9
    assert shop.quantity({"item_id": "400", "model_id": ""}) is None


def test_shopee_batches_hold_one_item_and_at_most_50_models():
    adapter = ShopeeAdapter(base_url="http://shopee.invalid", credentials={})
    updates = []
    for index in range(120):
        updates.append(update(index, 1, item_id="A", model_id=str(index + 1)))
        if index % 4 == 0:
            updates.append(update(1000 + index, 1, item_id="B", model_id=str(index + 1)))

    default = adapter.batches(updates, adapter.default_batch_size)
    small = adapter.batches(updates, 10)
    too_big = adapter.batches(updates, 500)

    assert [len(batch) for batch in default] == [50, 50, 20, 30]
    assert [len(batch) for batch in too_big] == [50, 50, 20, 30]
    assert [len(batch) for batch in small] == [10] * 12 + [10, 10, 10]
    for batches in (default, small, too_big):
        assert all(len({u.keys["item_id"] for u in batch}) == 1 for batch in batches)
        assert [u for batch in batches for u in batch] == [
            u for u in updates if u.keys["item_id"] == "A"
        ] + [u for u in updates if u.keys["item_id"] == "B"]


def test_shopee_push_stock_refuses_a_batch_of_two_items_without_calling(shop):
    adapter = adapter_for(shop)

    result = adapter.push_stock(
        [update(1, 1, item_id="100", model_id="1"), update(4, 1, item_id="200", model_id="0")]
    )

    assert result.outcome == Outcome.PERMANENT
    assert "one item_id" in result.error
    assert shop.requests == []


def test_shopee_push_stock_rejected_model_is_partial(shop):
    shop.configure(reject=[{"item_id": "100", "model_id": "2"}])
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(7, 8, 9))

    assert result.outcome == Outcome.PARTIAL
    assert result.http_status == 200
    assert [(item.listing_id, item.ok, item.retryable) for item in result.items] == [
        (1, True, False),
        (2, False, False),
        (3, True, False),
    ]
    assert "reserved stock" in result.items[1].error
    assert result.error.startswith("error_busi_update_stock_failed")
    assert [shop.quantity({"item_id": "100", "model_id": str(m)}) for m in (1, 2, 3)] == [7, 5, 9]
    assert shop.counts["items_rejected"] == 1


def test_shopee_push_stock_unknown_model_fails_that_model_only(shop):
    adapter = adapter_for(shop)

    result = adapter.push_stock(
        [update(1, 4, item_id="100", model_id="1"), update(99, 4, item_id="100", model_id="99")]
    )

    assert result.outcome == Outcome.PARTIAL
    assert [(item.listing_id, item.ok, item.error) for item in result.items] == [
        (1, True, ""),
        (99, False, "Model not found."),
    ]
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 4


def test_shopee_push_stock_unknown_item_is_permanent(shop):
    adapter = adapter_for(shop)

    result = adapter.push_stock([update(1, 4, item_id="999", model_id="0")])

    assert result.outcome == Outcome.PERMANENT
    assert result.error.startswith("error_item_not_found")
    assert result.items == []


def test_shopee_push_stock_busy_failed_reason_is_retryable_per_item(shop):
    answer = {
        "error": "error_busi_update_stock_failed",
        "message": "",
        "request_id": "r1",
        "response": {
            "success_list": [{"model_id": 1, "location_id": "", "stock": 3}],
            "failure_list": [{"model_id": 2, "failed_reason": "System busy, try again later."}],
        },
    }
    shop.inject(Fault(status=200, body=json.dumps(answer)))
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(3, 3))

    assert result.outcome == Outcome.PARTIAL
    assert [(item.ok, item.retryable) for item in result.items] == [(True, False), (False, True)]


def test_shopee_push_stock_over_the_rate_is_throttled(shop):
    shop.configure(throttle_per_second=1)
    adapter = adapter_for(shop)

    first = adapter.push_stock(item_100(1))
    second = adapter.push_stock(item_100(2))

    assert first.outcome == Outcome.OK
    assert second.outcome == Outcome.THROTTLED
    assert second.http_status == 429
    assert second.retry_after is None
    assert second.error.startswith("error_too_many_request")
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 1


def test_shopee_push_stock_throttle_in_the_body_of_a_200_with_retry_after(shop):
    body = json.dumps({"error": "error_too_many_request", "message": "slow down"})
    shop.inject(Fault(status=200, body=body, headers={"Retry-After": "3"}))
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(1))

    assert result.outcome == Outcome.THROTTLED
    assert result.retry_after == 3.0


def test_shopee_push_stock_server_error_is_retryable(shop):
    shop.configure(error_ratio=1)
    adapter = adapter_for(shop)

    result = adapter.push_stock(item_100(1))

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status == 500
    assert result.error.startswith("error_server")
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 5


def test_shopee_push_stock_timeout_is_retryable(shop):
    shop.configure(timeout_ratio=1, timeout_seconds=2)
    adapter = ShopeeAdapter(base_url=shop.url, credentials=shop.credentials(), timeout=0.5)

    result = adapter.push_stock(item_100(1))

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status is None
    assert "timeout" in result.error
    assert 400 <= result.latency_ms < 2000


@pytest.mark.parametrize(
    ("style", "error"),
    [
        ("official", "error_auth: Invalid access_token."),
        ("community", "invalid_access_token: access_token expired"),
    ],
)
def test_shopee_push_stock_expired_token_refreshes_then_succeeds(shop, style, error):
    shop.configure(token_errors=style)
    adapter = adapter_for(shop)
    old = dict(adapter.credentials)
    shop.expire_tokens()

    refused = adapter.push_stock(item_100(6))
    credentials = adapter.token_refresh()
    again = adapter.push_stock(item_100(6))

    assert refused.outcome == Outcome.AUTH
    assert refused.token_expired is True
    assert refused.error == error
    assert credentials == adapter.credentials
    assert credentials["access_token"] != old["access_token"]
    assert credentials["refresh_token"] != old["refresh_token"]
    assert adapter.token_expires_at() is not None
    assert not adapter.token_needs_refresh()
    assert shop.requests[-2].json() == {
        "refresh_token": old["refresh_token"],
        "partner_id": 2001887,
        "shop_id": 1,
    }
    assert again.outcome == Outcome.OK
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 6


def test_shopee_refresh_token_is_single_use(shop):
    adapter = adapter_for(shop)
    spent = adapter.credentials["refresh_token"]
    adapter.token_refresh()
    stale = ShopeeAdapter(base_url=shop.url, credentials={**adapter.credentials})
    stale.credentials["refresh_token"] = spent

    with pytest.raises(AdapterError) as refused:
        stale.token_refresh()

    assert refused.value.outcome == Outcome.AUTH
    assert "Invalid refresh_token" in str(refused.value)
    adapter.token_refresh()  # the rotated one still works, once
    assert shop.counts["refreshes"] == 2


def test_shopee_revoked_tokens_are_auth_and_cannot_be_refreshed(shop):
    adapter = adapter_for(shop)
    shop.revoke()

    result = adapter.push_stock(item_100(1))
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()
    with pytest.raises(AdapterError) as reading:
        adapter.fetch_stock([{"item_id": "100", "model_id": "1"}])

    # Shopee words a revoked token as an expired one: the refresh tells them apart.
    assert result.outcome == Outcome.AUTH
    assert result.token_expired is True
    assert result.error == "error_auth: Invalid access_token."
    assert refused.value.outcome == Outcome.AUTH
    assert reading.value.outcome == Outcome.AUTH
    assert shop.counts["auth_refused"] == 3


def test_shopee_token_refresh_server_trouble_is_retryable(shop):
    adapter = adapter_for(shop)
    before = dict(adapter.credentials)
    shop.inject(Fault(status=503, body="upstream unavailable"))

    with pytest.raises(AdapterError) as failed:
        adapter.token_refresh()

    assert failed.value.outcome == Outcome.RETRYABLE
    assert adapter.credentials == before


def test_shopee_token_get_trades_a_code_once(shop):
    adapter = ShopeeAdapter(
        base_url=shop.url,
        credentials={"partner_id": "2001887", "partner_key": "test_partner_key", "shop_id": "1"},
    )
    code = shop.issue_code()

    credentials = adapter.token_get(code)
    with pytest.raises(AdapterError) as reused:
        adapter.token_get(code)

    assert set(credentials) == set(ShopeeAdapter.credential_fields)
    assert adapter.push_stock(item_100(2)).outcome == Outcome.OK
    assert reused.value.outcome == Outcome.AUTH


def test_shopee_wrong_partner_key_is_refused_as_a_signature(shop):
    adapter = adapter_for(shop, partner_key="not_the_partner_key")

    result = adapter.push_stock(item_100(1))
    with pytest.raises(AdapterError) as refresh:
        adapter.token_refresh()

    assert result.outcome == Outcome.AUTH
    assert result.token_expired is False
    assert "signature refused" in result.error
    assert refresh.value.outcome == Outcome.AUTH
    assert shop.counts["bad_signature"] == 2
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 5


def test_shopee_sandbox_refuses_a_stale_timestamp_and_missing_params(shop):
    credentials = shop.credentials()
    path = "/api/v2/product/update_stock"
    stale = int(time.time()) - 400
    params = {
        "partner_id": "2001887",
        "timestamp": str(stale),
        "access_token": credentials["access_token"],
        "shop_id": "1",
        "sign": shop.expected_sign(path, str(stale), credentials["access_token"], "1"),
    }
    body = {"item_id": 100, "stock_list": [{"model_id": 1, "seller_stock": [{"stock": 1}]}]}

    old = requests.post(shop.url + path, params=params, json=body, timeout=5)
    bare = requests.post(shop.url + path, params={"partner_id": "2001887"}, json=body, timeout=5)

    assert (old.status_code, old.json()["error"]) == (400, "error_param")
    assert "timestamp" in old.json()["message"]
    assert (bare.status_code, bare.json()["error"]) == (400, "error_param")
    assert shop.quantity({"item_id": "100", "model_id": "1"}) == 5


# --- read back ----------------------------------------------------------------------------------


def test_shopee_fetch_stock_returns_pushed_quantities(shop):
    adapter = adapter_for(shop)
    adapter.push_stock(item_100(7, 8))
    shop.seed_listings([{"item_id": "600", "model_id": "0", "location_id": "IDZ"}], quantity=5)
    adapter.push_stock([update(4, 11, item_id="600", model_id="0", location_id="IDZ")])
    keys = [
        {"item_id": "100", "model_id": "1"},
        {"item_id": "100", "model_id": "2"},
        {"item_id": "100", "model_id": "3"},
        {"item_id": "100", "model_id": "77"},  # unknown model
        {"item_id": "600", "model_id": "0", "location_id": "IDZ"},
        {"item_id": "300", "model_id": "0"},
        {"item_id": "400", "model_id": "0"},  # unknown item without models
        {"item_id": "500", "model_id": "5"},  # unknown item with models
    ]

    observed = adapter.fetch_stock(keys)

    assert [(o.keys, o.quantity) for o in observed] == [
        ({"item_id": "100", "model_id": "1"}, 7),
        ({"item_id": "100", "model_id": "2"}, 8),
        ({"item_id": "100", "model_id": "3"}, 5),
        ({"item_id": "600", "model_id": "0", "location_id": "IDZ"}, 11),
        ({"item_id": "300", "model_id": "0"}, 5),
    ]
    paths = [(r.method, r.path) for r in shop.requests[-3:]]
    assert paths == [
        ("GET", "/api/v2/product/get_model_list"),
        ("GET", "/api/v2/product/get_model_list"),
        ("GET", "/api/v2/product/get_item_base_info"),
    ]
    assert shop.requests[-1].query["item_id_list"] == ["600,300,400"]


def test_shopee_fetch_stock_reads_items_without_models_50_at_a_time(shop):
    shop.seed_listings(
        [{"item_id": str(1000 + n), "model_id": "0", "quantity": n} for n in range(60)]
    )
    adapter = adapter_for(shop)

    observed = adapter.fetch_stock([{"item_id": str(1000 + n), "model_id": "0"} for n in range(60)])

    assert [o.quantity for o in observed] == list(range(60))
    reads = [r for r in shop.requests if r.path.endswith("get_item_base_info")]
    assert [len(r.query["item_id_list"][0].split(",")) for r in reads] == [50, 10]


# --- classification -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "message", "expected"),
    [
        (200, "error_param", "item_id is invalid", (Outcome.PERMANENT, False)),
        (400, "error_item_not_found", "", (Outcome.PERMANENT, False)),
        (403, "error_sign", "Wrong sign.", (Outcome.AUTH, False)),
        (403, "error_auth", "Invalid access_token.", (Outcome.AUTH, True)),
        (200, "invalid_acceess_token", "Invalid access_token.", (Outcome.AUTH, True)),
        (200, "error_server", "", (Outcome.RETRYABLE, False)),
        (502, "", "", (Outcome.RETRYABLE, False)),
        (429, "", "", (Outcome.THROTTLED, False)),
        (401, "", "", (Outcome.AUTH, False)),
        (404, "", "", (Outcome.PERMANENT, False)),
    ],
)
def test_shopee_classify_reads_the_body_error_before_the_status(status, error, message, expected):
    assert classify(status, error, message) == expected


# --- webhooks and fields ------------------------------------------------------------------------


def test_shopee_webhook_signature_round_trip(shop):
    adapter = adapter_for(shop)
    url = "https://syncstore.example/webhooks/shopee/7"
    body = shop.push_body(3, {"ordersn": "2201", "status": "READY_TO_SHIP", "items": []})
    headers = shop.push_headers(url, body)

    assert adapter.webhook_signature(body=body, url=url) == headers["Authorization"]
    assert adapter.webhook_verify(headers=headers, body=body, url=url)
    assert not adapter.webhook_verify(headers=headers, body=body + b" ", url=url)
    assert not adapter.webhook_verify(headers=headers, body=body, url=url + "?x=1")
    assert not adapter.webhook_verify(headers={}, body=body, url=url)
    with pytest.raises(ValueError, match="url"):
        adapter.webhook_signature(body=body)


def test_shopee_credentials_and_keys_clean(shop):
    credentials = shop.credentials()

    assert ShopeeAdapter.credentials_clean(credentials) == credentials
    assert ShopeeAdapter.credentials_clean(
        {"partner_id": "1", "partner_key": "k", "shop_id": "2"}
    ) == {"partner_id": "1", "partner_key": "k", "shop_id": "2"}
    with pytest.raises(ValueError, match="unknown credential fields: app_key"):
        ShopeeAdapter.credentials_clean({**credentials, "app_key": "x"})
    with pytest.raises(ValueError, match="missing credential fields: partner_key"):
        ShopeeAdapter.credentials_clean({"partner_id": "1", "shop_id": "2"})

    assert ShopeeAdapter.keys_clean({"item_id": 100, "model_id": "0"}) == {
        "item_id": "100",
        "model_id": "0",
    }
    assert ShopeeAdapter.keys_clean({"item_id": "1", "model_id": "2", "location_id": "IDZ"}) == {
        "item_id": "1",
        "model_id": "2",
        "location_id": "IDZ",
    }
    assert ShopeeAdapter.keys_to_columns({"item_id": "1", "model_id": "2"}) == {
        "external_sku": "",
        "external_item_id": "1",
        "external_variant_id": "2",
        "external_location_id": "",
    }
    with pytest.raises(ValueError, match="unknown keys: sku_id"):
        ShopeeAdapter.keys_clean({"item_id": "1", "model_id": "2", "sku_id": "3"})
    with pytest.raises(ValueError, match="missing keys: model_id"):
        ShopeeAdapter.keys_clean({"item_id": "1"})
