"""Amazon SP-API: tokens, patches, read-back and webhooks, through the adapter against the
sandbox over real HTTP. (Section 10 of the reference has no Amazon vector: SP-API signs
nothing since 2023 and sends no HTTP webhooks.)"""

import json
import random
import re
import time
from urllib.parse import parse_qs

import pytest
import requests

from channels_sync.adapters import adapter_class
from channels_sync.adapters.amazon import AmazonAdapter
from channels_sync.adapters.amazon.client import classify
from channels_sync.adapters.amazon.listings import listing_path, patch_body
from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.sandbox.amazon import AmazonSandbox
from core.sandbox import Fault, SandboxServer, sandboxes

SKUS = ["RED-1", "BLUE-2", "GREEN-3", "pack/of 2+é"]


def update(listing_id: int, sku: str, quantity: int) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys={"seller_sku": sku}, quantity=quantity)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(AmazonSandbox()) as running:
        yield running


@pytest.fixture
def sandbox(server) -> AmazonSandbox:
    app = server.app
    app.reset()
    app.configure(listings=[{"seller_sku": sku, "quantity": 7} for sku in SKUS])
    return app


@pytest.fixture
def adapter(server, sandbox) -> AmazonAdapter:
    return AmazonAdapter(
        base_url=server.url, auth_base_url=server.url, credentials=sandbox.credentials()
    )


def form(request) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(request.body.decode()).items()}


# --- tokens -------------------------------------------------------------------------------------


def test_amazon_token_refresh_posts_the_lwa_form_and_the_new_token_works(adapter, sandbox):
    old = adapter.credentials["access_token"]

    credentials = adapter.token_refresh()

    request = sandbox.requests[-1]
    assert (request.method, request.path) == ("POST", "/auth/o2/token")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(request) == {
        "grant_type": "refresh_token",
        "refresh_token": credentials["refresh_token"],
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
    }
    assert credentials["access_token"].startswith("Atza|")
    assert credentials["access_token"] != old
    expires = adapter.token_expires_at().timestamp()
    assert time.time() + 3590 <= expires <= time.time() + 3610
    assert adapter.push_stock([update(1, "RED-1", 3)]).outcome == Outcome.OK


def test_amazon_token_refresh_refusals_are_auth_and_server_errors_retryable(adapter, sandbox):
    sandbox.inject(Fault(status=503, body="busy"))
    with pytest.raises(AdapterError) as busy:
        adapter.token_refresh()
    assert busy.value.outcome == Outcome.RETRYABLE

    sandbox.revoke()
    with pytest.raises(AdapterError) as revoked:
        adapter.token_refresh()
    assert revoked.value.outcome == Outcome.AUTH
    assert "invalid_grant" in str(revoked.value)

    adapter.credentials["lwa_client_secret"] = "wrong"
    with pytest.raises(AdapterError) as client:
        adapter.token_refresh()
    assert client.value.outcome == Outcome.AUTH
    assert "invalid_client" in str(client.value)


def test_amazon_default_auth_base_is_login_with_amazon(settings):
    adapter = AmazonAdapter(base_url="https://sellingpartnerapi-na.amazon.com", credentials={})
    assert adapter.auth_base_url == "https://api.amazon.com"
    settings.AMAZON_AUTH_BASE_URL = "https://api.amazon.co.uk"
    assert AmazonAdapter(base_url="x", credentials={}).auth_base_url == "https://api.amazon.co.uk"


def test_amazon_endpoint_credential_overrides_the_base_url(server, sandbox):
    credentials = {**sandbox.credentials(), "endpoint": server.url + "/"}
    adapter = AmazonAdapter(base_url="http://127.0.0.1:9", credentials=credentials)

    assert adapter.base_url == server.url
    assert adapter.push_stock([update(1, "RED-1", 4)]).outcome == Outcome.OK
    assert sandbox.quantity({"seller_sku": "RED-1"}) == 4


# --- patches ------------------------------------------------------------------------------------


