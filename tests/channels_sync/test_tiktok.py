import hashlib
import hmac
import json
import time

import pytest
import requests

from channels_sync.adapters import adapter_class
from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.tiktok import (
    TikTokAdapter,
    TokopediaAdapter,
    sign_base_string,
    sign_request,
    webhook_sign,
)
from channels_sync.sandbox.tiktok import DEFAULT_WAREHOUSE_ID, TikTokSandbox, TokopediaSandbox
from core.sandbox import Fault, SandboxRequest, SandboxServer, sandboxes

PRODUCT = "1729592969712207008"
OTHER_PRODUCT = "1729592969712207999"
WAREHOUSE = "7068517275539719001"
RED = {"product_id": PRODUCT, "sku_id": "1729592969712207012", "warehouse_id": WAREHOUSE}
BLUE = {"product_id": PRODUCT, "sku_id": "1729592969712207013"}  # single warehouse, not named
GREEN = {"product_id": PRODUCT, "sku_id": "1729592969712207014", "warehouse_id": WAREHOUSE}
SOCKS = {"product_id": OTHER_PRODUCT, "sku_id": "1729592969712208001"}
LISTINGS = [RED, BLUE, GREEN, SOCKS]
# Section 10 vector (made-up keys).
VECTOR_SECRET = "abc000def111"
VECTOR_STRING = (
    "abc000def111/authorization/202309/shopsapp_key123456timestamp1234567890abc000def111"
)
VECTOR_SIGN = "c8767e4fd7a1b48a0ce3fd23197f058159ce11b53f1ae1ad6d1ec931a1da5540"


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
    app.configure(listings=[{**listing, "quantity": 7} for listing in LISTINGS])
    return app


@pytest.fixture
def adapter(server, sandbox) -> TikTokAdapter:
    return TikTokAdapter(
        base_url=server.url, auth_base_url=server.url, credentials=sandbox.credentials()
    )


# --- signing ------------------------------------------------------------------------------------


def test_sign_request_matches_the_reference_vector():
    params = {"timestamp": "1234567890", "app_key": "123456", "sign": "x", "access_token": "t"}

    base = sign_base_string(
        app_secret=VECTOR_SECRET, path="/authorization/202309/shops", params=params
    )
    sign = sign_request(app_secret=VECTOR_SECRET, path="/authorization/202309/shops", params=params)

    assert base == VECTOR_STRING.encode()
    assert sign == VECTOR_SIGN


def test_sign_request_appends_the_raw_body_hand_computed():
    path = f"/product/202309/products/{PRODUCT}/inventory/update"
    params = {"shop_cipher": "GCP_x", "app_key": "k1", "timestamp": "1700000000"}
    body = b'{"skus":[{"id":"1","inventory":[{"quantity":3}]}]}'
    message = b"s3cret" + path.encode() + b"app_keyk1shop_cipherGCP_xtimestamp1700000000"
    expected = hmac.new(b"s3cret", message + body + b"s3cret", hashlib.sha256).hexdigest()

    assert sign_request(app_secret="s3cret", path=path, params=params, body=body) == expected


def test_sandbox_sign_check_matches_the_reference_vector():
    app = TikTokSandbox(app_secret=VECTOR_SECRET)
    request = SandboxRequest(
        method="GET",
        path="/authorization/202309/shops",
        query={},
        headers={},
        body=b"",
    )

    expected = app._expected_sign(request, {"app_key": "123456", "timestamp": "1234567890"})

    assert expected == VECTOR_SIGN


def test_webhook_sign_is_hmac_of_app_key_and_body_hand_computed():
    body = b'{"type":1,"tts_notification_id":"n1"}'
    expected = hmac.new(b"sec", b"key" + body, hashlib.sha256).hexdigest()

    assert webhook_sign(app_key="key", app_secret="sec", body=body) == expected


# --- push ---------------------------------------------------------------------------------------


