"""The eBay adapter and sandbox: vectors, tokens, one-SKU stock pushes, read-back, keys."""

import base64
import json
import time
import uuid

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from django.core.cache import cache
from django.test import override_settings

from channels_sync.adapters import AdapterError, Outcome, StockUpdate
from channels_sync.adapters.ebay import EbayAdapter
from channels_sync.adapters.ebay import client as ebay_client
from channels_sync.adapters.ebay.client import APP_TOKEN_REFUSAL_SECONDS
from channels_sync.adapters.ebay.keys import (
    KID_LOOKUPS_PER_MINUTE,
    VERIFIED_KID_KEY,
    kid_lookup_allowed,
    public_keys_forget,
)
from channels_sync.adapters.ebay.notifications import (
    KEY_CACHE,
    challenge_response,
    ecdsa_sha1_valid,
    pem_rebuild,
    signature_header_read,
)
from channels_sync.sandbox.ebay import EbaySandbox
from core.sandbox import Fault

# Section 10 vectors: self-computed, and the inputs of eBay's SDK endpoint-validation tests.
CHALLENGE_VECTORS = [
    (
        "a8628072-3d33-45ee-9004-bee86830a22d",
        "verification_token_32_to_80_chars_long_abcdef",
        "https://example.test/ebay/account-deletion",
        "627c8d01b7be6c3fefff30b8fcb6083f315864f46de14f9ebbcb1955f4c210c6",
    ),
    (
        "71745723-d031-455c-bfa5-f90d11b4f20a",
        "71745723-d031-455c-bfa5-f90d11b4f20a",
        "http://www.testendpoint.com/webhook",
        "048de9ffd0e35021fefc0388d5c52e0f475324f582f3778ca81a53354ccbbc97",
    ),
]
# eBay/event-notification-nodejs-sdk test/test.json, "VALID" and "SIGNATURE_MISMATCH".
VENDOR_HEADER = (
    "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25h"
    "dHVyZSI6Ik1FWUNJUUNmeGZJV3V4bVdjSUJRSjljNS9YN2lHREpxczJSQ0dzQkVhQWppbnlycmZBSWhBSVY2d0dj"
    "VGlCdVY1S0pVaWYyaG9reXJMK1E5c3NIa2FkK214Mm5FRTI1dyIsImRpZ2VzdCI6IlNIQTEifQ=="
)
VENDOR_KID = "9936261a-7d7b-4621-a0f1-96ccb428af49"
VENDOR_KEY = (
    "-----BEGIN PUBLIC KEY-----MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7"
    "IsYOyf76ilExJ/upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==-----END PUBLIC KEY-----"
)
VENDOR_BODY = (
    b'{"metadata":{"topic":"MARKETPLACE_ACCOUNT_DELETION","schemaVersion":"1.0","deprecated":false}'
    b',"notification":{"notificationId":"49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-'
    b'9d44-791923bd9a6d","eventDate":"2021-03-19T20:43:59.462Z","publishDate":"2021-03-19T20:43:59'
    b'.679Z","publishAttemptCount":1,"data":{"username":"test_user","userId":"ma8vp1jySJC","eiasTo'
    b'ken":"nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6wJnY+gAZGEpwmdj6x9nY+seQ=="}}}'
)
MISMATCH_SIGNATURE = (
    "MEUCIQCGcSnmAkTfr+ZZ2Vg0bWEos8a/teBqi7Pe68+hGmLMCQIgeFvkrto+8ds8RVwI3Ggn1mMGCrNMEZJ3SRlO2f"
    "x/xqI="
)


def _header_with(signature: str) -> str:
    decoded = json.loads(base64.b64decode(VENDOR_HEADER))
    return base64.b64encode(json.dumps({**decoded, "signature": signature}).encode()).decode()


def _adapter(server, **credentials) -> EbayAdapter:
    return EbayAdapter(
        base_url=server.url,
        credentials={**server.app.credentials(), **credentials},
        timeout=5,
    )


@pytest.fixture
def shop(ebay):
    ebay.app.seed_listings(
        [
            {"sku": "SKU-1", "offer_id": "501"},
            {"sku": "SKU-1", "offer_id": "502"},
            {"sku": "SKU-2", "offer_id": "601"},
        ]
    )
    return ebay


def _update(listing_id, sku, offer_id, quantity) -> StockUpdate:
    return StockUpdate(
        listing_id=listing_id, keys={"sku": sku, "offer_id": offer_id}, quantity=quantity
    )


