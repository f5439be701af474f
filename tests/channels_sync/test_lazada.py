"""The Lazada adapter against the Lazada sandbox, over real HTTP on localhost."""

import hashlib
import hmac
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import requests
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.lazada import (
    LazadaAdapter,
    classify_code,
    push_signature,
    sign_request,
    signed_params,
    stock_payload,
)
from channels_sync.sandbox.lazada import LazadaSandbox
from core.sandbox import Fault, SandboxServer

# Hand-computed vector (no vendor vector exists for Lazada): made-up secret and token.
VECTOR_SECRET = "helloworld"
VECTOR_PATH = "/product/stock/sellable/update"
VECTOR_PAYLOAD = (
    "<Request><Product><Skus><Sku><ItemId>234234234</ItemId><SkuId>234</SkuId>"
    "<SellableQuantity>20</SellableQuantity></Sku></Skus></Product></Request>"
)
VECTOR_PARAMS = {
    "app_key": "123456",
    "timestamp": "1517820392000",
    "sign_method": "sha256",
    "access_token": "50000601c30atpedfgu3LVvik87Ixlsvle3mSoB7701ceb156fPunYZ43GBg",
    "payload": VECTOR_PAYLOAD,
}
VECTOR_SIGN = "F4DC9E8587C323CE410679ACDE1F3ACEC796EE81183911077639C33DAB211CA4"

LISTINGS = [
    {"item_id": "1001", "sku_id": "5001", "seller_sku": "TEE-RED-S", "quantity": 3},
    {"item_id": "1001", "sku_id": "5002", "seller_sku": "TEE-RED-M", "quantity": 4},
    {"item_id": "1002", "sku_id": "6001", "quantity": 0},
]


@pytest.fixture(scope="module")
def server():
    app = LazadaSandbox()
    with SandboxServer(app) as running:
        yield running


@pytest.fixture
def sandbox(server):
    server.app.reset()
    server.app.seed_listings(LISTINGS)
    return server.app


def make_adapter(server, credentials, *, rest=True, **kwargs):
    base = server.url + ("/rest" if rest else "")
    return LazadaAdapter(base_url=base, auth_base_url=base, credentials=credentials, **kwargs)


@pytest.fixture
def adapter(server, sandbox):
    return make_adapter(server, sandbox.credentials())


def update(listing_id: int, listing: dict, quantity: int) -> StockUpdate:
    keys = {name: listing[name] for name in ("item_id", "sku_id", "seller_sku") if name in listing}
    return StockUpdate(listing_id=listing_id, keys=keys, quantity=quantity)


def three_updates() -> list[StockUpdate]:
    return [update(i + 1, listing, 10 * (i + 1)) for i, listing in enumerate(LISTINGS)]


def form(request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.body.decode()).items()}


def inject_answer(sandbox, body, status: int = 200, **fault) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    sandbox.inject(Fault(status=status, body=text, **fault))


# --- signing ----------------------------------------------------------------------------------


def test_sign_request_matches_the_hand_computed_vector():
    signed = (
        VECTOR_PATH
        + "access_token"
        + VECTOR_PARAMS["access_token"]
        + "app_key123456"
        + "payload"
        + VECTOR_PAYLOAD
        + "sign_methodsha256"
        + "timestamp1517820392000"
    )
    by_hand = hmac.new(VECTOR_SECRET.encode(), signed.encode(), hashlib.sha256).hexdigest()

    sign = sign_request(VECTOR_PATH, {**VECTOR_PARAMS, "sign": "ignored"}, VECTOR_SECRET)

    assert sign == by_hand.upper() == VECTOR_SIGN
    assert sign.upper() == sign
    assert sign.lower() != sign


def test_sign_request_covers_the_api_path_without_rest():
    params = signed_params(
        "/auth/token/refresh",
        {"refresh_token": "50001600212wcwiOabwyjtEH11acc19aBOovQ2KDq7Ij"},
        app_key="123456",
        app_secret=VECTOR_SECRET,
        timestamp_ms=1517820392000,
    )

    assert params["sign"] == "1A9E4048D9D5BC0B112A664CF93353FBFC3C671D5B360AC5A43B5C6538B969EC"
    assert "access_token" not in params
    assert params["sign"] != sign_request("/rest/auth/token/refresh", params, VECTOR_SECRET)


