"""The Shopify adapter against its sandbox: compare-and-set, idempotency, cost, webhooks."""

import base64
import hashlib
import hmac
import json
import time

import pytest

from channels_sync.adapters import adapter_class
from channels_sync.adapters.base import AdapterError, OrderStatus, Outcome, StockUpdate
from channels_sync.adapters.shopify import ShopifyAdapter
from channels_sync.adapters.shopify_wire import SET_QUANTITIES, order_status, user_error_row
from channels_sync.sandbox.shopify import ShopifySandbox
from core.sandbox import Fault, SandboxServer, sandboxes

RED = {"inventory_item_id": "43000001", "location_id": "61000001"}
BLUE = {"inventory_item_id": "43000002", "location_id": "61000001"}
GREEN = {"inventory_item_id": "43000003", "location_id": "61000001"}
LISTINGS = [RED, BLUE, GREEN]
# Section 10 vectors (made-up secrets).
VECTORS = [
    ("shpss_secret", b'{"id":820982911946154508}', "jqbalbO3Z8mDmrF2/+wzM3KYvbgqzVBF969vgiIy80I="),
    (
        "shpss_test_secret",
        b'{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/'
        b'820982911946154508","name":"#1001"}',
        "JGv4+kXjwAlYc8RBT7afgJnegcZZX8sxOemizLZV3ao=",
    ),
]


def update(listing_id: int, keys: dict, quantity: int, expected: int | None = None):
    return StockUpdate(listing_id=listing_id, keys=dict(keys), quantity=quantity, expected=expected)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(ShopifySandbox()) as running:
        yield running


@pytest.fixture
def sandbox(server) -> ShopifySandbox:
    app = server.app
    app.reset()
    app.configure(listings=[{**listing, "quantity": 7} for listing in LISTINGS])
    return app


@pytest.fixture
def adapter(server, sandbox) -> ShopifyAdapter:
    return ShopifyAdapter(base_url=server.url, credentials=sandbox.credentials())


def _bodies(sandbox) -> list[dict]:
    return [json.loads(request.body) for request in sandbox.requests]


# --- registration, keys, credentials --------------------------------------------------------


def test_shopify_adapter_and_sandbox_are_registered():
    assert adapter_class("shopify") is ShopifyAdapter
    assert ShopifyAdapter.label == "Shopify"
    assert "shopify" in sandboxes()


def test_shopify_keys_clean_takes_numbers_and_gids_and_stores_numbers():
    keys = ShopifyAdapter.keys_clean(
        {"inventory_item_id": "gid://shopify/InventoryItem/30322695", "location_id": 124656943}
    )

    assert keys == {"inventory_item_id": "30322695", "location_id": "124656943"}
    assert ShopifyAdapter.keys_to_columns(keys)["external_item_id"] == "30322695"
    assert ShopifyAdapter.keys_to_columns(keys)["external_location_id"] == "124656943"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"inventory_item_id": "gid://shopify/Location/1", "location_id": "2"}, "InventoryItem"),
        ({"inventory_item_id": "abc", "location_id": "2"}, "numeric id"),
        ({"inventory_item_id": "1"}, "missing keys: location_id"),
    ],
)
def test_shopify_keys_clean_refuses_other_ids(keys, message):
    with pytest.raises(ValueError, match=message):
        ShopifyAdapter.keys_clean(keys)


def test_shopify_credentials_clean_checks_domain_and_version():
    good = {"shop_domain": "Shop.myshopify.com", "access_token": "t", "client_secret": "s"}

    assert ShopifyAdapter.credentials_clean(good)["shop_domain"] == "shop.myshopify.com"
    with pytest.raises(ValueError, match="shop_domain"):
        ShopifyAdapter.credentials_clean({**good, "shop_domain": "https://x/"})
    with pytest.raises(ValueError, match="api_version"):
        ShopifyAdapter.credentials_clean({**good, "api_version": "2026-02"})
    # Before 2026-01 `inventorySetQuantities` has no changeFromQuantity nor @idempotent.
    with pytest.raises(ValueError, match="api_version 2025-10 is too old"):
        ShopifyAdapter.credentials_clean({**good, "api_version": "2025-10"})
    for version in ("2026-01", "2026-04", "2027-10", "unstable"):
        assert (
            ShopifyAdapter.credentials_clean({**good, "api_version": version})["api_version"]
            == version
        )
    with pytest.raises(ValueError, match="missing"):
        ShopifyAdapter.credentials_clean({"shop_domain": "a.myshopify.com", "access_token": "t"})