# --- vectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "token", "url", "expected"), CHALLENGE_VECTORS)
def test_ebay_challenge_response_matches_the_vectors(code, token, url, expected):
    assert (
        challenge_response(challenge_code=code, verification_token=token, endpoint_url=url)
        == expected
    )
    adapter = EbayAdapter(
        base_url="https://api.ebay.com", credentials={"verification_token": token}
    )
    status, body, content_type = adapter.webhook_challenge(query={"challenge_code": code}, url=url)
    assert (status, json.loads(body), content_type) == (
        200,
        {"challengeResponse": expected},
        "application/json",
    )


@pytest.mark.parametrize(("code", "token", "url", "expected"), CHALLENGE_VECTORS)
def test_ebay_sandbox_endpoint_check_computes_the_vectors(code, token, url, expected):
    from channels_sync.sandbox.ebay import _sha256_hex

    assert _sha256_hex(code + token + url) == expected


def test_ebay_vendor_signature_vector_verifies_over_the_compact_bytes_only():
    kid, der = signature_header_read(VENDOR_HEADER)
    pem = pem_rebuild(VENDOR_KEY)
    assert kid == VENDOR_KID
    assert pem.splitlines()[0] == "-----BEGIN PUBLIC KEY-----"
    assert len(VENDOR_BODY) == 434
    assert ecdsa_sha1_valid(pem, der, VENDOR_BODY) is True
    message = json.loads(VENDOR_BODY)
    assert ecdsa_sha1_valid(pem, der, json.dumps(message).encode()) is False
    assert ecdsa_sha1_valid(pem, der, json.dumps(message, indent=2).encode()) is False
    _kid, mismatch = signature_header_read(_header_with(MISMATCH_SIGNATURE))
    assert ecdsa_sha1_valid(pem, mismatch, VENDOR_BODY) is False


def test_ebay_webhook_verify_with_the_vendor_key_served_by_the_sandbox(ebay, settings):
    # given the sandbox serving eBay's own key under eBay's kid
    ebay.app.public_key_serve(VENDOR_KID, VENDOR_KEY)
    adapter = _adapter(ebay)

    def verify(body: bytes, header: str = VENDOR_HEADER) -> bool:
        return adapter.webhook_verify(headers={"X-EBAY-SIGNATURE": header}, body=body)

    # then VALID verifies; the mismatching signature, a tampered body and reordered keys fail
    assert verify(VENDOR_BODY) is True
    assert verify(VENDOR_BODY, _header_with(MISMATCH_SIGNATURE)) is False
    assert verify(VENDOR_BODY.replace(b"test_user", b"test_usex")) is False
    message = json.loads(VENDOR_BODY)
    reordered = {"notification": message["notification"], "metadata": message["metadata"]}
    assert verify(json.dumps(reordered, separators=(",", ":")).encode()) is False
    # and the same message re-spaced verifies only through its compact re-serialisation, as
    # eBay's SDKs verify it (the raw re-spaced bytes do not verify, see the vector test)
    assert verify(json.dumps(message).encode()) is True
    assert verify(VENDOR_BODY, "") is False
    assert verify(VENDOR_BODY, "not base64 !") is False
    # one key fetch and one application token for all of it
    assert (ebay.app.counts["key_fetches"], ebay.app.counts["app_tokens"]) == (1, 1)


def test_ebay_keys_and_the_app_token_are_fetched_once_for_many_notifications(ebay):
    adapter = _adapter(ebay)
    message = {"metadata": {"topic": "X"}, "notification": {"notificationId": "n", "data": {}}}
    for n in range(5):
        body, headers = ebay.app.signed_notification({**message, "n": n})
        assert adapter.webhook_verify(headers=headers, body=body) is True
    # a second kid: one more key fetch, the same application token
    ebay.app.kid = "0f6a4c0e-1111-4222-8333-944455556666"
    ebay.app.public_key_serve(ebay.app.kid, ebay.app.public_keys[next(iter(ebay.app.public_keys))])
    body, headers = ebay.app.signed_notification(message)
    assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert (ebay.app.counts["key_fetches"], ebay.app.counts["app_tokens"]) == (2, 1)
    bad_body, bad_headers = ebay.app.signed_notification(message, bad_signature=True)
    assert adapter.webhook_verify(headers=bad_headers, body=bad_body) is False


def _cache_down(settings):
    down = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    return override_settings(CACHES={**settings.CACHES, "default": down})


