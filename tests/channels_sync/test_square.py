"""Square: the adapter against the Square sandbox over real HTTP, and the sandbox's own
checks (signature vectors, the 24-hour rule, idempotency, all-or-nothing batches)."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from channels_sync.adapters import adapter_class
from channels_sync.adapters.base import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.square import SquareAdapter
from channels_sync.adapters.square import adapter as square_adapter
from channels_sync.adapters.square.wire import rfc3339_ms, webhook_sign
from channels_sync.sandbox.square import SquareSandbox
from core.sandbox import Fault, sandboxes
from tests.channels_sync import square_fixtures
from tests.channels_sync.square_fixtures import LOCATION, square_keys

_square_server = square_fixtures._square_server
square = square_fixtures.square

A, B, C = square_keys(0), square_keys(1), square_keys(2)
CHANGES = "/v2/inventory/changes/batch-create"
# Section 10 vectors: a made-up key, and Square's own SDK test vector.
SELF_KEY = "sq_sig_key"
SELF_URL = "https://example.test/hooks/square?src=1"
SELF_BODY = (
    b'{"merchant_id":"M1","type":"inventory.count.updated","event_id":"e-1",'
    b'"created_at":"2026-01-01T00:00:00Z","data":{"type":"inventory_counts","id":"x"}}'
)
SELF_SIGNATURE = "UKiGKIVVD82rLG5ek4SHJGI+4RK68FivVP4PyeKNVQA="
SDK_KEY = "Ibxx_5AKakO-3qeNVR61Dw"
SDK_URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
SDK_BODY = (
    b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification",'
    b'"event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f",'
    b'"created_at":"2022-07-13T20:30:59.037339943Z",'
    b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
)
SDK_SIGNATURE = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="


def update(listing_id: int, keys: dict, quantity: int) -> StockUpdate:
    return StockUpdate(listing_id=listing_id, keys=dict(keys), quantity=quantity)


@pytest.fixture
def sandbox(square) -> SquareSandbox:
    square.app.configure(listings=[{**k, "quantity": 7} for k in (A, B, C)])
    return square.app


@pytest.fixture
def adapter(square, sandbox) -> SquareAdapter:
    return SquareAdapter(
        base_url=square.url, auth_base_url=square.url, credentials=sandbox.credentials()
    )


def raw_changes(server, token: str, body: dict, *, version: str = "2025-10-16"):
    return requests.post(
        server.url + CHANGES,
        data=json.dumps(body),
        headers={
            "Authorization": f"Bearer {token}",
            "Square-Version": version,
            "Content-Type": "application/json",
        },
        timeout=5,
    )


def count_body(key: str, keys: dict, quantity, occurred_at: str) -> dict:
    return {
        "idempotency_key": key,
        "changes": [
            {
                "type": "PHYSICAL_COUNT",
                "physical_count": {
                    **keys,
                    "state": "IN_STOCK",
                    "quantity": quantity,
                    "occurred_at": occurred_at,
                },
            }
        ],
        "ignore_unchanged_counts": True,
    }


# --- signature vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "url", "body", "signature"),
    [
        (SELF_KEY, SELF_URL, SELF_BODY, SELF_SIGNATURE),
        (SDK_KEY, SDK_URL, SDK_BODY, SDK_SIGNATURE),
    ],
    ids=["self-computed", "square-sdk"],
)
def test_square_webhook_signature_matches_the_reference_vectors(key, url, body, signature):
    adapter = SquareAdapter(base_url="http://unused", credentials={"signature_key": key})
    headers = {"X-Square-Hmacsha256-Signature": signature}

    assert webhook_sign(signature_key=key, url=url, body=body) == signature
    assert adapter.webhook_signature(body=body, url=url) == signature
    assert adapter.webhook_verify(headers=headers, body=body, url=url) is True
    # the URL is signed too: the same body at another address is refused
    assert adapter.webhook_verify(headers=headers, body=body, url=url + "/") is False
    assert adapter.webhook_verify(headers=headers, body=body + b" ", url=url) is False


@pytest.mark.parametrize(
    ("key", "url", "body", "signature"),
    [
        (SELF_KEY, SELF_URL, SELF_BODY, SELF_SIGNATURE),
        (SDK_KEY, SDK_URL, SDK_BODY, SDK_SIGNATURE),
    ],
    ids=["self-computed", "square-sdk"],
)
def test_square_sandbox_signs_the_reference_vectors(key, url, body, signature):
    app = SquareSandbox(signature_key=key)

    assert app.sign(body, url=url) == signature


def test_square_webhook_verify_refuses_everything_without_a_signature_key():
    adapter = SquareAdapter(base_url="http://unused", credentials={"signature_key": ""})
    empty_key_signature = base64.b64encode(
        hmac.new(b"", SELF_URL.encode() + SELF_BODY, hashlib.sha256).digest()
    ).decode()

    assert not adapter.webhook_verify(
        headers={"x-square-hmacsha256-signature": empty_key_signature},
        body=SELF_BODY,
        url=SELF_URL,
    )


# --- push -----------------------------------------------------------------------------------------


def test_square_push_sends_physical_counts_stamped_now_with_the_key(adapter, sandbox):
    before = datetime.now(UTC)

    result = adapter.push_stock([update(1, A, 12), update(2, B, 0)], idempotency_key="key-1")

    assert result.outcome == Outcome.OK
    assert [(i.listing_id, i.ok) for i in result.items] == [(1, True), (2, True)]
    assert (sandbox.quantity(A), sandbox.quantity(B), sandbox.quantity(C)) == (12, 0, 7)
    request = sandbox.requests[-1]
    assert request.path == CHANGES
    assert request.headers["Authorization"] == f"Bearer {adapter.credentials['access_token']}"
    assert request.headers["Square-Version"] == "2025-10-16"
    body = json.loads(request.body)
    stamp = body["changes"][0]["physical_count"]["occurred_at"]
    assert body == {
        "idempotency_key": "key-1",
        "changes": [
            {
                "type": "PHYSICAL_COUNT",
                "physical_count": {
                    "reference_id": "syncstore-listing-1",
                    **A,
                    "state": "IN_STOCK",
                    "quantity": "12",
                    "occurred_at": stamp,
                },
            },
            {
                "type": "PHYSICAL_COUNT",
                "physical_count": {
                    "reference_id": "syncstore-listing-2",
                    **B,
                    "state": "IN_STOCK",
                    "quantity": "0",
                    "occurred_at": stamp,
                },
            },
        ],
        "ignore_unchanged_counts": True,
    }
    # RFC 3339 with milliseconds and Z, the time of the call
    assert (len(stamp), stamp[19], stamp[-1]) == (24, ".", "Z")
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(milliseconds=1) <= moment <= datetime.now(UTC)


def test_square_rfc3339_ms_cuts_milliseconds_never_rounding_up():
    moment = datetime(2026, 1, 2, 3, 4, 5, 999_999, tzinfo=UTC)

    assert rfc3339_ms(moment) == "2026-01-02T03:04:05.999Z"


def test_square_batches_hold_at_most_100_changes(adapter):
    updates = [update(i, square_keys(i), 1) for i in range(250)]

    assert [len(b) for b in adapter.batches(updates, 500)] == [100, 100, 50]
    assert [len(b) for b in adapter.batches(updates, 60)] == [60, 60, 60, 60, 10]


def test_square_sandbox_refuses_more_than_100_changes(square, sandbox):
    token = sandbox.credentials()["access_token"]
    body = count_body("k-101", A, "1", rfc3339_ms(datetime.now(UTC)))
    body["changes"] = body["changes"] * 101

    response = raw_changes(square, token, body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "ARRAY_LENGTH_TOO_LONG"
    assert sandbox.quantity(A) == 7


def test_square_sandbox_refuses_a_quantity_that_is_not_a_string(square, sandbox):
    token = sandbox.credentials()["access_token"]

    response = raw_changes(square, token, count_body("k-n", A, 5, rfc3339_ms(datetime.now(UTC))))

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "category": "INVALID_REQUEST_ERROR",
            "code": "EXPECTED_STRING",
            "detail": "quantity must be a decimal string.",
            "field": "changes[0].physical_count.quantity",
        }
    ]
    assert sandbox.quantity(A) == 7


# --- the 24-hour rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-25 * 3600, False), (-23 * 3600, True), (60, False)],
    ids=["25h-ago", "23h-ago", "future"],
)
def test_square_sandbox_takes_counts_from_the_last_24_hours_only(square, sandbox, offset, accepted):
    token = sandbox.credentials()["access_token"]
    stamp = rfc3339_ms(datetime.now(UTC) + timedelta(seconds=offset))

    response = raw_changes(square, token, count_body(f"k{offset}", A, "3", stamp))

    if accepted:
        assert response.status_code == 200
        assert sandbox.quantity(A) == 3
    else:
        assert response.status_code == 400
        [error] = response.json()["errors"]
        assert (error["code"], error["field"]) == (
            "INVALID_VALUE",
            "changes[0].physical_count.occurred_at",
        )
        assert sandbox.quantity(A) == 7
        assert sandbox.counts["bad_timestamp"] == 1


def test_square_replaying_a_request_a_day_later_fails_and_a_new_push_is_accepted(
    square, sandbox, adapter, monkeypatch
):
    # given a push made now (the request, as sent, kept)
    assert adapter.push_stock([update(1, A, 4)], idempotency_key="first").outcome == Outcome.OK
    sent = json.loads(sandbox.requests[-1].body)
    # when 25 hours pass on both clocks
    later = datetime.now(UTC) + timedelta(hours=25)
    sandbox.configure(clock_offset=25 * 3600)
    monkeypatch.setattr(square_adapter, "utc_now", lambda: later)
    replay = raw_changes(
        square, adapter.credentials["access_token"], {**sent, "idempotency_key": "x"}
    )
    resumed = adapter.push_stock([update(1, A, 9)], idempotency_key="second")
    # then the old request is refused, the adapter's new one is stamped fresh and accepted
    assert replay.status_code == 400
    assert replay.json()["errors"][0]["field"] == "changes[0].physical_count.occurred_at"
    assert resumed.outcome == Outcome.OK
    stamp = json.loads(sandbox.requests[-1].body)["changes"][0]["physical_count"]["occurred_at"]
    assert stamp == rfc3339_ms(later)
    assert sandbox.quantity(A) == 9


def test_square_refused_occurred_at_is_retryable_for_the_whole_call(adapter, sandbox, monkeypatch):
    # our clock an hour ahead of Square's: every stamp is "in the future"
    monkeypatch.setattr(square_adapter, "utc_now", lambda: datetime.now(UTC) + timedelta(hours=1))

    result = adapter.push_stock([update(1, A, 2), update(2, B, 3)], idempotency_key="skew")

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status == 400
    assert result.items == []
    assert (sandbox.quantity(A), sandbox.quantity(B)) == (7, 7)


# --- idempotency ----------------------------------------------------------------------------------


def test_square_same_key_and_body_answers_the_first_answer_and_applies_once(square, sandbox):
    token = sandbox.credentials()["access_token"]
    body = count_body("same", A, "2", rfc3339_ms(datetime.now(UTC)))

    first = raw_changes(square, token, body)
    sandbox.stock_set_external(A, 40, notify=False)  # the seller counts again meanwhile
    again = raw_changes(square, token, body)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["counts"][0]["quantity"] == "2"
    assert sandbox.quantity(A) == 40  # the replay did not set 2 over the seller's count
    assert sandbox.counts["replays"] == 1
    assert [u["quantity"] for u in sandbox.updates] == [2]


def test_square_same_key_with_another_body_is_idempotency_key_reused(square, sandbox, adapter):
    token = sandbox.credentials()["access_token"]
    stamp = rfc3339_ms(datetime.now(UTC))
    raw_changes(square, token, count_body("reused", A, "2", stamp))

    other = raw_changes(square, token, count_body("reused", A, "3", stamp))
    result = adapter.push_stock([update(1, A, 5)], idempotency_key="reused")

    assert other.status_code == 400
    assert other.json()["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # a new attempt row brings a new key: the adapter's answer is retryable
    assert result.outcome == Outcome.RETRYABLE
    assert sandbox.quantity(A) == 2


def test_square_push_without_a_key_sends_a_fresh_one_each_call(adapter, sandbox):
    adapter.push_stock([update(1, A, 1)])
    adapter.push_stock([update(1, A, 1)])

    keys = [json.loads(r.body)["idempotency_key"] for r in sandbox.requests]
    assert len(set(keys)) == 2
    assert all(len(k) == 36 for k in keys)


# --- all or nothing -------------------------------------------------------------------------------


def test_square_one_refused_change_fails_it_and_leaves_the_others_to_retry(adapter, sandbox):
    sandbox.configure(reject=[B])

    result = adapter.push_stock([update(1, A, 5), update(2, B, 6), update(3, C, 8)])

    assert result.outcome == Outcome.PARTIAL
    assert result.http_status == 400
    assert [(i.listing_id, i.ok, i.retryable) for i in result.items] == [
        (1, False, True),
        (2, False, False),
        (3, False, True),
    ]
    assert result.items[1].error == (
        "INVALID_VALUE changes[1].physical_count.catalog_object_id: "
        "Inventory tracking is off for this item variation."
    )
    assert result.items[0].error == "not applied: Square refused the whole batch over changes[1]"
    # nothing of the batch was applied
    assert (sandbox.quantity(A), sandbox.quantity(B), sandbox.quantity(C)) == (7, 7, 7)


def test_square_unknown_variation_is_refused_per_change(adapter, sandbox):
    ghost = square_keys(99)

    result = adapter.push_stock([update(1, ghost, 5), update(2, A, 9)])

    assert result.outcome == Outcome.PARTIAL
    assert result.items[0].error.startswith("NOT_FOUND changes[0].physical_count.catalog_object_id")
    assert result.items[0].retryable is False
    assert result.items[1].retryable is True
    assert sandbox.quantity(A) == 7


def test_square_refusal_naming_no_change_is_permanent_for_the_batch(adapter, sandbox):
    sandbox.inject(
        Fault(
            status=400,
            body=json.dumps(
                {
                    "errors": [
                        {
                            "category": "INVALID_REQUEST_ERROR",
                            "code": "INVALID_VALUE",
                            "detail": "bad",
                            "field": "ignore_unchanged_counts",
                        }
                    ]
                }
            ),
        )
    )

    result = adapter.push_stock([update(1, A, 5)])

    assert result.outcome == Outcome.PERMANENT
    assert result.items == []


# --- throttles, faults, auth ----------------------------------------------------------------------


def test_square_throttled_is_429_rate_limited_without_retry_after(adapter, sandbox):
    sandbox.configure(throttle_per_second=1)

    first = adapter.push_stock([update(1, A, 1)])
    second = adapter.push_stock([update(1, A, 2)])

    assert first.outcome == Outcome.OK
    assert second.outcome == Outcome.THROTTLED
    assert second.http_status == 429
    assert second.retry_after is None
    assert '"code": "RATE_LIMITED"' in second.error
    assert sandbox.quantity(A) == 1


def test_square_throttled_honours_a_retry_after_header(adapter, sandbox):
    sandbox.inject(
        Fault(
            status=429,
            body='{"errors":[{"category":"RATE_LIMIT_ERROR","code":"RATE_LIMITED"}]}',
            headers={"Retry-After": "4"},
        )
    )

    result = adapter.push_stock([update(1, A, 1)])

    assert (result.outcome, result.retry_after) == (Outcome.THROTTLED, 4.0)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, None),
        (503, "upstream overloaded"),
        (400, '{"errors":[{"category":"API_ERROR","code":"TEMPORARY_ERROR"}]}'),
        (200, "<html>cut"),
    ],
    ids=["sandbox-500", "503-text", "temporary-error", "unreadable-2xx"],
)
def test_square_server_and_temporary_errors_are_retryable(adapter, sandbox, status, body):
    if body is None:
        sandbox.configure(error_ratio=1)
    else:
        sandbox.inject(Fault(status=status, body=body))

    result = adapter.push_stock([update(1, A, 1)])

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status == status
    assert sandbox.quantity(A) == 7


def test_square_transport_failure_is_retryable(square, sandbox):
    sandbox.configure(timeout_ratio=1, timeout_seconds=2)
    adapter = SquareAdapter(base_url=square.url, credentials=sandbox.credentials(), timeout=0.5)

    result = adapter.push_stock([update(1, A, 1)])

    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status is None


def test_square_expired_token_is_auth_then_refresh_lets_the_push_through(adapter, sandbox):
    sandbox.expire_tokens()
    refresh_token = adapter.credentials["refresh_token"]

    expired = adapter.push_stock([update(1, A, 3)])
    credentials = adapter.token_refresh()
    retried = adapter.push_stock([update(1, A, 3)])

    assert (expired.outcome, expired.token_expired, expired.http_status) == (
        Outcome.AUTH,
        True,
        401,
    )
    assert credentials["refresh_token"] == refresh_token
    assert sandbox.token_state(credentials["access_token"]) == "ok"
    expiry = datetime.fromisoformat(credentials["access_token_expires_at"])
    assert abs(expiry.timestamp() - sandbox.access_tokens[credentials["access_token"]]) < 0.001
    assert retried.outcome == Outcome.OK
    assert sandbox.quantity(A) == 3
    refresh = sandbox.requests[-2]
    assert refresh.path == "/oauth2/token"
    assert json.loads(refresh.body) == {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    }


def test_square_revoked_token_is_auth_and_its_refresh_is_refused(adapter, sandbox):
    sandbox.revoke()

    result = adapter.push_stock([update(1, A, 3)])
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()

    assert (result.outcome, result.token_expired) == (Outcome.AUTH, False)
    assert '"code": "UNAUTHORIZED"' in result.error
    assert refused.value.outcome == Outcome.AUTH


def test_square_personal_access_token_cannot_be_refreshed(square, sandbox):
    adapter = SquareAdapter(base_url=square.url, credentials=sandbox.personal_credentials())

    assert adapter.token_needs_refresh() is False
    assert adapter.push_stock([update(1, A, 6)]).outcome == Outcome.OK
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()
    assert refused.value.outcome == Outcome.AUTH
    assert "personal access token" in str(refused.value)


def test_square_token_refresh_server_error_is_retryable(adapter, sandbox):
    sandbox.inject(Fault(status=502, body="bad gateway"))

    with pytest.raises(AdapterError) as failed:
        adapter.token_refresh()

    assert failed.value.outcome == Outcome.RETRYABLE


def test_square_sandbox_refuses_a_malformed_version(square, sandbox):
    token = sandbox.credentials()["access_token"]

    response = raw_changes(
        square, token, count_body("v", A, "1", rfc3339_ms(datetime.now(UTC))), version="2025/10"
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "INVALID_SQUARE_VERSION_FORMAT"


# --- read back ------------------------------------------------------------------------------------


def test_square_fetch_stock_reads_counts_through_every_page(adapter, sandbox):
    sandbox.configure(count_page_size=2)
    adapter.push_stock([update(1, A, 11), update(2, B, 22)])
    elsewhere = square_keys(2, location="LOTHER")

    observed = adapter.fetch_stock([A, B, C, square_keys(404), elsewhere])

    assert [(o.keys, o.quantity) for o in observed] == [(A, 11), (B, 22), (C, 7)]
    reads = [json.loads(r.body) for r in sandbox.requests if r.path.endswith("batch-retrieve")]
    assert len(reads) == 2
    assert reads[0] == {
        "catalog_object_ids": [
            A["catalog_object_id"],
            B["catalog_object_id"],
            C["catalog_object_id"],
            square_keys(404)["catalog_object_id"],
        ],
        "location_ids": [LOCATION, "LOTHER"],
        "states": ["IN_STOCK"],
    }
    assert reads[1]["cursor"]


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("7.5", 7), ("0.99999", 0), ("-2", None), ("abc", None), ("1e999999", None)],
)
def test_square_fetch_stock_rounds_decimal_counts_down(adapter, sandbox, quantity, expected):
    count = {
        **A,
        "catalog_object_type": "ITEM_VARIATION",
        "state": "IN_STOCK",
        "quantity": quantity,
        "calculated_at": "2026-01-01T00:00:00.000Z",
    }
    sandbox.inject(Fault(status=200, body=json.dumps({"counts": [count]})))

    observed = adapter.fetch_stock([A])

    assert [o.quantity for o in observed] == ([] if expected is None else [expected])


def test_square_fetch_stock_throttled_and_refused_raise_classified(adapter, sandbox):
    sandbox.configure(throttle_per_second=0)
    with pytest.raises(AdapterError) as throttled:
        adapter.fetch_stock([A])
    sandbox.configure(throttle_per_second=None)
    sandbox.expire_tokens()
    with pytest.raises(AdapterError) as expired:
        adapter.fetch_stock([A])

    assert throttled.value.outcome == Outcome.THROTTLED
    assert (expired.value.outcome, expired.value.token_expired) == (Outcome.AUTH, True)


def test_square_fetch_stock_refuses_a_cursor_that_comes_back(adapter, sandbox):
    page = json.dumps({"counts": [{**A, "state": "IN_STOCK", "quantity": "1"}], "cursor": "c1"})
    sandbox.inject(Fault(status=200, body=page, count=2))

    with pytest.raises(AdapterError) as looping:
        adapter.fetch_stock([A])

    assert looping.value.outcome == Outcome.RETRYABLE
    assert "cursor" in str(looping.value)


# --- fields -------------------------------------------------------------------------------------


def test_square_is_registered_with_its_settings(settings):
    assert adapter_class("square") is SquareAdapter
    assert SquareAdapter.label == "Square"
    assert "square" in sandboxes()
    assert settings.CHANNEL_DEFAULT_BASE_URLS["square"] == "https://connect.squareup.com"
    assert settings.SQUARE_API_VERSION == "2025-10-16"


def test_square_credentials_clean(sandbox):
    credentials = sandbox.credentials()

    assert SquareAdapter.credentials_clean(credentials) == credentials
    assert SquareAdapter.credentials_clean(sandbox.personal_credentials())["location_id"]
    with pytest.raises(ValueError, match="missing credential fields: location_id"):
        SquareAdapter.credentials_clean({**credentials, "location_id": ""})
    with pytest.raises(ValueError, match="a refresh_token needs the application's client_secret"):
        SquareAdapter.credentials_clean({**credentials, "client_secret": ""})
    with pytest.raises(ValueError, match="unknown credential fields: shop_id"):
        SquareAdapter.credentials_clean({**credentials, "shop_id": "1"})


def test_square_keys_need_the_variation_and_its_location():
    assert SquareAdapter.keys_clean({"catalog_object_id": "V1", "location_id": "L1"}) == {
        "catalog_object_id": "V1",
        "location_id": "L1",
    }
    assert SquareAdapter.keys_to_columns({"catalog_object_id": "V1", "location_id": "L1"}) == {
        "external_item_id": "V1",
        "external_variant_id": "",
        "external_sku": "",
        "external_location_id": "L1",
    }
    with pytest.raises(ValueError, match="missing keys: location_id"):
        SquareAdapter.keys_clean({"catalog_object_id": "V1"})


def test_square_options_take_up_to_nine_more_order_locations():
    assert SquareAdapter.options_clean({"order_location_ids": ["L2", "L2", "L3"]}) == {
        "order_location_ids": ["L2", "L3"]
    }
    with pytest.raises(ValueError, match="at most 9 locations"):
        SquareAdapter.options_clean({"order_location_ids": [f"L{n}" for n in range(10)]})
    with pytest.raises(ValueError, match="must be a list of location ids"):
        SquareAdapter.options_clean({"order_location_ids": "L2"})
    with pytest.raises(ValueError, match="unknown options: region"):
        SquareAdapter.options_clean({"region": "US"})


def test_square_sandbox_token_grant_spends_the_code(square, sandbox):
    code = sandbox.issue_auth_code()
    body = {
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "grant_type": "authorization_code",
        "code": code,
    }

    first = requests.post(square.url + "/oauth2/token", json=body, timeout=5)
    again = requests.post(square.url + "/oauth2/token", json=body, timeout=5)

    assert first.status_code == 200
    assert sandbox.token_state(first.json()["access_token"]) == "ok"
    assert first.json()["expires_at"].endswith("Z")
    assert again.status_code == 401
    assert time.time() < datetime.fromisoformat(first.json()["expires_at"]).timestamp()