def test_shopify_blank_base_url_calls_the_shops_own_domain(settings):
    settings.SHOPIFY_API_VERSION = "2026-01"
    adapter = ShopifyAdapter(
        base_url="", credentials={"shop_domain": "a-shop.myshopify.com", "access_token": "t"}
    )
    pinned = ShopifyAdapter(
        base_url="", credentials={"shop_domain": "b.myshopify.com", "api_version": "2026-04"}
    )

    assert adapter.graphql_url == "https://a-shop.myshopify.com/admin/api/2026-01/graphql.json"
    assert pinned.graphql_url == "https://b.myshopify.com/admin/api/2026-04/graphql.json"


def test_shopify_token_refresh_says_reinstall(adapter):
    with pytest.raises(AdapterError, match="re-install") as raised:
        adapter.token_refresh()

    assert raised.value.outcome == Outcome.AUTH


# --- push -----------------------------------------------------------------------------------


def test_shopify_push_sends_gids_change_from_and_the_idempotency_key(adapter, sandbox):
    result = adapter.push_stock(
        [update(1, RED, 12, expected=7), update(2, BLUE, 0, expected=7)], idempotency_key="k-1"
    )

    assert result.outcome == Outcome.OK
    assert [(item.listing_id, item.ok) for item in result.items] == [(1, True), (2, True)]
    assert sandbox.quantity(RED) == 12
    assert sandbox.quantity(BLUE) == 0
    (body,) = _bodies(sandbox)
    assert body["query"] == SET_QUANTITIES
    assert "@idempotent(key: $idempotencyKey)" in body["query"]
    assert body["variables"]["idempotencyKey"] == "k-1"
    assert body["variables"]["input"] == {
        "name": "available",
        "reason": "correction",
        "quantities": [
            {
                "inventoryItemId": "gid://shopify/InventoryItem/43000001",
                "locationId": "gid://shopify/Location/61000001",
                "quantity": 12,
                "changeFromQuantity": 7,
            },
            {
                "inventoryItemId": "gid://shopify/InventoryItem/43000002",
                "locationId": "gid://shopify/Location/61000001",
                "quantity": 0,
                "changeFromQuantity": 7,
            },
        ],
    }
    assert sandbox.requests[0].headers["X-Shopify-Access-Token"].startswith("shpat_")


def test_shopify_push_reads_unknown_expectations_first_in_one_call(adapter, sandbox):
    result = adapter.push_stock(
        [update(1, RED, 3), update(2, BLUE, 4), update(3, GREEN, 5, expected=7)],
        idempotency_key="k-2",
    )

    assert result.outcome == Outcome.OK
    read, write = _bodies(sandbox)
    assert "inventoryLevel(locationId: $l0)" in read["query"]
    assert read["variables"] == {
        "i0": "gid://shopify/InventoryItem/43000001",
        "l0": "gid://shopify/Location/61000001",
        "i1": "gid://shopify/InventoryItem/43000002",
        "l1": "gid://shopify/Location/61000001",
    }
    assert [row["changeFromQuantity"] for row in write["variables"]["input"]["quantities"]] == [
        7,
        7,
        7,
    ]
    assert [sandbox.quantity(k) for k in LISTINGS] == [3, 4, 5]