def test_ebay_key_cache_down_refuses_unknown_kids_and_keeps_verifying_known_ones(ebay, settings):
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    # without the cache no lookup budget can be kept: a kid not known here is refused
    with _cache_down(settings):
        assert adapter.webhook_verify(headers=headers, body=body) is False
    assert ebay.app.counts["key_fetches"] == 0
    # the cache back, the key is fetched once and kept in process memory as well
    assert adapter.webhook_verify(headers=headers, body=body) is True
    with _cache_down(settings):
        assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
        assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == 1
    assert ebay.app.counts["app_tokens"] == 1


def test_ebay_forged_kids_cost_at_most_the_lookup_budget(ebay):
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    assert adapter.webhook_verify(headers=headers, body=body) is True  # the real kid, kept
    assert ebay.app.counts["key_fetches"] == 1
    # forged headers, each naming a fresh kid
    decoded = json.loads(base64.b64decode(headers["X-EBAY-SIGNATURE"]))
    for _ in range(KID_LOOKUPS_PER_MINUTE + 10):
        forged = {**decoded, "kid": str(uuid.uuid4())}
        header = base64.b64encode(json.dumps(forged).encode()).decode()
        assert adapter.webhook_verify(headers={"X-EBAY-SIGNATURE": header}, body=body) is False
    # the real kid's lookup was the first of the minute's budget
    assert ebay.app.counts["key_fetches"] == KID_LOOKUPS_PER_MINUTE
    # the known kid still verifies, from another process's point of view too (shared cache)
    public_keys_forget()
    assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == KID_LOOKUPS_PER_MINUTE


def test_ebay_kid_that_verified_is_fetched_again_even_with_the_budget_spent(ebay, settings):
    # the budget is per clock minute: keep the test's few seconds within one
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)
    # given the real kid verified once, its key kept for a second only
    settings.EBAY_PUBLIC_KEY_CACHE_SECONDS = 1
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert cache.get(VERIFIED_KID_KEY.format(kid=ebay.app.kid)) == 1
    # when forged headers naming fresh kids spend the minute's budget
    decoded = json.loads(base64.b64decode(headers["X-EBAY-SIGNATURE"]))
    for _ in range(KID_LOOKUPS_PER_MINUTE + 3):
        forged = {**decoded, "kid": str(uuid.uuid4())}
        header = base64.b64encode(json.dumps(forged).encode()).decode()
        assert adapter.webhook_verify(headers={"X-EBAY-SIGNATURE": header}, body=body) is False
    assert ebay.app.counts["key_fetches"] == KID_LOOKUPS_PER_MINUTE
    assert kid_lookup_allowed(adapter.app_digest()) is False
    fetches = ebay.app.counts["key_fetches"]
    # and the real key's kept copies expire (in process and in the shared cache)
    time.sleep(1.1)

    # then the real kid's key is fetched again despite the spent budget, by this process
    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == fetches + 1
    # and by another (which knows the kid verified from the shared cache)
    time.sleep(1.1)
    public_keys_forget()
    assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == fetches + 2
    # and with the cache down, by a process that saw it verify
    time.sleep(1.1)
    with _cache_down(settings):
        assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == fetches + 3
    # while a forged kid is still refused
    forged = {**decoded, "kid": str(uuid.uuid4())}
    header = base64.b64encode(json.dumps(forged).encode()).decode()
    assert adapter.webhook_verify(headers={"X-EBAY-SIGNATURE": header}, body=body) is False
    assert ebay.app.counts["key_fetches"] == fetches + 3


def test_ebay_lookup_budget_is_per_application(ebay):
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    decoded = json.loads(base64.b64decode(headers["X-EBAY-SIGNATURE"]))
    for _ in range(KID_LOOKUPS_PER_MINUTE):
        forged = {**decoded, "kid": str(uuid.uuid4())}
        header = base64.b64encode(json.dumps(forged).encode()).decode()
        _adapter(ebay).webhook_verify(headers={"X-EBAY-SIGNATURE": header}, body=body)
    assert ebay.app.counts["key_fetches"] == KID_LOOKUPS_PER_MINUTE
    assert _adapter(ebay).webhook_verify(headers=headers, body=body) is False  # spent
    # another application (client id) has its own budget
    other = EbayAdapter(base_url=ebay.url, credentials={"client_id": "other-app"}, timeout=5)
    assert other.app_digest() != _adapter(ebay).app_digest()
    assert kid_lookup_allowed(other.app_digest()) is True
    assert kid_lookup_allowed(_adapter(ebay).app_digest()) is False