def test_stock_payload_escapes_text_and_omits_a_missing_seller_sku():
    payload = stock_payload(
        [
            StockUpdate(1, {"item_id": "1", "sku_id": "2", "seller_sku": "A&B<1>"}, 5),
            StockUpdate(2, {"item_id": "1", "sku_id": "3"}, -2),
        ]
    )

    assert payload == (
        "<Request><Product><Skus>"
        "<Sku><ItemId>1</ItemId><SkuId>2</SkuId><SellerSku>A&amp;B&lt;1&gt;</SellerSku>"
        "<SellableQuantity>5</SellableQuantity></Sku>"
        "<Sku><ItemId>1</ItemId><SkuId>3</SkuId><SellableQuantity>0</SellableQuantity></Sku>"
        "</Skus></Product></Request>"
    )


def test_classify_code_tells_an_expired_token_from_a_refused_one():
    expired = classify_code(
        "IllegalAccessToken", "The specified access token is invalid or expired"
    )

    assert expired == (Outcome.AUTH, True)
    assert classify_code("IllegalAccessToken", "The specified access token is invalid") == (
        Outcome.AUTH,
        False,
    )
    assert classify_code("MissingAccessToken") == (Outcome.AUTH, False)
    assert classify_code("IncompleteSignature") == (Outcome.AUTH, False)
    assert classify_code("901") == (Outcome.THROTTLED, False)
    assert classify_code("ServiceTimeout") == (Outcome.RETRYABLE, False)
    assert classify_code("4170") == (Outcome.PERMANENT, False)


# --- push -------------------------------------------------------------------------------------


def test_lazada_push_stock_sets_sellable_quantities(adapter, sandbox):
    before = time.time() * 1000

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.OK
    assert result.http_status == 200
    assert [(item.listing_id, item.ok) for item in result.items] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert [sandbox.quantity(listing) for listing in LISTINGS] == [10, 20, 30]
    assert sandbox.updates == [
        ({"item_id": "1001", "sku_id": "5001", "seller_sku": "TEE-RED-S"}, 10),
        ({"item_id": "1001", "sku_id": "5002", "seller_sku": "TEE-RED-M"}, 20),
        ({"item_id": "1002", "sku_id": "6001"}, 30),
    ]
    (request,) = sandbox.requests
    params = form(request)
    assert request.method == "POST"
    assert request.path == "/rest/product/stock/sellable/update"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert params["sign_method"] == "sha256"
    assert params["access_token"] == adapter.credentials["access_token"]
    assert before - 1000 <= int(params["timestamp"]) <= time.time() * 1000 + 1000  # ms
    assert params["sign"] == sign_request(VECTOR_PATH, params, sandbox.app_secret)
    assert params["sign"].isupper()
    assert "<SellerSku>TEE-RED-S</SellerSku>" in params["payload"]


def test_lazada_push_stock_works_without_the_rest_prefix(server, sandbox):
    adapter = make_adapter(server, sandbox.credentials(), rest=False)

    result = adapter.push_stock([update(1, LISTINGS[0], 7)])

    assert result.outcome == Outcome.OK
    assert sandbox.requests[0].path == "/product/stock/sellable/update"
    assert sandbox.quantity(LISTINGS[0]) == 7


def test_lazada_batches_are_plain_chunks_of_at_most_fifty(adapter):
    updates = [
        StockUpdate(i, {"item_id": str(1000 + i % 7), "sku_id": str(5000 + i)}, i)
        for i in range(120)
    ]

    large = adapter.batches(updates, 100)
    default = adapter.batches(updates, LazadaAdapter.default_batch_size)

    assert [len(batch) for batch in large] == [50, 50, 20]
    assert [len(batch) for batch in default] == [20] * 6
    assert [u.listing_id for batch in large for u in batch] == list(range(120))
    assert len({u.keys["item_id"] for u in large[0]}) == 7  # products mixed in one call