def test_shopify_push_stale_row_comes_back_with_the_quantity_read_back(adapter, sandbox):
    sandbox.stock_set_external(BLUE, 4, notify=False)

    result = adapter.push_stock(
        [update(1, RED, 12, expected=7), update(2, BLUE, 9, expected=7)], idempotency_key="k-3"
    )

    assert result.outcome == Outcome.PARTIAL
    red, blue = result.items
    assert blue.stale is True
    assert blue.observed == 4
    assert blue.error.startswith("CHANGE_FROM_QUANTITY_STALE")
    assert blue.retryable is False
    # The sandbox applies nothing when a row is refused: the other row is not confirmed.
    assert (red.ok, red.retryable, red.stale, red.requeue) == (False, True, False, True)
    assert sandbox.quantity(RED) == 7
    assert sandbox.quantity(BLUE) == 4


def test_shopify_push_row_not_stocked_is_permanent_for_that_item(adapter, sandbox):
    sandbox.configure(reject=[GREEN])

    result = adapter.push_stock([update(3, GREEN, 2, expected=7)], idempotency_key="k-4")

    assert result.outcome == Outcome.PARTIAL
    (item,) = result.items
    assert (item.ok, item.retryable, item.stale) == (False, False, False)
    assert item.error.startswith("ITEM_NOT_STOCKED_AT_LOCATION")


def test_shopify_idempotent_replay_applies_once(adapter, sandbox):
    first = adapter.push_stock([update(1, RED, 11, expected=7)], idempotency_key="same")
    sandbox.stock_set_external(RED, 2, notify=False)  # moved after our call

    again = adapter.push_stock([update(1, RED, 11, expected=7)], idempotency_key="same")

    assert first.outcome == again.outcome == Outcome.OK
    assert sandbox.quantity(RED) == 2  # the replay answered the first result, applied nothing
    assert sandbox.counts["idempotent_replays"] == 1
    assert len(sandbox.applied) == 1