def test_tiktok_push_stock_updates_the_sandbox_and_sends_signed_seconds(adapter, sandbox):
    before = int(time.time())

    result = adapter.push_stock([update(1, RED, 12), update(2, BLUE, 0)])

    assert result.outcome == Outcome.OK
    assert [(item.listing_id, item.ok) for item in result.items] == [(1, True), (2, True)]
    assert result.http_status == 200
    assert sandbox.quantity(RED) == 12
    assert sandbox.quantity(BLUE) == 0  # zero is sent as is (UNCONFIRMED upstream)
    assert sandbox.updates == [
        ({**RED}, 12),
        ({**BLUE, "warehouse_id": DEFAULT_WAREHOUSE_ID}, 0),
    ]
    request = sandbox.requests[-1]
    assert request.path == f"/product/202309/products/{PRODUCT}/inventory/update"
    assert request.headers["X-Tts-Access-Token"] == adapter.credentials["access_token"]
    assert set(request.query) == {"app_key", "timestamp", "shop_cipher", "sign"}
    assert before - 1 <= int(request.query["timestamp"][0]) <= time.time() + 1
    assert json.loads(request.body) == {
        "skus": [
            {"id": RED["sku_id"], "inventory": [{"warehouse_id": WAREHOUSE, "quantity": 12}]},
            {"id": BLUE["sku_id"], "inventory": [{"quantity": 0}]},
        ]
    }


def test_tiktok_batches_group_by_product_and_keep_a_skus_warehouses_together():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    second_warehouse = {**RED, "warehouse_id": "W2"}
    updates = [
        update(1, RED, 1),
        update(2, SOCKS, 1),
        update(3, BLUE, 1),
        update(4, second_warehouse, 1),
        update(5, GREEN, 1),
    ]

    by_two = adapter.batches(updates, 2)
    capped = adapter.batches(
        [update(i, {"product_id": "P", "sku_id": str(i)}, 1) for i in range(250)], 500
    )

    assert [[u.listing_id for u in batch] for batch in by_two] == [[1, 4], [3, 5], [2]]
    assert [len(batch) for batch in capped] == [100, 100, 50]


def test_tiktok_push_stock_refuses_a_batch_of_two_products_without_calling(adapter, sandbox):
    result = adapter.push_stock([update(1, RED, 1), update(2, SOCKS, 1)])

    assert result.outcome == Outcome.PERMANENT
    assert sandbox.requests == []


def test_tiktok_push_stock_rejected_sku_is_partial_and_the_rest_applies(adapter, sandbox):
    sandbox.configure(reject=[BLUE])

    result = adapter.push_stock([update(1, RED, 5), update(2, BLUE, 6), update(3, GREEN, 8)])

    assert result.outcome == Outcome.PARTIAL
    assert [(item.listing_id, item.ok) for item in result.items] == [
        (1, True),
        (2, False),
        (3, True),
    ]
    assert result.items[1].error.startswith("12052393 ")
    assert result.items[1].retryable is False
    assert (sandbox.quantity(RED), sandbox.quantity(BLUE), sandbox.quantity(GREEN)) == (5, 7, 8)
    assert sandbox.counts["items_rejected"] == 1


def test_tiktok_push_stock_unknown_sku_fails_per_item(adapter, sandbox):
    ghost = {"product_id": PRODUCT, "sku_id": "404"}

    result = adapter.push_stock([update(1, ghost, 5), update(2, RED, 9)])

    assert result.outcome == Outcome.PARTIAL
    assert result.items[0].ok is False
    assert result.items[0].error.startswith("12052048 ")
    assert result.items[1].ok is True
    assert sandbox.quantity(RED) == 9


def test_tiktok_push_stock_unknown_product_is_permanent(adapter, sandbox):
    result = adapter.push_stock([update(1, {"product_id": "999", "sku_id": "1"}, 5)])

    assert result.outcome == Outcome.PERMANENT
    assert '"code": 12052048' in result.error


def test_tiktok_push_stock_wrong_warehouse_fails_per_item_and_too_much_shows_the_maximum(
    adapter, sandbox
):
    elsewhere = {**RED, "warehouse_id": "7000000000000000404"}

    result = adapter.push_stock([update(1, elsewhere, 5), update(2, BLUE, 100_000)])

    assert result.outcome == Outcome.PARTIAL
    assert result.items[0].error.startswith("12052097 ")
    assert result.items[1].ok
    # TikTok takes at most 99,999: a bigger pool shows the maximum
    assert (sandbox.quantity(RED), sandbox.quantity(BLUE)) == (7, 99_999)