def test_lazada_push_stock_too_many_skus_is_permanent(adapter, sandbox):
    updates = [StockUpdate(i, {"item_id": "1001", "sku_id": str(i)}, 1) for i in range(51)]

    result = adapter.push_stock(updates)

    assert result.outcome == Outcome.PERMANENT
    assert '"204"' in result.error
    assert sandbox.updates == []


def test_lazada_push_stock_rejected_sku_is_partial(adapter, sandbox):
    sandbox.configure(reject=[{"item_id": "1001", "sku_id": "5002"}])

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.PARTIAL
    # the named SKU failed for good; the others are not confirmed by a failed call, so
    # they are sent again (the sandbox did apply them)
    assert [(item.listing_id, item.ok, item.retryable) for item in result.items] == [
        (1, False, True),
        (2, False, False),
        (3, False, True),
    ]
    failed = result.items[1]
    assert "cannot be updated" in failed.error
    assert [sandbox.quantity(listing) for listing in LISTINGS] == [10, 4, 30]
    assert sandbox.counts["items_rejected"] == 1


def test_lazada_push_stock_unknown_listing_fails_that_item_only(adapter, sandbox):
    unknown = {"item_id": "1001", "sku_id": "9999", "seller_sku": "NOPE"}

    result = adapter.push_stock([update(1, LISTINGS[0], 8), update(2, unknown, 8)])

    assert result.outcome == Outcome.PARTIAL
    assert [(item.ok, item.retryable, item.error) for item in result.items] == [
        (False, True, "not confirmed by a failed call"),
        (False, False, "SkuId: SKU not exist"),
    ]
    assert sandbox.quantity(LISTINGS[0]) == 8
    assert sandbox.quantity(unknown) is None


def test_lazada_push_stock_matches_detail_by_seller_sku_when_sku_id_is_absent(adapter, sandbox):
    detail = [{"seller_sku": "TEE-RED-M", "message": "Negative sellable quantity"}]
    inject_answer(sandbox, {"code": "501", "message": "Update product failed", "detail": detail})

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.PARTIAL
    # the one named failed for good; the others are sent again (not confirmed)
    assert [(item.ok, item.retryable) for item in result.items] == [
        (False, True),
        (False, False),
        (False, True),
    ]
    assert result.items[1].error == "Negative sellable quantity"


def test_lazada_push_stock_501_naming_no_update_is_permanent(adapter, sandbox):
    inject_answer(sandbox, {"code": "501", "message": "Update product failed", "detail": []})

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.PERMANENT
    assert result.items == []


def test_lazada_push_stock_throttled_by_the_qps_limit(adapter, sandbox):
    sandbox.configure(throttle_per_second=1)

    first = adapter.push_stock([update(1, LISTINGS[0], 1)])
    second = adapter.push_stock([update(1, LISTINGS[0], 2)])

    assert first.outcome == Outcome.OK
    assert second.outcome == Outcome.THROTTLED
    assert second.http_status == 200
    assert second.retry_after == 1.0
    assert '"901"' in second.error
    assert sandbox.quantity(LISTINGS[0]) == 1
    assert sandbox.counts["throttled"] == 1


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome", "retry_after"),
    [
        (200, {"code": "ApiCallLimit", "message": "ban will last 3 seconds"}, {}, "throttled", 3.0),
        (429, "Too Many Requests", {"Retry-After": "7"}, "throttled", 7.0),
        (200, {"code": "AppCallLimit", "message": "app over its limit"}, {}, "throttled", 1.0),
        (503, "<html>Service Unavailable</html>", {}, "retryable", None),
        (200, {"code": "ServiceTimeout", "message": "timed out"}, {}, "retryable", None),
        (200, "not json", {}, "retryable", None),
        (200, {"code": "4170", "message": "campaign stock lock"}, {}, "permanent", None),
        (200, {"code": "IncompleteSignature"}, {}, "auth", None),
        (400, "<html>Bad Request</html>", {}, "permanent", None),
    ],
)
def test_lazada_push_stock_classifies_answers(
    adapter, sandbox, status, body, headers, outcome, retry_after
):
    inject_answer(sandbox, body, status=status, headers=headers)

    result = adapter.push_stock(three_updates())

    assert result.outcome == outcome
    assert result.http_status == status
    assert result.retry_after == retry_after
    assert result.error
    assert result.token_expired is False