def test_shopify_idempotency_key_with_other_parameters_is_retryable(adapter, sandbox):
    adapter.push_stock([update(1, RED, 11, expected=7)], idempotency_key="k-5")

    result = adapter.push_stock([update(1, RED, 12, expected=11)], idempotency_key="k-5")

    assert result.outcome == Outcome.RETRYABLE
    assert result.error.startswith("IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
    assert sandbox.quantity(RED) == 11


def test_shopify_sandbox_refuses_a_concurrent_call_with_the_same_key(sandbox):
    sandbox.in_flight.add("busy")
    adapter_body = {
        "name": "available",
        "reason": "correction",
        "quantities": [
            {
                "inventoryItemId": "gid://shopify/InventoryItem/43000001",
                "locationId": "gid://shopify/Location/61000001",
                "quantity": 1,
                "changeFromQuantity": 7,
            }
        ],
    }
    answer = _graphql(sandbox, SET_QUANTITIES, {"input": adapter_body, "idempotencyKey": "busy"})

    errors = answer["data"]["inventorySetQuantities"]["userErrors"]
    assert [error["code"] for error in errors] == ["IDEMPOTENCY_CONCURRENT_REQUEST"]
    assert sandbox.quantity(RED) == 7


def test_shopify_sandbox_strict_versions_require_change_from_and_the_key(server, sandbox):
    adapter = ShopifyAdapter(
        base_url=server.url, credentials={**sandbox.credentials(), "api_version": "2026-04"}
    )
    row = {
        "inventoryItemId": "gid://shopify/InventoryItem/43000001",
        "locationId": "gid://shopify/Location/61000001",
        "quantity": 1,
    }
    body = {"name": "available", "reason": "correction", "quantities": [row]}

    no_key = adapter._graphql("x", SET_QUANTITIES, {"input": body, "idempotencyKey": ""})
    no_change = adapter._graphql("x", SET_QUANTITIES, {"input": body, "idempotencyKey": "k"})

    assert no_key.outcome == Outcome.PERMANENT
    errors = no_change.data["inventorySetQuantities"]["userErrors"]
    assert [(e["code"], e["field"]) for e in errors] == [
        ("CHANGE_FROM_QUANTITY_REQUIRED", ["input", "quantities", "0", "changeFromQuantity"])
    ]
    # The adapter always sends both, so it works on 2026-04.
    assert adapter.push_stock([update(1, RED, 3, expected=7)]).outcome == Outcome.OK
    assert sandbox.quantity(RED) == 3


def test_shopify_user_error_row_reads_the_quantities_index():
    assert user_error_row(["input", "quantities", "3", "changeFromQuantity"]) == 3
    assert user_error_row(["input", "reason"]) is None
    assert user_error_row(None) is None


# --- throttling and failures ----------------------------------------------------------------


def test_shopify_cost_throttle_waits_the_restore_time_of_the_points_needed(
    server, adapter, sandbox
):
    sandbox.configure(cost_maximum=15, cost_restore_rate=2)
    assert adapter.push_stock([update(1, RED, 1, expected=7)]).outcome == Outcome.OK
    # Another process of the same app (it has not seen the bucket) sends next.
    other = ShopifyAdapter(base_url=server.url, credentials=adapter.credentials)

    result = other.push_stock([update(1, RED, 2, expected=1)])

    assert result.outcome == Outcome.THROTTLED
    # 5 points left, 10 needed, 2 restored a second: 2.5 s.
    assert 2.0 <= result.retry_after <= 2.6
    assert sandbox.quantity(RED) == 1


def test_shopify_adapter_sleeps_for_the_bucket_before_sending(adapter, sandbox, monkeypatch):
    adapter.push_stock([update(1, RED, 1, expected=7)])
    adapter.bucket.available, adapter.bucket.seen_at = 0.0, time.monotonic()
    slept = []
    monkeypatch.setattr("channels_sync.adapters.shopify.time.sleep", slept.append)

    result = adapter.push_stock([update(1, RED, 2, expected=1)])

    assert result.outcome == Outcome.OK
    assert len(slept) == 1
    assert 0.05 <= slept[0] <= 0.1  # 10 points at 100 a second


def test_shopify_adapter_answers_throttled_without_sending_past_the_wait_bound(adapter, sandbox):
    adapter.push_stock([update(1, RED, 1, expected=7)])
    adapter.bucket.available, adapter.bucket.restore_rate = 0.0, 0.5
    adapter.bucket.seen_at = time.monotonic()
    sent = len(sandbox.requests)

    result = adapter.push_stock([update(1, RED, 2, expected=1)])

    assert result.outcome == Outcome.THROTTLED
    assert result.retry_after == pytest.approx(20.0, abs=0.5)
    assert len(sandbox.requests) == sent


def test_shopify_429_honours_retry_after(adapter, sandbox):
    sandbox.inject(Fault(status=429, headers={"Retry-After": "2.0"}, body='{"errors":"x"}'))

    result = adapter.push_stock([update(1, RED, 1, expected=7)])

    assert (result.outcome, result.retry_after, result.http_status) == (
        Outcome.THROTTLED,
        2.0,
        429,
    )


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (401, '{"errors":"[API] Invalid API key or access token"}', Outcome.AUTH),
        (403, '{"errors":"Forbidden"}', Outcome.AUTH),
        (500, "oops", Outcome.RETRYABLE),
        (503, "", Outcome.RETRYABLE),
        (402, '{"errors":"Unavailable Shop"}', Outcome.PERMANENT),
        (200, '{"errors":[{"message":"x","extensions":{"code":"ACCESS_DENIED"}}]}', Outcome.AUTH),
        (
            200,
            '{"errors":[{"message":"x","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}',
            Outcome.RETRYABLE,
        ),
        (200, "not json", Outcome.RETRYABLE),
        (200, '{"data":{}}', Outcome.RETRYABLE),
    ],
)
def test_shopify_push_classifies_whole_call_failures(adapter, sandbox, status, body, outcome):
    sandbox.inject(Fault(status=status, body=body))

    result = adapter.push_stock([update(1, RED, 1, expected=7)])

    assert result.outcome == outcome
    assert sandbox.quantity(RED) == 7


def test_shopify_revoked_token_is_auth(adapter, sandbox):
    sandbox.revoke()

    result = adapter.push_stock([update(1, RED, 1, expected=7)])

    assert result.outcome == Outcome.AUTH
    assert sandbox.counts["auth_refused"] == 1