def test_amazon_push_patches_one_sku_per_call_with_the_token_and_date(adapter, sandbox):
    result = adapter.push_stock([update(1, "RED-1", 12), update(2, "BLUE-2", 0)])

    assert result.outcome == Outcome.OK
    assert [(item.listing_id, item.ok) for item in result.items] == [(1, True), (2, True)]
    assert result.rate_per_second == 5.0
    assert sandbox.updates == [("RED-1", 12), ("BLUE-2", 0)]
    first = sandbox.requests[0]
    assert (first.method, first.path) == (
        "PATCH",
        "/listings/2021-08-01/items/A2SANDBOXSELLER/RED-1",
    )
    assert first.query == {"marketplaceIds": ["ATVPDKIKX0DER"]}
    assert first.headers["X-Amz-Access-Token"] == adapter.credentials["access_token"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", first.headers["X-Amz-Date"])
    assert json.loads(first.body) == {
        "productType": "PRODUCT",
        "patches": [
            {
                "op": "replace",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": 12}],
            }
        ],
    }


def test_amazon_sku_is_url_encoded_in_the_path(adapter, sandbox):
    assert listing_path("A1", "pack/of 2+é") == (
        "/listings/2021-08-01/items/A1/pack%2Fof%202%2B%C3%A9"
    )

    result = adapter.push_stock([update(4, "pack/of 2+é", 9)])

    assert result.outcome == Outcome.OK
    assert sandbox.quantity({"seller_sku": "pack/of 2+é"}) == 9


def test_amazon_push_sends_the_channels_product_type_and_merge(server, sandbox):
    adapter = AmazonAdapter(
        base_url=server.url,
        credentials=sandbox.credentials(),
        options={"product_type": "LUGGAGE", "quantity_op": "merge"},
    )

    assert adapter.push_stock([update(1, "GREEN-3", 2)]).outcome == Outcome.OK
    assert sandbox.patch_bodies[-1] == patch_body(product_type="LUGGAGE", op="merge", quantity=2)
    assert sandbox.patch_bodies[-1]["patches"][0]["op"] == "merge"


def test_amazon_push_rejected_and_unknown_skus_fail_alone(adapter, sandbox):
    sandbox.configure(reject=[{"seller_sku": "BLUE-2"}])

    result = adapter.push_stock(
        [
            update(1, "RED-1", 5),
            update(2, "BLUE-2", 6),
            update(3, "NOPE", 1),
            update(4, "GREEN-3", 8),
        ]
    )

    assert result.outcome == Outcome.PARTIAL
    outcome = {item.listing_id: (item.ok, item.retryable) for item in result.items}
    assert outcome == {1: (True, False), 2: (False, False), 3: (False, False), 4: (True, False)}
    errors = {item.listing_id: item.error for item in result.items}
    assert errors[2].startswith("INVALID: 90001001: The offer for this SKU is locked")
    assert errors[3].startswith("HTTP 404: ")
    assert "NOT_FOUND" in errors[3]
    assert sandbox.quantity({"seller_sku": "RED-1"}) == 5
    assert sandbox.quantity({"seller_sku": "BLUE-2"}) == 7
    assert sandbox.quantity({"seller_sku": "GREEN-3"}) == 8


def test_amazon_push_throttled_before_any_sku_is_throttled_with_a_computed_wait(adapter, sandbox):
    sandbox.configure(throttle_per_second=0)

    result = adapter.push_stock([update(1, "RED-1", 5), update(2, "BLUE-2", 6)])

    assert result.outcome == Outcome.THROTTLED
    assert result.http_status == 429
    # No Retry-After is documented: one token's time at 5/s, paced 20% under.
    assert result.retry_after == pytest.approx(0.25)
    assert sandbox.updates == []


@pytest.mark.parametrize(
    ("status", "outcome"), [(500, "retryable"), (503, "retryable"), (400, "permanent")]
)
def test_amazon_push_first_answer_classifies_the_call(adapter, sandbox, status, outcome):
    body = json.dumps({"errors": [{"code": "X", "message": "m"}]})
    sandbox.inject(Fault(status=status, body=body))

    result = adapter.push_stock([update(1, "RED-1", 5)])

    if outcome == "permanent":  # a 400 for a SKU fails that SKU alone
        assert result.outcome == Outcome.PARTIAL
        assert result.items[0].error.startswith("HTTP 400")
    else:
        assert result.outcome == outcome


def test_amazon_push_failing_after_a_sku_applied_gives_the_rest_back_retryable(adapter, sandbox):
    # A seed whose first stock call passes and second fails (the gate draws twice a call:
    # timeout, then error).
    def passes_then_fails(seed: int) -> bool:
        rng = random.Random(seed)
        draws = [rng.random() for _ in range(4)]
        return draws[1] >= 0.5 and draws[3] < 0.5

    seed = next(s for s in range(1000) if passes_then_fails(s))
    sandbox.configure(error_ratio=0.5, seed=seed)

    result = adapter.push_stock(
        [update(1, "RED-1", 5), update(2, "BLUE-2", 6), update(3, "GREEN-3", 7)]
    )

    assert result.outcome == Outcome.PARTIAL
    outcome = {item.listing_id: (item.ok, item.retryable) for item in result.items}
    assert outcome == {1: (True, False), 2: (False, True), 3: (False, True)}
    assert result.items[1].error.startswith("not sent (retryable)")
    assert sandbox.updates == [("RED-1", 5)]


def test_amazon_push_expired_token_is_auth_to_refresh_and_revoked_is_auth(adapter, sandbox):
    sandbox.expire_tokens()
    result = adapter.push_stock([update(1, "RED-1", 5)])
    assert (result.outcome, result.token_expired, result.http_status) == (Outcome.AUTH, True, 403)

    adapter.token_refresh()
    assert adapter.push_stock([update(1, "RED-1", 5)]).outcome == Outcome.OK

    adapter.credentials["access_token"] = "Atza|forged"
    result = adapter.push_stock([update(1, "RED-1", 6)])
    assert (result.outcome, result.token_expired) == (Outcome.AUTH, False)


def test_amazon_push_wrong_seller_is_auth(adapter, sandbox):
    adapter.credentials["seller_id"] = "A0OTHER"
    assert adapter.push_stock([update(1, "RED-1", 5)]).outcome == Outcome.AUTH


def test_amazon_push_keeps_within_the_patch_burst(adapter, sandbox):
    # given twelve SKUs (under the feed threshold) in one call
    skus = [f"B-{n}" for n in range(12)]
    sandbox.seed_listings([{"seller_sku": sku} for sku in skus])
    started = time.monotonic()

    result = adapter.push_stock([update(n, sku, n) for n, sku in enumerate(skus)])

    # then every patch went through without a single 429, paced after the burst of 5
    assert result.outcome == Outcome.OK
    assert sandbox.op_throttled == {}
    assert len(sandbox.op_times["patchListingsItem"]) == 12
    assert sandbox.max_in_window("patchListingsItem", 1.0) <= 5 + 5
    assert time.monotonic() - started >= (12 - 5) / 5.0


def test_amazon_sandbox_enforces_the_burst_and_names_the_rate(server, sandbox):
    token = sandbox.credentials()["access_token"]
    url = f"{server.url}/listings/2021-08-01/items/A2SANDBOXSELLER/RED-1"
    body = patch_body(product_type="PRODUCT", op="replace", quantity=1)

    answers = [
        requests.patch(
            url,
            params={"marketplaceIds": "ATVPDKIKX0DER"},
            json=body,
            headers={"x-amz-access-token": token},
            timeout=5,
        )
        for _ in range(6)
    ]

    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[0].headers["x-amzn-RateLimit-Limit"] == "5"
    assert "x-amzn-RateLimit-Limit" not in answers[5].headers
    assert answers[5].json()["errors"][0]["code"] == "QuotaExceeded"


def test_amazon_sandbox_refuses_bad_requests_with_its_own_checks(server, sandbox):
    token = sandbox.credentials()["access_token"]
    url = f"{server.url}/listings/2021-08-01/items/A2SANDBOXSELLER/RED-1"
    good = {"x-amz-access-token": token}
    params = {"marketplaceIds": "ATVPDKIKX0DER"}
    body = patch_body(product_type="PRODUCT", op="replace", quantity=1)

    no_type = requests.patch(
        url, params=params, json={"patches": body["patches"]}, headers=good, timeout=5
    )
    bad_date = requests.patch(
        url, params=params, json=body, headers={**good, "x-amz-date": "yesterday"}, timeout=5
    )
    other_market = requests.patch(
        url, params={"marketplaceIds": "A1F83G8C2ARO7P"}, json=body, headers=good, timeout=5
    )
    negative = requests.patch(
        url,
        params=params,
        json=patch_body(product_type="P", op="replace", quantity=-1),
        headers=good,
        timeout=5,
    )
    no_token = requests.patch(url, params=params, json=body, timeout=5)

    assert (no_type.status_code, no_type.json()["errors"][0]["code"]) == (400, "InvalidInput")
    assert bad_date.status_code == 400
    assert other_market.status_code == 400
    assert negative.status_code == 200
    assert negative.json()["status"] == "INVALID"
    assert negative.json()["issues"][0]["severity"] == "ERROR"
    assert no_token.status_code == 403
    assert sandbox.quantity({"seller_sku": "RED-1"}) == 7


def test_amazon_classify_names_each_outcome():
    expired = {
        "errors": [
            {
                "code": "Unauthorized",
                "message": "Access to requested resource is denied.",
                "details": "The access token you provided has expired.",
            }
        ]
    }
    assert classify(200, None) == (None, False)
    assert classify(429, None) == (Outcome.THROTTLED, False)
    assert classify(400, {"errors": [{"code": "QuotaExceeded"}]}) == (Outcome.THROTTLED, False)
    assert classify(503, None) == (Outcome.RETRYABLE, False)
    assert classify(403, expired) == (Outcome.AUTH, True)
    assert classify(403, {"errors": [{"code": "Unauthorized", "message": "denied"}]}) == (
        Outcome.AUTH,
        False,
    )
    assert classify(401, None) == (Outcome.AUTH, False)
    assert classify(400, {"errors": [{"code": "InvalidInput"}]}) == (Outcome.PERMANENT, False)


# --- read-back ----------------------------------------------------------------------------------


def test_amazon_fetch_stock_reads_the_default_quantity_and_leaves_unknown_out(adapter, sandbox):
    adapter.push_stock([update(1, "RED-1", 11)])

    observed = adapter.fetch_stock(
        [{"seller_sku": "RED-1"}, {"seller_sku": "NOPE"}, {"seller_sku": "BLUE-2"}]
    )

    assert [(o.keys, o.quantity) for o in observed] == [
        ({"seller_sku": "RED-1"}, 11),
        ({"seller_sku": "BLUE-2"}, 7),
    ]
    reads = [r for r in sandbox.requests if r.method == "GET"]
    assert reads[0].query == {
        "marketplaceIds": ["ATVPDKIKX0DER"],
        "includedData": ["fulfillmentAvailability"],
    }
    assert adapter.read_batches([{"seller_sku": str(n)} for n in range(25)], 50)[0] == [
        {"seller_sku": str(n)} for n in range(10)
    ]


def test_amazon_fetch_stock_refusals_raise_classified_errors(adapter, sandbox):
    sandbox.expire_tokens()
    with pytest.raises(AdapterError) as expired:
        adapter.fetch_stock([{"seller_sku": "RED-1"}])
    assert (expired.value.outcome, expired.value.token_expired) == (Outcome.AUTH, True)

    adapter.token_refresh()
    sandbox.configure(error_ratio=1)
    with pytest.raises(AdapterError) as failing:
        adapter.fetch_stock([{"seller_sku": "RED-1"}])
    assert failing.value.outcome == Outcome.RETRYABLE


def test_amazon_fetch_stock_waits_out_a_429_and_reads_on(adapter, sandbox):
    sandbox.inject(Fault(status=429, body=json.dumps({"errors": [{"code": "QuotaExceeded"}]})))

    observed = adapter.fetch_stock([{"seller_sku": "GREEN-3"}])

    assert [o.quantity for o in observed] == [7]


# --- webhooks, checks, registration ----------------------------------------------------------


def test_amazon_refuses_every_http_webhook(adapter):
    body = b'{"NotificationType":"ORDER_CHANGE"}'
    assert adapter.webhook_signature(body=body) == ""
    assert not adapter.webhook_verify(headers={"Authorization": ""}, body=body)
    assert not adapter.webhook_verify(headers={}, body=b"")
    assert not adapter.webhook_verify(headers={"x-amz-sns-signature": "x"}, body=body, url="u")


def test_amazon_webhook_parse_reads_the_sqs_envelopes(adapter, sandbox):
    order = sandbox.order_create(
        lines=[{"keys": {"seller_sku": "RED-1"}, "sku": "RED-1", "quantity": 1}], status="Unshipped"
    )
    envelope = sandbox.order_change_notification(order)

    event = adapter.webhook_parse(body=json.dumps(envelope).encode())

    assert (event.topic, event.order_id, event.status) == ("order", order.order_id, "Unshipped")
    assert event.event_key == envelope["NotificationMetadata"]["NotificationId"]
    stock = adapter.webhook_parse(
        body=json.dumps(
            {
                "NotificationType": "LISTINGS_ITEM_MFN_QUANTITY_CHANGE",
                "EventTime": "2026-01-01T00:00:00Z",
                "Payload": {
                    "SellerId": "S",
                    "FulfillmentChannelCode": "DEFAULT",
                    "Sku": "RED-1",
                    "Quantity": 4,
                },
                "NotificationMetadata": {"NotificationId": "n-1"},
            }
        ).encode()
    )
    assert (stock.topic, stock.event_key) == ("stock", "n-1")
    assert [(r.keys, r.quantity) for r in stock.stock] == [({"seller_sku": "RED-1"}, 4)]
    other = adapter.webhook_parse(body=b'{"NotificationType":"ANY_OFFER_CHANGED"}')
    assert other.topic == "other"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\xff",
        b"[]",
        b'{"a":1}',
        b'"\\ud800"',
        b"[" * 5000,
        b'{"NotificationType":"ORDER_CHANGE","Payload":{"OrderChangeNotification":{"AmazonOrderId":"\\u0000"}}}',
        b'{"NotificationType":"ORDER_CHANGE","Payload":[]}',
        b'{"NotificationType":1e999}',
        b'{"NotificationType":"LISTINGS_ITEM_MFN_QUANTITY_CHANGE","Payload":{"Sku":"A","Quantity":1e400}}',
    ],
)
def test_amazon_webhook_parse_never_raises_on_hostile_bodies(adapter, body):
    event = adapter.webhook_parse(body=body)
    assert event.topic in ("unreadable", "other", "stock")
    assert event.event_key