def test_lazada_push_stock_server_error_is_retryable(adapter, sandbox):
    sandbox.configure(error_ratio=1)

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.RETRYABLE
    assert '"code": "6"' in result.error
    assert sandbox.counts["errors"] == 1
    assert sandbox.updates == []


def test_lazada_push_stock_timeout_is_retryable(server, sandbox):
    sandbox.configure(timeout_ratio=1, timeout_seconds=2)
    adapter = make_adapter(server, sandbox.credentials(), timeout=0.5)
    started = time.perf_counter()

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status is None
    assert "timeout" in result.error
    assert time.perf_counter() - started < 1.5
    assert sandbox.updates == []


# --- tokens -----------------------------------------------------------------------------------


def test_lazada_expired_token_is_auth_then_refresh_and_push_succeed(adapter, sandbox):
    old_access = adapter.credentials["access_token"]
    refresh = adapter.credentials["refresh_token"]
    sandbox.expire_tokens()

    expired = adapter.push_stock(three_updates())
    credentials = adapter.token_refresh()
    again = adapter.push_stock(three_updates())

    assert expired.outcome == Outcome.AUTH
    assert expired.token_expired is True
    assert credentials["access_token"] != old_access
    assert credentials["refresh_token"] == refresh
    assert credentials == adapter.credentials
    expires_at = parse_datetime(credentials["access_token_expires_at"])
    assert abs(expires_at - (timezone.now() + timedelta(hours=4))) < timedelta(minutes=1)
    assert again.outcome == Outcome.OK
    assert sandbox.quantity(LISTINGS[2]) == 30
    refresh_request = sandbox.requests[1]
    assert refresh_request.path == "/rest/auth/token/refresh"
    assert form(refresh_request)["refresh_token"] == refresh
    assert "access_token" not in form(refresh_request)


def test_lazada_refresh_token_is_reusable(adapter, sandbox):
    first = adapter.token_refresh()["access_token"]
    second = adapter.token_refresh()["access_token"]

    assert first != second
    assert sandbox.token_state(first) == sandbox.token_state(second) == "ok"
    assert sandbox.counts["refreshes"] == 2


def test_lazada_token_refresh_keeps_a_rotated_refresh_token(adapter, sandbox):
    answer = {"code": "0", "access_token": "A2", "refresh_token": "R2", "expires_in": 600}
    inject_answer(sandbox, answer)

    credentials = adapter.token_refresh()

    assert credentials["access_token"] == "A2"
    assert credentials["refresh_token"] == "R2"
    expires_at = parse_datetime(credentials["access_token_expires_at"])
    assert abs(expires_at - (timezone.now() + timedelta(seconds=600))) < timedelta(seconds=30)


def test_lazada_revoked_grant_is_auth_and_cannot_refresh(adapter, sandbox):
    sandbox.revoke()

    result = adapter.push_stock(three_updates())
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()

    assert result.outcome == Outcome.AUTH
    assert result.token_expired is False
    assert refused.value.outcome == Outcome.AUTH
    assert "IllegalRefreshToken" in str(refused.value)


def test_lazada_token_refresh_without_refresh_token_is_auth(server, sandbox):
    credentials = sandbox.credentials()
    del credentials["refresh_token"]
    adapter = make_adapter(server, credentials)

    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()

    assert refused.value.outcome == Outcome.AUTH
    assert sandbox.requests == []


def test_lazada_token_refresh_server_error_is_retryable(adapter, sandbox):
    inject_answer(sandbox, "<html>Bad Gateway</html>", status=502)

    with pytest.raises(AdapterError) as failed:
        adapter.token_refresh()

    assert failed.value.outcome == Outcome.RETRYABLE


def test_lazada_sandbox_creates_tokens_from_a_single_use_code(server, sandbox):
    code = sandbox.authorization_code()

    def create(path):
        params = signed_params(
            "/auth/token/create",
            {"code": code},
            app_key=sandbox.app_key,
            app_secret=sandbox.app_secret,
        )
        return requests.post(server.url + path, data=params, timeout=5).json()

    created = create("/auth/token/create")
    reused = create("/rest/auth/token/create")

    assert created["code"] == "0"
    assert sandbox.token_state(created["access_token"]) == "ok"
    assert created["expires_in"] == 4 * 3600
    assert created["country_user_info_list"][0]["seller_id"]
    assert reused["code"] == "InvalidCode"