def test_tiktok_push_stock_throttled_when_over_the_rate(adapter, sandbox):
    # (a SKU of one warehouse: its update goes without a read first)
    sandbox.configure(throttle_per_second=1)

    first = adapter.push_stock([update(1, BLUE, 1)])
    second = adapter.push_stock([update(1, BLUE, 2)])

    assert first.outcome == Outcome.OK
    assert second.outcome == Outcome.THROTTLED
    assert second.http_status == 429
    assert second.retry_after is None  # TikTok documents no Retry-After
    assert '"code": 36009002' in second.error
    assert sandbox.quantity(BLUE) == 1


def test_tiktok_push_stock_throttled_honours_a_retry_after_header(adapter, sandbox):
    sandbox.inject(
        Fault(
            status=429,
            body='{"code":36009002,"message":"Too many requests"}',
            headers={"Retry-After": "3"},
        )
    )

    result = adapter.push_stock([update(1, RED, 1)])

    assert result.outcome == Outcome.THROTTLED
    assert result.retry_after == 3.0


@pytest.mark.parametrize("status", [500, 503])
def test_tiktok_push_stock_server_errors_are_retryable(adapter, sandbox, status):
    if status == 500:
        sandbox.configure(error_ratio=1)
    else:
        sandbox.inject(Fault(status=503, body="upstream overloaded"))

    result = adapter.push_stock([update(1, BLUE, 1)])

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status == status
    assert sandbox.quantity(BLUE) == 7


def test_tiktok_push_stock_timeout_is_retryable(server, sandbox):
    sandbox.configure(timeout_ratio=1, timeout_seconds=2)
    adapter = TikTokAdapter(base_url=server.url, credentials=sandbox.credentials(), timeout=0.5)

    result = adapter.push_stock([update(1, RED, 1)])

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status is None
    assert "timeout" in result.error


# --- auth ---------------------------------------------------------------------------------------


def test_tiktok_expired_token_is_auth_then_refresh_lets_the_push_through(adapter, sandbox):
    sandbox.expire_tokens()
    old_refresh = adapter.credentials["refresh_token"]

    expired = adapter.push_stock([update(1, BLUE, 3)])
    credentials = adapter.token_refresh()
    retried = adapter.push_stock([update(1, BLUE, 3)])

    assert expired.outcome == Outcome.AUTH
    assert expired.token_expired is True
    assert expired.http_status == 401
    assert credentials["refresh_token"] == old_refresh  # TikTok does not rotate it
    assert credentials is not adapter.credentials
    assert credentials == adapter.credentials
    expiry = sandbox.access_tokens[credentials["access_token"]]
    assert adapter.token_expires_at().timestamp() == expiry  # an absolute time, kept as is
    assert retried.outcome == Outcome.OK
    assert sandbox.quantity(BLUE) == 3
    refresh = sandbox.requests[-2]
    assert refresh.path == "/api/v2/token/refresh"
    assert refresh.query["grant_type"] == ["refresh_token"]
    assert "sign" not in refresh.query


def test_tiktok_refresh_token_can_be_used_again(adapter, sandbox):
    adapter.token_refresh()
    first_access = adapter.credentials["access_token"]

    adapter.token_refresh()

    assert adapter.credentials["access_token"] != first_access
    assert sandbox.counts["refreshes"] == 2


def test_tiktok_revoked_token_is_auth_and_refresh_is_refused(adapter, sandbox):
    sandbox.revoke()

    result = adapter.push_stock([update(1, RED, 3)])
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()

    # An unknown token is answered 36009004 "x-tts-access-token header is invalid": a bad
    # token to refresh; the refresh is what tells a revoked grant.
    assert result.outcome == Outcome.AUTH
    assert result.token_expired is True
    assert '"code": 36009004' in result.error
    assert refused.value.outcome == Outcome.AUTH


def test_tiktok_token_refresh_server_error_is_retryable(adapter, sandbox):
    sandbox.inject(Fault(status=502, body="bad gateway"))

    with pytest.raises(AdapterError) as failed:
        adapter.token_refresh()

    assert failed.value.outcome == Outcome.RETRYABLE


def test_tiktok_wrong_secret_is_refused_as_a_bad_signature(server, sandbox):
    credentials = {**sandbox.credentials(), "app_secret": "not-the-secret"}
    adapter = TikTokAdapter(base_url=server.url, credentials=credentials)

    result = adapter.push_stock([update(1, RED, 3)])

    assert result.outcome == Outcome.AUTH
    assert result.token_expired is False
    assert '"code": 106001' in result.error
    assert sandbox.counts["bad_signature"] == 1
    assert sandbox.quantity(RED) == 7