def test_amazon_credentials_options_and_keys_are_checked():
    cls = adapter_class("amazon")
    good = {
        "lwa_client_id": "amzn1.application-oa2-client.x",
        "lwa_client_secret": "s",
        "refresh_token": "Atzr|r",
        "seller_id": "A1",
        "marketplace_id": "ATVPDKIKX0DER",
    }
    assert cls is AmazonAdapter
    assert cls.label == "Amazon Seller Central"
    assert cls.credentials_clean({**good, "endpoint": "https://sellingpartnerapi-eu.amazon.com"})
    with pytest.raises(ValueError, match="missing credential fields: seller_id"):
        cls.credentials_clean({k: v for k, v in good.items() if k != "seller_id"})
    with pytest.raises(ValueError, match="endpoint"):
        cls.credentials_clean({**good, "endpoint": "ftp://x"})
    assert cls.options_clean({"product_type": "LUGGAGE", "quantity_op": "merge"})
    with pytest.raises(ValueError, match="quantity_op"):
        cls.options_clean({"quantity_op": "add"})
    with pytest.raises(ValueError, match="product_type"):
        cls.options_clean({"product_type": " "})
    with pytest.raises(ValueError, match="unknown options: color"):
        cls.options_clean({"color": "red"})
    assert cls.keys_clean({"seller_sku": " SKU-1 "}) == {"seller_sku": "SKU-1"}
    assert cls.keys_to_columns({"seller_sku": "SKU-1"})["external_item_id"] == "SKU-1"
    with pytest.raises(ValueError, match="missing keys: seller_sku"):
        cls.keys_clean({})


def test_amazon_sandbox_is_registered():
    assert sandboxes()["amazon"] is AmazonSandbox