# --- the sandbox's checks ---------------------------------------------------------------------


def test_lazada_wrong_secret_is_refused_as_a_bad_signature(server, sandbox):
    credentials = {**sandbox.credentials(), "app_secret": "not-the-secret"}
    adapter = make_adapter(server, credentials)

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.AUTH
    assert result.token_expired is False
    assert '"IncompleteSignature"' in result.error
    assert sandbox.counts["bad_signature"] == 1
    assert sandbox.updates == []


def test_lazada_sandbox_refuses_seconds_timestamps_and_lowercase_signs(server, sandbox):
    credentials = sandbox.credentials()

    def params(quantity, timestamp_ms=None):
        return signed_params(
            VECTOR_PATH,
            {"payload": stock_payload([update(1, LISTINGS[0], quantity)])},
            app_key=credentials["app_key"],
            app_secret=credentials["app_secret"],
            access_token=credentials["access_token"],
            timestamp_ms=timestamp_ms,
        )

    def post(data):
        return requests.post(server.url + "/rest" + VECTOR_PATH, data=data, timeout=5).json()

    in_seconds = post(params(5, timestamp_ms=int(time.time())))
    lowercase = params(6)
    lowercase["sign"] = lowercase["sign"].lower()
    lowercase_answer = post(lowercase)
    good = post(params(7))

    assert in_seconds["code"] == "InvalidTimestamp"
    assert lowercase_answer["code"] == "IncompleteSignature"
    assert good["code"] == "0"
    assert sandbox.quantity(LISTINGS[0]) == 7
    assert sandbox.counts["bad_signature"] == 1


def test_lazada_invalid_timestamp_answer_is_retryable(adapter, sandbox):
    inject_answer(sandbox, {"code": "InvalidTimestamp", "type": "ISV", "message": "stale"})

    result = adapter.push_stock(three_updates())

    assert result.outcome == Outcome.RETRYABLE


# --- read back --------------------------------------------------------------------------------


def test_lazada_fetch_stock_returns_pushed_quantities(adapter, sandbox):
    adapter.push_stock(three_updates())
    keys = [
        {"item_id": "1001", "sku_id": "5001", "seller_sku": "TEE-RED-S"},
        {"item_id": "1001", "sku_id": "5002"},
        {"item_id": "1002", "sku_id": "6001"},
        {"item_id": "1001", "sku_id": "5999"},  # unknown SKU of a known item
        {"item_id": "7777", "sku_id": "1"},  # unknown item
    ]

    observed = adapter.fetch_stock(keys)

    assert [(o.keys["sku_id"], o.quantity) for o in observed] == [
        ("5001", 10),
        ("5002", 20),
        ("6001", 30),
    ]
    item_calls = [r for r in sandbox.requests if r.path.endswith("/product/item/get")]
    assert [r.query["item_id"] for r in item_calls] == [["1001"], ["1002"], ["7777"]]
    assert all(r.method == "GET" for r in item_calls)