def test_shopify_transport_failure_is_retryable():
    adapter = ShopifyAdapter(
        base_url="http://127.0.0.1:9",
        credentials={"shop_domain": "a.myshopify.com", "access_token": "t"},
        timeout=1,
    )

    assert adapter.push_stock([update(1, RED, 1, expected=7)]).outcome == Outcome.RETRYABLE


# --- read-back ------------------------------------------------------------------------------


def test_shopify_fetch_stock_reads_levels_and_leaves_unknown_ones_out(adapter, sandbox):
    sandbox.stock_set_external(BLUE, 3, notify=False)
    unknown_item = {"inventory_item_id": "1", "location_id": "61000001"}
    not_stocked = {"inventory_item_id": "43000001", "location_id": "999"}

    observed = adapter.fetch_stock([RED, BLUE, unknown_item, not_stocked])

    assert [(o.keys, o.quantity) for o in observed] == [(RED, 7), (BLUE, 3)]


def test_shopify_fetch_stock_throttled_raises_with_the_wait(server, adapter, sandbox):
    sandbox.configure(cost_maximum=12, cost_restore_rate=1)
    adapter.push_stock([update(1, RED, 1, expected=7)])  # 10 points: 2 left
    other = ShopifyAdapter(base_url=server.url, credentials=adapter.credentials)

    with pytest.raises(AdapterError) as raised:
        other.fetch_stock([RED])

    assert raised.value.outcome == Outcome.THROTTLED
    assert 0.8 <= raised.value.retry_after <= 1.1  # 3 points needed, 2 there, 1 a second


def test_shopify_read_batches_take_fifty_levels_per_call(adapter, sandbox):
    keys = [{"inventory_item_id": str(n), "location_id": "1"} for n in range(1, 121)]

    groups = adapter.read_batches(keys, 500)
    adapter.fetch_stock(keys)

    assert [len(group) for group in groups] == [50, 50, 20]
    assert len(sandbox.requests) == 3