@pytest.mark.parametrize(("field", "code"), [("shop_cipher", "106013"), ("app_key", "36009004")])
def test_tiktok_wrong_shop_cipher_or_app_key_is_auth(server, sandbox, field, code):
    credentials = {**sandbox.credentials(), field: "someone-else"}
    adapter = TikTokAdapter(base_url=server.url, credentials=credentials)

    result = adapter.push_stock([update(1, RED, 3)])

    assert result.outcome == Outcome.AUTH
    assert f'"code": {code}' in result.error
    assert sandbox.counts["auth_refused"] == 1


@pytest.mark.parametrize("offset", [-301, 31])
def test_tiktok_sandbox_refuses_a_timestamp_outside_the_window(server, sandbox, offset):
    credentials = sandbox.credentials()
    path = "/product/202309/inventory/search"
    body = b'{"sku_ids":["1"]}'
    params = {
        "app_key": credentials["app_key"],
        "timestamp": str(int(time.time()) + offset),
        "shop_cipher": credentials["shop_cipher"],
    }
    params["sign"] = sign_request(
        app_secret=credentials["app_secret"], path=path, params=params, body=body
    )

    response = requests.post(
        server.url + path,
        params=params,
        data=body,
        headers={"x-tts-access-token": credentials["access_token"]},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()["code"] == 36009004
    assert "timestamp" in response.json()["message"]


def test_tiktok_sandbox_refuses_a_body_other_than_the_signed_one(server, sandbox):
    credentials = sandbox.credentials()
    path = f"/product/202309/products/{PRODUCT}/inventory/update"
    signed = b'{"skus":[{"id":"1729592969712207013","inventory":[{"quantity":1}]}]}'
    params = {
        "app_key": credentials["app_key"],
        "timestamp": str(int(time.time())),
        "shop_cipher": credentials["shop_cipher"],
    }
    params["sign"] = sign_request(
        app_secret=credentials["app_secret"], path=path, params=params, body=signed
    )

    response = requests.post(
        server.url + path,
        params=params,
        data=signed.replace(b":1}", b":99}"),
        headers={"x-tts-access-token": credentials["access_token"]},
        timeout=5,
    )

    assert response.json()["code"] == 106001
    assert sandbox.quantity(BLUE) == 7


def test_tiktok_sandbox_token_get_spends_the_auth_code(server, sandbox):
    code = sandbox.issue_auth_code()
    params = {
        "app_key": sandbox.app_key,
        "app_secret": sandbox.app_secret,
        "auth_code": code,
        "grant_type": "authorized_code",
    }

    first = requests.get(server.url + "/api/v2/token/get", params=params, timeout=5).json()
    again = requests.get(server.url + "/api/v2/token/get", params=params, timeout=5).json()

    assert first["code"] == 0
    assert sandbox.token_state(first["data"]["access_token"]) == "ok"
    assert first["data"]["access_token_expire_in"] > time.time()
    assert again["code"] != 0


# --- read back ----------------------------------------------------------------------------------


def test_tiktok_fetch_stock_returns_pushed_quantities(adapter, sandbox):
    adapter.push_stock([update(1, RED, 11), update(2, BLUE, 22)])
    ghost = {"product_id": PRODUCT, "sku_id": "404"}
    elsewhere = {**GREEN, "warehouse_id": "7000000000000000404"}

    observed = adapter.fetch_stock([RED, BLUE, SOCKS, ghost, elsewhere])

    assert {o.keys["sku_id"]: o.quantity for o in observed} == {
        RED["sku_id"]: 11,
        BLUE["sku_id"]: 22,
        SOCKS["sku_id"]: 7,
    }
    request = sandbox.requests[-1]
    assert request.path == "/product/202309/inventory/search"
    assert json.loads(request.body)["sku_ids"][:2] == [RED["sku_id"], BLUE["sku_id"]]


def test_tiktok_fetch_stock_refused_token_raises_auth(adapter, sandbox):
    sandbox.expire_tokens()

    with pytest.raises(AdapterError) as refused:
        adapter.fetch_stock([RED])

    assert refused.value.outcome == Outcome.AUTH


# --- webhooks and fields ------------------------------------------------------------------------


def test_tiktok_webhook_verify_accepts_the_sandbox_signature_and_refuses_a_tampered_body(
    adapter, sandbox
):
    body, headers = sandbox.signed_webhook(1, {"order_id": "576", "order_status": "CANCEL"})

    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert adapter.webhook_verify(headers=headers, body=body.replace(b"576", b"577")) is False
    assert adapter.webhook_verify(headers={}, body=body) is False
    assert (
        adapter.webhook_signature(body=body)
        == hmac.new(
            sandbox.app_secret.encode(), sandbox.app_key.encode() + body, hashlib.sha256
        ).hexdigest()
    )


def test_tiktok_credentials_clean_accepts_the_issue_fields_and_refuses_others(sandbox):
    credentials = sandbox.credentials()

    cleaned = TikTokAdapter.credentials_clean(credentials)

    assert set(cleaned) == {
        "app_key",
        "app_secret",
        "access_token",
        "refresh_token",
        "access_token_expires_at",
        "shop_cipher",
    }
    with pytest.raises(ValueError, match="unknown credential fields: shop_id"):
        TikTokAdapter.credentials_clean({**credentials, "shop_id": "1"})
    with pytest.raises(ValueError, match="missing credential fields: shop_cipher"):
        TikTokAdapter.credentials_clean({**credentials, "shop_cipher": ""})


def test_tiktok_keys_clean_accepts_the_issue_keys_and_refuses_others():
    assert TikTokAdapter.keys_clean({"product_id": 17, "sku_id": "18", "warehouse_id": "W"}) == {
        "product_id": "17",
        "sku_id": "18",
        "warehouse_id": "W",
    }
    assert TikTokAdapter.keys_to_columns({"product_id": "17", "sku_id": "18"}) == {
        "external_sku": "",
        "external_item_id": "17",
        "external_variant_id": "18",
        "external_location_id": "",
    }
    with pytest.raises(ValueError, match="unknown keys: item_id"):
        TikTokAdapter.keys_clean({"product_id": "1", "sku_id": "2", "item_id": "3"})
    with pytest.raises(ValueError, match="missing keys: sku_id"):
        TikTokAdapter.keys_clean({"product_id": "1"})


# --- Tokopedia & Shop ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokopedia_server():
    with SandboxServer(TokopediaSandbox()) as running:
        yield running


def test_tokopedia_adapter_is_the_tiktok_adapter_with_its_own_type_and_label():
    assert adapter_class("tokopedia") is TokopediaAdapter
    assert adapter_class("tiktok") is TikTokAdapter
    assert issubclass(TokopediaAdapter, TikTokAdapter)
    assert TokopediaAdapter.label == "Tokopedia & Shop"
    assert "tiktok" not in TokopediaAdapter.label.lower()
    assert TokopediaAdapter.required_credentials == ("app_key", "app_secret", "shop_cipher")
    assert {"tiktok", "tokopedia"} <= set(sandboxes())


def test_tokopedia_push_goes_through_the_tiktok_shop_endpoints(tokopedia_server):
    app = tokopedia_server.app
    app.reset()
    app.configure(listings=[RED])
    adapter = TokopediaAdapter(
        base_url=tokopedia_server.url,
        auth_base_url=tokopedia_server.url,
        credentials=app.credentials(),
    )

    result = adapter.push_stock([update(1, RED, 4)])
    adapter.token_refresh()

    assert result.outcome == Outcome.OK
    assert app.quantity(RED) == 4
    assert [request.path for request in app.requests[:2]] == [
        "/product/202309/inventory/search",  # the SKU's warehouses, read before the update
        f"/product/202309/products/{PRODUCT}/inventory/update",
    ]
    assert app.requests[-1].path == "/api/v2/token/refresh"
    refresh = requests.get(
        tokopedia_server.url + "/api/v2/token/refresh",
        params={
            "app_key": app.app_key,
            "app_secret": app.app_secret,
            "refresh_token": adapter.credentials["refresh_token"],
            "grant_type": "refresh_token",
        },
        timeout=5,
    ).json()
    assert refresh["data"]["seller_base_region"] == "ID"
    assert "Tokopedia & Shop" in refresh["data"]["seller_name"]