def test_lazada_fetch_stock_reads_each_warehouse_not_the_sum_then_falls_back(adapter, sandbox):
    warehouses = [
        {"warehouseCode": "dropshipping", "sellableQuantity": 4},
        {"warehouseCode": "SG-WH-2", "sellableQuantity": 5},
    ]
    skus = [
        {
            "SkuId": 5001,
            "SellerSku": "TEE-RED-S",
            "quantity": 99,
            "Available": 99,
            "multiWarehouseInventories": warehouses,
        },
        {"SkuId": 5002, "SellerSku": "TEE-RED-M", "quantity": 50, "Available": 7},
        {"SkuId": 5003, "SellerSku": "TEE-RED-L", "quantity": 2},
        {
            "SkuId": 5004,
            "multiWarehouseInventories": [
                {"warehouseCode": "SG-WH-1", "sellableQuantity": 1},
                {"warehouseCode": "SG-WH-2", "sellableQuantity": 2},
            ],
        },
    ]
    inject_answer(sandbox, {"code": "0", "data": {"itemId": 1001, "skus": skus}})
    keys = [
        {"item_id": "1001", "sku_id": "5001"},
        {"item_id": "1001", "sku_id": "5001", "warehouse_code": "SG-WH-2"},
        {"item_id": "1001", "sku_id": "5001", "warehouse_code": "SG-WH-9"},
        {"item_id": "1001", "sku_id": "5002"},
        {"item_id": "1001", "sku_id": "0", "seller_sku": "TEE-RED-L"},
        {"item_id": "1001", "sku_id": "5004"},
    ]

    observed = adapter.fetch_stock(keys)

    # A listing without a warehouse reads the dropshipping warehouse (what the single form
    # writes), a warehouse listing its own entry; an unknown warehouse, and a SKU kept in
    # several warehouses none of which is the dropshipping one, say nothing.
    assert [(o.keys, o.quantity) for o in observed] == [
        ({"item_id": "1001", "sku_id": "5001"}, 4),
        ({"item_id": "1001", "sku_id": "5001", "warehouse_code": "SG-WH-2"}, 5),
        ({"item_id": "1001", "sku_id": "5002"}, 7),
        ({"item_id": "1001", "sku_id": "0", "seller_sku": "TEE-RED-L"}, 2),
    ]


def test_lazada_fetch_stock_with_an_expired_token_raises_auth(adapter, sandbox):
    sandbox.expire_tokens()

    with pytest.raises(AdapterError) as failed:
        adapter.fetch_stock([{"item_id": "1001", "sku_id": "5001"}])

    assert failed.value.outcome == Outcome.AUTH


# --- webhooks and field names -----------------------------------------------------------------


def test_lazada_webhook_signature_round_trip(adapter, sandbox):
    body = json.dumps(
        {
            "seller_id": "1000100",
            "message_type": 0,
            "data": {"order_status": "pending", "trade_order_id": "260000000001"},
            "timestamp": 1700000000000,
        }
    ).encode()
    by_hand = hmac.new(
        sandbox.app_secret.encode(), sandbox.app_key.encode() + body, hashlib.sha256
    ).hexdigest()

    headers = sandbox.push_headers(body)

    assert adapter.webhook_signature(body=body) == by_hand == headers["Authorization"]
    assert by_hand == push_signature(
        app_key=sandbox.app_key, app_secret=sandbox.app_secret, body=body
    )
    assert adapter.webhook_verify(headers=headers, body=body)
    assert not adapter.webhook_verify(headers=headers, body=body.replace(b"pending", b"paid"))
    assert not adapter.webhook_verify(headers={}, body=body)


def test_lazada_credentials_clean_accepts_the_issue_fields(sandbox):
    credentials = sandbox.credentials()

    assert LazadaAdapter.credentials_clean(credentials) == credentials
    assert set(credentials) == {
        "app_key",
        "app_secret",
        "access_token",
        "refresh_token",
        "access_token_expires_at",
    }
    with pytest.raises(ValueError, match="unknown credential fields: shop_id"):
        LazadaAdapter.credentials_clean({**credentials, "shop_id": "1"})
    with pytest.raises(ValueError, match="missing credential fields: app_secret"):
        LazadaAdapter.credentials_clean({"app_key": "1"})


def test_lazada_keys_clean_accepts_the_issue_fields():
    keys = LazadaAdapter.keys_clean({"item_id": 1001, "sku_id": "5001", "seller_sku": "A-1"})

    assert keys == {"item_id": "1001", "sku_id": "5001", "seller_sku": "A-1"}
    assert LazadaAdapter.keys_to_columns(keys) == {
        "external_item_id": "1001",
        "external_variant_id": "5001",
        "external_sku": "A-1",
        "external_location_id": "",
    }
    assert LazadaAdapter.keys_to_columns({"item_id": "1", "sku_id": "2"})["external_sku"] == ""
    with pytest.raises(ValueError, match="unknown keys: model_id"):
        LazadaAdapter.keys_clean({"item_id": "1", "sku_id": "2", "model_id": "3"})
    with pytest.raises(ValueError, match="missing keys: sku_id"):
        LazadaAdapter.keys_clean({"item_id": "1", "seller_sku": "A-1"})