# --- webhooks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("secret", "body", "signature"), VECTORS)
def test_shopify_webhook_signature_matches_the_reference_vectors(secret, body, signature):
    adapter = ShopifyAdapter(
        base_url="", credentials={"shop_domain": "a.myshopify.com", "client_secret": secret}
    )

    assert adapter.webhook_signature(body=body) == signature
    headers = {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": "a.myshopify.com"}
    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert adapter.webhook_verify(headers=headers, body=body + b" ") is False


@pytest.mark.parametrize(("secret", "body", "signature"), VECTORS)
def test_shopify_sandbox_signs_webhooks_as_the_reference_vectors(secret, body, signature):
    app = ShopifySandbox(client_secret=secret)

    headers = app.webhook_headers("orders/create", body, "d-1")

    assert headers["X-Shopify-Hmac-Sha256"] == signature
    assert headers["X-Shopify-Webhook-Id"] == "d-1"
    assert headers["X-Shopify-Shop-Domain"] == app.shop_domain


def test_shopify_webhook_for_another_shop_or_without_secret_is_not_verified():
    secret, body, signature = VECTORS[0]
    adapter = ShopifyAdapter(
        base_url="", credentials={"shop_domain": "a.myshopify.com", "client_secret": secret}
    )
    no_secret = ShopifyAdapter(base_url="", credentials={"shop_domain": "a.myshopify.com"})
    other = {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": "b.myshopify.com"}
    mine = {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Shop-Domain": "a.myshopify.com"}

    assert adapter.webhook_verify(headers=other, body=body) is False
    assert adapter.webhook_verify(headers={"X-Shopify-Hmac-Sha256": signature}, body=body) is False
    assert no_secret.webhook_verify(headers=mine, body=body) is False


def _parse(body: bytes, topic: str, webhook_id: str = "w-1"):
    adapter = ShopifyAdapter(base_url="", credentials={"shop_domain": "a.myshopify.com"})
    headers = {"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook_id} if topic else {}
    return adapter.webhook_parse(body=body, headers=headers)


def test_shopify_webhook_parse_order_topics():
    body = json.dumps(
        {
            "id": 820982911946154508,
            "financial_status": "paid",
            "fulfillment_status": None,
            "cancelled_at": None,
            "updated_at": "2026-01-02T10:00:00-05:00",
        }
    ).encode()

    event = _parse(body, "orders/paid")
    cancelled = _parse(body, "orders/cancelled", "w-2")
    no_id = _parse(body, "orders/updated", "")

    assert (event.topic, event.order_id, event.status, event.event_key) == (
        "order",
        "820982911946154508",
        "PAID/UNFULFILLED",
        "w-1",
    )
    assert event.updated_at.isoformat() == "2026-01-02T10:00:00-05:00"
    assert (cancelled.status, cancelled.event_key) == ("CANCELLED", "w-2")
    assert no_id.topic == "order"
    assert len(no_id.event_key) == 64


def test_shopify_webhook_parse_inventory_level_update_is_a_stock_report():
    body = json.dumps(
        {
            "inventory_item_id": 271878346596884015,
            "location_id": 24826418,
            "available": 6,
            "updated_at": "2026-01-02T10:00:00Z",
        }
    ).encode()
    unknown = json.dumps({"inventory_item_id": 1, "location_id": 2, "available": None}).encode()

    event = _parse(body, "inventory_levels/update")
    (report,) = event.stock

    assert event.topic == "stock"
    assert report.keys == {"inventory_item_id": "271878346596884015", "location_id": "24826418"}
    assert report.quantity == 6
    assert _parse(unknown, "inventory_levels/update").stock[0].quantity is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\xff",
        b"[1,2]",
        b'{"id": "\\ud800"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"id": 1' + b"0" * 5000 + b"}",
        b'{"id": {"nested": true}}',
    ],
)
def test_shopify_webhook_parse_never_raises_on_hostile_bodies(body):
    event = _parse(body, "orders/create")

    assert event.topic == "unreadable"
    assert event.event_key == hashlib.sha256(body).hexdigest()


def test_shopify_webhook_parse_other_topics_are_other():
    event = _parse(b'{"id": 1}', "app/uninstalled", "w-9")

    assert (event.topic, event.event_key) == ("other", "w-9")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PENDING/UNFULFILLED", OrderStatus.PENDING_PAYMENT),
        ("PAID/UNFULFILLED", OrderStatus.PAID),
        ("AUTHORIZED/UNFULFILLED", OrderStatus.PAID),
        ("PARTIALLY_REFUNDED/UNFULFILLED", OrderStatus.PAID),
        ("PAID/PARTIALLY_FULFILLED", OrderStatus.READY_TO_SHIP),
        ("PAID/FULFILLED", OrderStatus.SHIPPED),
        ("REFUNDED/FULFILLED", OrderStatus.RETURNED),
        ("REFUNDED/UNFULFILLED", OrderStatus.CANCELLED),
        ("REFUNDED/RESTOCKED", OrderStatus.RETURNED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("VOIDED/UNFULFILLED", None),
        ("", None),
    ],
)
def test_shopify_order_status_mapping(raw, expected):
    assert order_status(raw) == expected
    assert ShopifyAdapter.order_status(raw) == expected


def _graphql(sandbox, query: str, variables: dict) -> dict:
    """Call the sandbox directly (its WSGI app) with a fresh token."""
    import io

    token = sandbox.credentials()["access_token"]
    body = json.dumps({"query": query, "variables": variables}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/admin/api/2026-01/graphql.json",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_X_SHOPIFY_ACCESS_TOKEN": token,
        "wsgi.input": io.BytesIO(body),
    }
    chunks = sandbox(environ, lambda status, headers: None)
    return json.loads(b"".join(chunks))


def test_shopify_sandbox_checks_signatures_with_its_own_code():
    body = b'{"id":1}'
    app = ShopifySandbox(client_secret="k")

    expected = base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()

    assert app.webhook_headers("orders/create", body, "x")["X-Shopify-Hmac-Sha256"] == expected