def _unsupported_curve_pem() -> str:
    """A P-256 point declared on sect163k1 (OID 1.3.132.0.1), a curve `cryptography` does not
    support: loading it raises `UnsupportedAlgorithm`, not `ValueError`."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    algorithm = bytes.fromhex("06072a8648ce3d0201") + bytes.fromhex("06052b81040001")
    body = bytes([0x30, len(algorithm)]) + algorithm + bytes([0x03, len(point) + 1, 0]) + point
    der = bytes([0x30, len(body)]) + body
    return f"-----BEGIN PUBLIC KEY-----{base64.b64encode(der).decode()}-----END PUBLIC KEY-----"


def test_ebay_key_on_an_unsupported_curve_is_no_valid_signature():
    pem = pem_rebuild(_unsupported_curve_pem())
    with pytest.raises(UnsupportedAlgorithm):
        load_pem_public_key(pem.encode())
    _kid, der = signature_header_read(VENDOR_HEADER)
    assert ecdsa_sha1_valid(pem, der, VENDOR_BODY) is False
    assert ecdsa_sha1_valid("-----BEGIN PUBLIC KEY-----\n\u20ac\n-----END", der, b"") is False


def test_ebay_unusable_key_is_unavailable_and_never_cached(ebay):
    ebay.app.public_key_serve(ebay.app.kid, _unsupported_curve_pem())
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    assert adapter.webhook_verify(headers=headers, body=body) is False
    assert cache.get(KEY_CACHE.format(kid=ebay.app.kid)) is None
    # eBay serving the right key again: it is fetched (nothing bad was kept) and verifies
    ebay.app.reset()
    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["key_fetches"] == 1


def test_ebay_key_fetch_failure_is_not_verified_and_logged(ebay, caplog):
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    ebay.app.inject(Fault(status=500))  # the application token grant fails
    assert adapter.webhook_verify(headers=headers, body=body) is False
    assert any("ebay.public_key_unavailable" in r.getMessage() for r in caplog.records)
    # then, eBay answering again, the key is fetched
    assert adapter.webhook_verify(headers=headers, body=body) is True


def test_ebay_unknown_kid_is_looked_up_once(ebay):
    adapter = _adapter(ebay)
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    ebay.app.public_keys.clear()
    for _ in range(3):
        assert adapter.webhook_verify(headers=headers, body=body) is False
    assert ebay.app.counts["key_fetches"] == 1


def test_ebay_refused_app_token_grant_is_remembered_for_a_minute(ebay, monkeypatch):
    adapter = _adapter(ebay, client_secret="wrong-secret")
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    grants = lambda: sum(r.path == "/identity/v1/oauth2/token" for r in ebay.app.requests)  # noqa: E731
    for _ in range(5):
        assert adapter.webhook_verify(headers=headers, body=body) is False
    assert grants() == 1
    with pytest.raises(AdapterError) as refused:
        _adapter(ebay, client_secret="wrong-secret").app_token()
    assert refused.value.outcome == Outcome.AUTH
    assert grants() == 1
    # the right secret is another app key: asked at once
    assert _adapter(ebay).webhook_verify(headers=headers, body=body) is True
    assert grants() == 2
    # a minute later the refused one is asked again
    later = time.monotonic() + APP_TOKEN_REFUSAL_SECONDS + 1
    monkeypatch.setattr(ebay_client.time, "monotonic", lambda: later)
    with pytest.raises(AdapterError):
        adapter.app_token()
    assert grants() == 3


def test_ebay_refused_app_token_is_replaced_once(ebay):
    adapter = _adapter(ebay)
    adapter.app_token()
    ebay.app.app_tokens.clear()  # eBay forgot the kept token
    body, headers = ebay.app.signed_notification({"metadata": {}, "notification": {}})
    assert adapter.webhook_verify(headers=headers, body=body) is True
    assert ebay.app.counts["app_tokens"] == 2


# --- tokens -------------------------------------------------------------------------------


def test_ebay_token_refresh_issues_a_working_user_token(shop):
    adapter = _adapter(shop)
    shop.app.expire_tokens()
    result = adapter.push_stock([_update(1, "SKU-2", "601", 3)])
    assert (result.outcome, result.token_expired, result.http_status) == (Outcome.AUTH, True, 401)
    refresh = adapter.credentials["refresh_token"]
    credentials = adapter.token_refresh()
    assert credentials["refresh_token"] == refresh
    assert credentials["access_token"].startswith("v^1.1#i^1#user#")
    assert adapter.push_stock([_update(1, "SKU-2", "601", 3)]).outcome == Outcome.OK
    form = dict(
        pair.split("=", 1)
        for pair in next(r for r in shop.app.requests if r.path.endswith("/token"))
        .body.decode()
        .split("&")
    )
    assert form["grant_type"] == "refresh_token"
    assert "sell.inventory" in form["scope"]


def test_ebay_revoked_refresh_token_is_auth_and_server_errors_retryable(shop):
    adapter = _adapter(shop)
    shop.app.inject(Fault(status=503))
    with pytest.raises(AdapterError) as retryable:
        adapter.token_refresh()
    assert retryable.value.outcome == Outcome.RETRYABLE
    shop.app.revoke()
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()
    assert refused.value.outcome == Outcome.AUTH
    assert "invalid_grant" in str(refused.value)


def test_ebay_wrong_client_secret_is_refused(shop):
    adapter = _adapter(shop, client_secret="wrong")
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()
    assert (refused.value.outcome, "invalid_client" in str(refused.value)) == (Outcome.AUTH, True)


# --- stock ----------------------------------------------------------------------------------


def test_ebay_batches_one_call_per_sku_whatever_the_batch_size():
    adapter = EbayAdapter(base_url="https://api.ebay.com", credentials={})
    updates = [
        _update(1, "A", "1", 1),
        _update(2, "B", "2", 1),
        _update(3, "A", "3", 1),
        _update(4, "A", "1", 9),
    ]
    batches = adapter.batches(updates, 1)
    assert [[u.listing_id for u in batch] for batch in batches] == [[3, 4], [2]]
    many = [_update(n, "A", str(n), 1) for n in range(30)]
    assert [len(batch) for batch in adapter.batches(many, 100)] == [25, 5]


def test_ebay_push_sets_the_item_to_the_largest_and_each_offer_its_own(shop):
    adapter = _adapter(shop)
    result = adapter.push_stock([_update(1, "SKU-1", "501", 4), _update(2, "SKU-1", "502", 9)])
    assert (result.outcome, result.http_status) == (Outcome.OK, 200)
    assert [item.ok for item in result.items] == [True, True]
    assert shop.app.items["SKU-1"] == 9
    assert shop.app.quantity({"sku": "SKU-1", "offer_id": "501"}) == 4
    assert shop.app.quantity({"sku": "SKU-1", "offer_id": "502"}) == 9
    sent = shop.app.updates[-1]
    assert sent == {
        "sku": "SKU-1",
        "shipToLocationAvailability": {"quantity": 9},
        "offers": [
            {"offerId": "501", "availableQuantity": 4},
            {"offerId": "502", "availableQuantity": 9},
        ],
    }


def test_ebay_sandbox_refuses_two_skus_in_one_call(shop):
    adapter = _adapter(shop)
    body = {
        "requests": [
            {"sku": "SKU-1", "shipToLocationAvailability": {"quantity": 1}},
            {"sku": "SKU-2", "shipToLocationAvailability": {"quantity": 1}},
        ]
    }
    response, _ = adapter._call("POST", "/sell/inventory/v1/bulk_update_price_quantity", body=body)
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorId"] == 25002
    assert (
        adapter.push_stock([_update(1, "SKU-1", "501", 1), _update(2, "SKU-2", "601", 1)]).outcome
        == Outcome.PERMANENT
    )


def test_ebay_push_partial_rows_map_to_their_listings(shop):
    shop.app.configure(reject=[{"sku": "SKU-1", "offer_id": "502"}])
    adapter = _adapter(shop)
    result = adapter.push_stock(
        [
            _update(1, "SKU-1", "501", 2),
            _update(2, "SKU-1", "502", 2),
            _update(3, "SKU-1", "999", 2),
        ]
    )
    assert (result.outcome, result.http_status) == (Outcome.PARTIAL, 207)
    assert [(i.listing_id, i.ok, i.retryable) for i in result.items] == [
        (1, True, False),
        (2, False, False),
        (3, False, False),
    ]
    assert result.items[1].error.startswith("400 25097")
    assert result.items[2].error.startswith("400 25713")
    assert shop.app.quantity({"sku": "SKU-1", "offer_id": "501"}) == 2


def test_ebay_push_unknown_sku_fails_every_offer(shop):
    result = _adapter(shop).push_stock([_update(1, "NOPE", "1", 2)])
    assert result.outcome == Outcome.PARTIAL
    assert result.items[0].error.startswith("400 25702")


def test_ebay_revision_limit_is_permanent(shop):
    shop.app.configure(revision_limit=2)
    adapter = _adapter(shop)
    for quantity in (1, 2):
        assert adapter.push_stock([_update(1, "SKU-2", "601", quantity)]).outcome == Outcome.OK
    result = adapter.push_stock([_update(1, "SKU-2", "601", 3)])
    assert (result.items[0].ok, result.items[0].retryable) == (False, False)
    assert "25019" in result.items[0].error
    assert shop.app.quantity({"sku": "SKU-2", "offer_id": "601"}) == 2


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(status=429, body='{"errors":[{"errorId":2001}]}'), Outcome.THROTTLED),
        (Fault(status=500, body='{"errors":[{"errorId":25001}]}'), Outcome.RETRYABLE),
        (Fault(status=502, body="<html>bad gateway</html>"), Outcome.RETRYABLE),
        (Fault(status=400, body='{"errors":[{"errorId":25025}]}'), Outcome.RETRYABLE),
        (Fault(status=400, body='{"errors":[{"errorId":25002}]}'), Outcome.PERMANENT),
        (Fault(status=403, body='{"errors":[{"errorId":1100}]}'), Outcome.AUTH),
        (Fault(status=200, body="not json"), Outcome.RETRYABLE),
    ],
)
def test_ebay_push_whole_call_outcomes(shop, fault, outcome):
    shop.app.inject(fault)
    result = _adapter(shop).push_stock([_update(1, "SKU-2", "601", 1)])
    assert (result.outcome, result.http_status) == (outcome, fault.status)
    assert result.token_expired is False


def test_ebay_push_throttled_by_the_sandbox_honours_retry_after(shop):
    shop.app.inject(Fault(status=429, body="{}", headers={"Retry-After": "7"}))
    result = _adapter(shop).push_stock([_update(1, "SKU-2", "601", 1)])
    assert (result.outcome, result.retry_after) == (Outcome.THROTTLED, 7.0)


def test_ebay_fetch_stock_reads_the_smaller_of_item_and_offer(shop):
    adapter = _adapter(shop)
    adapter.push_stock([_update(1, "SKU-1", "501", 4), _update(2, "SKU-1", "502", 9)])
    adapter.push_stock([_update(3, "SKU-2", "601", 6)])
    # a lone push of one offer lowers the item, so its sibling shows less (never more)
    adapter.push_stock([_update(1, "SKU-1", "501", 3)])
    keys = [
        {"sku": "SKU-1", "offer_id": "501"},
        {"sku": "SKU-1", "offer_id": "502"},
        {"sku": "SKU-2", "offer_id": "601"},
        {"sku": "SKU-2", "offer_id": "777"},
        {"sku": "GONE", "offer_id": "1"},
    ]
    observed = {(o.keys["sku"], o.keys["offer_id"]): o.quantity for o in adapter.fetch_stock(keys)}
    assert observed == {("SKU-1", "501"): 3, ("SKU-1", "502"): 3, ("SKU-2", "601"): 6}
    assert [len(group) for group in adapter.read_batches(keys, 50)] == [2, 2, 1]


def test_ebay_fetch_stock_refusals_raise_classified(shop):
    adapter = _adapter(shop)
    shop.app.configure(throttle_per_second=0)
    with pytest.raises(AdapterError) as throttled:
        adapter.fetch_stock([{"sku": "SKU-1", "offer_id": "501"}])
    assert throttled.value.outcome == Outcome.THROTTLED
    shop.app.configure(throttle_per_second=None)
    shop.app.expire_tokens()
    with pytest.raises(AdapterError) as expired:
        adapter.fetch_stock([{"sku": "SKU-1", "offer_id": "501"}])
    assert (expired.value.outcome, expired.value.token_expired) == (Outcome.AUTH, True)


def test_ebay_credentials_and_keys_clean():
    sandbox = EbaySandbox()
    cleaned = EbayAdapter.credentials_clean(sandbox.credentials())
    assert set(cleaned) == set(EbayAdapter.credential_fields)
    with pytest.raises(ValueError, match="missing credential fields: verification_token"):
        EbayAdapter.credentials_clean({**cleaned, "verification_token": ""})
    with pytest.raises(ValueError, match="missing keys: offer_id"):
        EbayAdapter.keys_clean({"sku": "A"})
    assert EbayAdapter.keys_to_columns({"sku": "A", "offer_id": "9"}) == {
        "external_item_id": "A",
        "external_variant_id": "9",
        "external_sku": "",
        "external_location_id": "",
    }
