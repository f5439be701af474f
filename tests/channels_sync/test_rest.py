"""The custom REST shop adapter against the REST shop sandbox: signing, auth modes, stock
calls in both modes, answers, read-back, orders, webhook parsing."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from channels_sync.adapters import adapter_class
from channels_sync.adapters.base import AdapterError, OrderStatus, Outcome, StockUpdate
from channels_sync.adapters.rest import RestAdapter
from channels_sync.adapters.rest import adapter as rest_module
from channels_sync.adapters.rest.paths import text_fill
from channels_sync.adapters.rest.signing import (
    signature_hex,
    signature_match,
    signature_verified,
)
from channels_sync.sandbox import rest as sandbox_module
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.sandbox.rest_options import BATCH, PER_ITEM
from core.sandbox import Fault, SandboxServer, sandboxes
from tests.channels_sync.rest_shop import options, sku

# Section 10 vector (Stripe v1, made-up secret).
VECTOR_SECRET = "whsec_test"
VECTOR_BODY = b'{"id":"evt_1","object":"event"}'
VECTOR_T = 1700000000
VECTOR_V1 = "4c15fb2a43f93ef61eaa3e0893866d57cad9cad4223242cfb96f362480cb4021"


def update(n: int, quantity: int, **keys) -> StockUpdate:
    return StockUpdate(listing_id=n, keys={"sku": sku(n), **keys}, quantity=quantity)


@pytest.fixture(scope="module")
def server():
    with SandboxServer(RestShopSandbox()) as running:
        yield running


@pytest.fixture
def shop(server) -> RestShopSandbox:
    app = server.app
    app.reset()
    app.configure(listings=[{"sku": sku(n), "quantity": 7} for n in range(4)])
    return app


def make(server, shop, base=PER_ITEM, credentials=None, **changes) -> RestAdapter:
    return RestAdapter(
        base_url=server.url,
        credentials=shop.credentials() if credentials is None else credentials,
        options=RestAdapter.options_clean(options(base, **changes)),
        timeout=2.0,
    )


# --- the Stripe v1 vector ----------------------------------------------------------------------


def test_stripe_v1_vector_on_the_adapter():
    assert signature_hex(secret=VECTOR_SECRET, timestamp=VECTOR_T, body=VECTOR_BODY) == VECTOR_V1
    header = f"t={VECTOR_T},v1={'0' * 64},v1={VECTOR_V1}"
    # any v1 matching is enough; the timestamp must be within 5 minutes either way
    assert (
        signature_match(secret=VECTOR_SECRET, header=header, body=VECTOR_BODY, now=VECTOR_T + 299)
        == VECTOR_V1
    )
    assert (
        signature_match(secret=VECTOR_SECRET, header=header, body=VECTOR_BODY, now=VECTOR_T + 301)
        is None
    )
    assert (
        signature_match(secret=VECTOR_SECRET, header=header, body=VECTOR_BODY, now=VECTOR_T - 301)
        is None
    )
    assert signature_match(secret="", header=header, body=VECTOR_BODY, now=VECTOR_T) is None


def test_stripe_v1_vector_on_the_adapter_webhook_verify(monkeypatch):
    monkeypatch.setattr(rest_module.time, "time", lambda: VECTOR_T + 10)
    adapter = RestAdapter(
        base_url="http://shop.test", credentials={"webhook_secret": VECTOR_SECRET}
    )
    good = {"X-SyncStore-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"}
    assert adapter.webhook_verify(headers=good, body=VECTOR_BODY)
    assert adapter.webhook_nonce(headers=good, body=VECTOR_BODY) == f"{VECTOR_T}.{VECTOR_V1}"
    assert not adapter.webhook_verify(headers=good, body=VECTOR_BODY + b" ")
    assert not adapter.webhook_verify(headers={}, body=VECTOR_BODY)


@pytest.mark.parametrize(
    "header",
    [
        f"xt=1,t={VECTOR_T},v1={VECTOR_V1}",
        f"xt=2,t={VECTOR_T},v1={VECTOR_V1}",
        f"t={VECTOR_T},xt=3,v1={VECTOR_V1}",
        f"v0=abc,t={VECTOR_T},v1={VECTOR_V1}",
        f"t=00{VECTOR_T},v1={VECTOR_V1}",
        f"t={VECTOR_T},v1={VECTOR_V1.upper()}",
        f" t={VECTOR_T} , v1={VECTOR_V1} ",
        f"t={VECTOR_T},v1={'0' * 64},v1={VECTOR_V1}",
    ],
)
def test_the_nonce_is_the_verified_timestamp_and_signature_whatever_else_the_header_holds(
    monkeypatch, header
):
    # Parts the check ignores, or another spelling of the same timestamp, must not make
    # the same signed request look new to the replay check.
    monkeypatch.setattr(rest_module.time, "time", lambda: VECTOR_T + 10)
    adapter = RestAdapter(
        base_url="http://shop.test", credentials={"webhook_secret": VECTOR_SECRET}
    )
    headers = {"X-SyncStore-Signature": header}
    assert adapter.webhook_nonce(headers=headers, body=VECTOR_BODY) == f"{VECTOR_T}.{VECTOR_V1}"


@pytest.mark.parametrize(
    "header",
    [
        f"t={VECTOR_T},t={VECTOR_T},v1={VECTOR_V1}",
        f"t={VECTOR_T},v1={VECTOR_V1},t={VECTOR_T + 1}",
        f"t={VECTOR_T + 1},t={VECTOR_T},v1={VECTOR_V1}",
        f"v1={VECTOR_V1}",
        f"t=,v1={VECTOR_V1}",
    ],
)
def test_a_header_with_a_repeated_or_missing_timestamp_does_not_verify(monkeypatch, header):
    monkeypatch.setattr(rest_module.time, "time", lambda: VECTOR_T + 10)
    adapter = RestAdapter(
        base_url="http://shop.test", credentials={"webhook_secret": VECTOR_SECRET}
    )
    headers = {"X-SyncStore-Signature": header}
    assert adapter.webhook_nonce(headers=headers, body=VECTOR_BODY) is None
    assert not adapter.webhook_verify(headers=headers, body=VECTOR_BODY)
    assert (
        signature_verified(secret=VECTOR_SECRET, header=header, body=VECTOR_BODY, now=VECTOR_T)
        is None
    )


def test_signature_verified_gives_the_parsed_timestamp_and_the_matching_v1():
    header = f"xt=9,t=0{VECTOR_T},v1={'0' * 64},v1={VECTOR_V1}"
    assert signature_verified(
        secret=VECTOR_SECRET, header=header, body=VECTOR_BODY, now=VECTOR_T
    ) == (VECTOR_T, VECTOR_V1)


def test_stripe_v1_vector_on_the_sandbox(monkeypatch):
    assert sandbox_module._sign(VECTOR_SECRET, VECTOR_T, VECTOR_BODY) == VECTOR_V1
    # the sandbox's own check of an hmac-mode call accepts the vector's signature
    app = RestShopSandbox()
    app.hmac_secret = VECTOR_SECRET
    app.configure(auth="hmac")
    monkeypatch.setattr(sandbox_module.time, "time", lambda: VECTOR_T + 5)
    from core.sandbox import SandboxRequest

    request = SandboxRequest(
        "POST", "/api/v1/x", {}, {"X-Signature": f"t={VECTOR_T},v1={VECTOR_V1}"}, VECTOR_BODY
    )
    assert app._auth_refused(request) == ""
    request.body = VECTOR_BODY + b"x"
    assert app._auth_refused(request) == "bad signature"


def test_rest_type_is_registered_with_its_sandbox():
    assert adapter_class("rest") is RestAdapter
    assert RestAdapter.label == "Custom REST shop"
    assert isinstance(sandboxes()["rest"](), RestShopSandbox)


# --- auth modes -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bearer", "basic", "api_key", "hmac"])
def test_each_auth_mode_is_accepted_by_the_shop_and_a_wrong_secret_is_auth(server, shop, mode):
    shop.configure(auth=mode, api_key_header="X-Shop-Key")
    extra = {"api_key_header": "X-Shop-Key"} if mode == "api_key" else {}
    adapter = make(server, shop, auth=mode, **extra)

    result = adapter.push_stock([update(1, 3)], idempotency_key="key-1")

    assert result.outcome == Outcome.OK, result.error
    assert shop.quantity({"sku": sku(1)}) == 3
    sent = shop.requests[-1]
    expected = {
        "bearer": ("Authorization", "Bearer sandbox-rest-token"),
        "basic": (
            "Authorization",
            "Basic " + base64.b64encode(b"sandbox-rest-user:sandbox-rest-password").decode(),
        ),
        "api_key": ("X-Shop-Key", "sandbox-rest-api-key"),
    }
    if mode == "hmac":
        stamp, v1 = (p.split("=", 1)[1] for p in sent.headers["X-Signature"].split(","))
        assert abs(int(stamp) - time.time()) < 5
        digest = hmac.new(
            b"sandbox-rest-hmac-secret", stamp.encode() + b"." + sent.body, hashlib.sha256
        ).hexdigest()
        assert v1 == digest
    else:
        name, value = expected[mode]
        assert sent.headers[name] == value
    assert sent.headers["Idempotency-Key"] == "key-1"

    # a wrong secret: 401 from the shop -> auth, nothing to refresh
    wrong = {
        **shop.credentials(),
        "token": "x",
        "password": "x",
        "api_key": "x",
        "hmac_secret": "x",
    }
    refused = make(server, shop, credentials=wrong, auth=mode, **extra).push_stock(
        [update(1, 4)], idempotency_key="key-2"
    )
    assert (refused.outcome, refused.http_status) == (Outcome.AUTH, 401)
    assert shop.quantity({"sku": sku(1)}) == 3
    assert shop.counts["auth_refused"] == 1


def test_a_missing_credential_is_auth_without_a_call(server, shop):
    adapter = make(server, shop, credentials={"token": "t"}, auth="basic")
    result = adapter.push_stock([update(1, 3)])
    assert result.outcome == Outcome.AUTH
    assert result.error == "auth basic needs the credential username, password"
    assert shop.requests == []
    with pytest.raises(AdapterError) as refused:
        adapter.token_refresh()
    assert refused.value.outcome == Outcome.AUTH
    assert adapter.token_needs_refresh() is False


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"token": "tok\u20ac"}, "credential token is sent in an HTTP header"),
        ({"token": "tok\r\nX-Evil: 1"}, "credential token is sent in an HTTP header"),
        ({"token": "tok\n"}, "credential token is sent in an HTTP header"),
        ({"token": " tok"}, "credential token is sent in an HTTP header"),
        ({"api_key": "k\x00"}, "credential api_key is sent in an HTTP header"),
        ({"api_key": "\u4e2d\u6587"}, "credential api_key is sent in an HTTP header"),
        ({"token": 12345}, "credential token must be text"),
        ({"hmac_secret": ["s"]}, "credential hmac_secret must be text"),
        ({"webhook_secret": "\ud800"}, "credential webhook_secret is not valid text"),
        ({"username": "a:b", "password": "p"}, "credential username must not hold a colon"),
        ({"username": "u", "password": "p\r\n"}, "credential password must hold printable"),
    ],
)
def test_credentials_clean_refuses_what_cannot_be_sent(credentials, message):
    with pytest.raises(ValueError, match=r"^credential ") as refused:
        RestAdapter.credentials_clean(credentials)
    assert str(refused.value).startswith(message)


def test_credentials_clean_takes_latin_1_header_values_and_any_text_elsewhere():
    credentials = {
        "token": "tok-\u00e4\u00df",  # Latin-1: sent as such
        "username": "m\u00fcller",
        "password": "p\u00e4ss \u20ac",  # base64 of UTF-8 in Basic
        "hmac_secret": "\u20ac-secret",  # a key, never a header
        "webhook_secret": "whsec \u4e2d",
    }
    assert RestAdapter.credentials_clean(credentials) == credentials


@pytest.mark.parametrize(
    ("options_auth", "credentials", "missing"),
    [
        ("bearer", {"api_key": "k"}, "token"),
        ("basic", {"username": "u"}, "password"),
        ("basic", {"token": "t"}, "username, password"),
        ("api_key", {"token": "t"}, "api_key"),
        ("hmac", {"webhook_secret": "w"}, "hmac_secret"),
    ],
)
def test_settings_check_names_the_credentials_the_auth_mode_needs(
    options_auth, credentials, missing
):
    extra = {"api_key_header": "X-K"} if options_auth == "api_key" else {}
    checked = RestAdapter.options_clean(options(PER_ITEM, auth=options_auth, **extra))
    with pytest.raises(ValueError, match=r"^auth ") as refused:
        RestAdapter.settings_check(checked, credentials)
    assert str(refused.value) == f"auth {options_auth} needs the credential {missing}"


@pytest.mark.parametrize(
    ("mode", "credentials"),
    [
        ("bearer", {"token": "tok\u20ac"}),
        ("bearer", {"token": "tok\r\nX-Evil: 1"}),
        ("api_key", {"api_key": "key\n"}),
        ("basic", {"username": "a:b", "password": "p"}),
    ],
)
def test_stored_credentials_that_cannot_be_sent_are_auth_without_a_call(
    server, shop, mode, credentials
):
    # Stored before they were checked: refused as credentials to replace, never an
    # exception out of the push nor a transport failure retried forever.
    extra = {"api_key_header": "X-Shop-Key"} if mode == "api_key" else {}
    adapter = make(server, shop, credentials=credentials, auth=mode, **extra)
    result = adapter.push_stock([update(1, 3)], idempotency_key="key-1")
    assert result.outcome == Outcome.AUTH
    assert result.error.startswith("credential ")
    assert shop.requests == []
    with pytest.raises(AdapterError) as refused:
        adapter.fetch_stock([{"sku": sku(1)}])
    assert refused.value.outcome == Outcome.AUTH


@pytest.mark.parametrize("stage", ["item_failures", "_stock_request"])
def test_an_unforeseen_exception_in_push_stock_is_a_retryable_result(
    server, shop, monkeypatch, stage
):
    def boom(*args, **kwargs):
        raise RuntimeError("unforeseen")

    if stage == "item_failures":
        monkeypatch.setattr(rest_module, "item_failures", boom)
    else:
        monkeypatch.setattr(RestAdapter, "_stock_request", boom)
    result = make(server, shop).push_stock([update(1, 3)], idempotency_key="key-1")
    assert result.outcome == Outcome.RETRYABLE
    assert result.error == (
        f"{'answer' if stage == 'item_failures' else 'request'}: unexpected RuntimeError: "
        "unforeseen"
    )
    assert result.http_status == (200 if stage == "item_failures" else None)
    assert len(shop.requests) == (1 if stage == "item_failures" else 0)


# --- stock calls ----------------------------------------------------------------------------


def test_per_item_mode_sends_one_call_a_listing_and_reads_a_per_item_error(server, shop):
    shop.configure(reject=[{"sku": sku(2)}])
    adapter = make(server, shop)
    updates = [update(1, 5), update(2, 6)]
    batches = adapter.batches(updates, 50)
    assert batches == [[updates[0]], [updates[1]]]

    ok = adapter.push_stock(batches[0], idempotency_key="a")
    rejected = adapter.push_stock(batches[1], idempotency_key="b")

    assert (ok.outcome, [i.ok for i in ok.items]) == (Outcome.OK, [True])
    assert rejected.outcome == Outcome.PARTIAL
    assert [(i.listing_id, i.ok, i.error) for i in rejected.items] == [(2, False, "sku_locked")]
    assert json.loads(shop.requests[0].body) == {"quantity": 5}
    assert (shop.requests[0].method, shop.requests[0].path) == (
        "PUT",
        f"/api/v1/inventory/{sku(1)}",
    )
    assert shop.quantity({"sku": sku(1)}) == 5
    assert shop.quantity({"sku": sku(2)}) == 7
    # more than one listing in mode per_item is refused without a call
    assert adapter.push_stock(updates).outcome == Outcome.PERMANENT
    assert len(shop.requests) == 2


def test_batch_mode_sends_one_list_and_matches_answer_rows_by_sku(server, shop):
    shop.configure(reject=[{"sku": sku(2)}])
    adapter = make(server, shop, BATCH)
    updates = [update(1, 5), update(2, 6), update(3, 0)]
    assert adapter.batches(updates, 2) == [updates[:2], updates[2:]]

    result = adapter.push_stock(updates, idempotency_key="call-9")

    assert result.outcome == Outcome.PARTIAL
    assert [(i.listing_id, i.ok, i.error) for i in result.items] == [
        (1, True, ""),
        (2, False, "sku_locked"),
        (3, True, ""),
    ]
    assert json.loads(shop.requests[-1].body) == {
        "request_id": "call-9",
        "items": [
            {"sku": sku(1), "qty": 5},
            {"sku": sku(2), "qty": 6},
            {"sku": sku(3), "qty": 0},
        ],
    }
    assert [shop.quantity({"sku": sku(n)}) for n in (1, 2, 3)] == [5, 7, 0]


def test_batch_answer_rows_without_a_sku_path_match_by_position(server, shop):
    changed = options(BATCH)
    del changed["stock"]["sku"]
    adapter = make(server, shop, changed)
    shop.configure(reject=[{"sku": sku(1)}])
    result = adapter.push_stock([update(1, 5), update(2, 6)])
    assert [(i.ok, i.error) for i in result.items] == [(False, "sku_locked"), (True, "")]


def test_the_same_idempotency_key_gets_the_saved_answer_from_the_shop(server, shop):
    adapter = make(server, shop, BATCH)
    first = adapter.push_stock([update(1, 5)], idempotency_key="same")
    shop.stock[(sku(1),)] = 9  # changed on the shop since
    again = adapter.push_stock([update(1, 5)], idempotency_key="same")
    other = adapter.push_stock([update(1, 6)], idempotency_key="same")
    assert first.outcome == again.outcome == Outcome.OK
    assert shop.quantity({"sku": sku(1)}) == 9  # the replay applied nothing
    assert shop.counts["idempotent_replays"] == 1
    assert (other.outcome, other.http_status) == (Outcome.PERMANENT, 422)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, Outcome.PERMANENT),
        (404, Outcome.PERMANENT),
        (409, Outcome.PERMANENT),
        (422, Outcome.PERMANENT),
        (401, Outcome.AUTH),
        (403, Outcome.AUTH),
        (500, Outcome.RETRYABLE),
        (502, Outcome.RETRYABLE),
        (503, Outcome.RETRYABLE),
    ],
)
def test_whole_call_statuses_are_classified(server, shop, status, outcome):
    shop.inject(Fault(status=status, body='{"error": "x"}'))
    result = make(server, shop, BATCH).push_stock([update(1, 5)])
    assert (result.outcome, result.http_status, result.token_expired) == (outcome, status, False)
    assert result.error == '{"error": "x"}'


def test_429_is_throttled_with_the_retry_after_and_the_sandbox_throttles(server, shop):
    shop.inject(Fault(status=429, headers={"Retry-After": "7"}))
    adapter = make(server, shop)
    result = adapter.push_stock([update(1, 5)])
    assert (result.outcome, result.retry_after) == (Outcome.THROTTLED, 7.0)

    shop.configure(throttle_per_second=1)
    outcomes = [adapter.push_stock([update(1, n)]).outcome for n in range(3)]
    assert outcomes[0] == Outcome.OK
    assert Outcome.THROTTLED in outcomes[1:]
    assert shop.counts["throttled"] >= 1


def test_an_unknown_sku_is_permanent_in_per_item_mode(server, shop):
    result = make(server, shop).push_stock([update(99, 5)])
    assert (result.outcome, result.http_status) == (Outcome.PERMANENT, 404)


def test_a_timeout_is_retryable(server, shop):
    shop.inject(Fault(status=200, latency=3.0))
    result = make(server, shop).push_stock([update(1, 5)])
    assert result.outcome == Outcome.RETRYABLE
    assert result.http_status is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{}", "answer path `results[].ok`: no array at `results[]`"),
        (
            '{"results": [{"sku": "TEE-001"}]}',
            "answer path `results[].ok`: nothing at `results[].ok`",
        ),
        (
            '{"results": [{"sku": "TEE-777", "ok": true}]}',
            "answer path `results[].sku`: no row for SKU TEE-001",
        ),
        ("not json", "answer path `results[].ok`: the answer is not JSON"),
    ],
)
def test_an_answer_the_paths_cannot_read_is_retryable_naming_the_path(server, shop, body, error):
    shop.inject(Fault(status=200, body=body))
    result = make(server, shop, BATCH).push_stock([update(1, 5)])
    assert (result.outcome, result.http_status) == (Outcome.RETRYABLE, 200)
    assert result.error.startswith(error), result.error


def test_ok_value_and_whole_answer_paths(server, shop):
    # a shop answering {"status": "done"} for the whole call; anything else fails every item
    adapter = make(
        server,
        shop,
        stock={
            "path": "/api/v1/inventory/{{sku}}",
            "method": "PUT",
            "body": {"quantity": "{{quantity}}"},
            "ok": "status",
            "ok_value": "done",
        },
    )
    shop.inject(Fault(status=200, body='{"status": "done"}'))
    assert adapter.push_stock([update(1, 5)]).outcome == Outcome.OK
    shop.inject(Fault(status=200, body='{"status": "queued"}'))
    failed = adapter.push_stock([update(1, 5)])
    assert failed.outcome == Outcome.PARTIAL
    assert failed.items[0].error == 'refused (status = "queued")'


def test_templates_keep_types_and_fill_text(server, shop):
    adapter = make(
        server,
        shop,
        stock={
            "path": "/api/v1/inventory/{{sku}}",
            "method": "PUT",
            "body": {
                "quantity": "{{quantity}}",
                "was": "{{expected}}",
                "note": "set {{sku}} to {{quantity}} at {{location}}",
                "{{sku}}": True,
            },
        },
    )
    adapter.push_stock([StockUpdate(1, {"sku": "A B/1", "location": "main"}, 4, expected=2)])
    sent = shop.requests[-1]
    # the SKU is escaped in the path (the shop's server decodes it back)
    assert sent.path == "/api/v1/inventory/A B/1"
    assert text_fill("/i/{{sku}}", {"sku": "A B/1"}, rest_module._quote) == "/i/A%20B%2F1"
    assert json.loads(sent.body) == {
        "quantity": 4,
        "was": 2,
        "note": "set A B/1 to 4 at main",
        "A B/1": True,
    }


# --- read-back --------------------------------------------------------------------------------


def test_fetch_stock_in_batch_mode_reads_rows_and_leaves_unknown_listings_out(server, shop):
    adapter = make(server, shop)
    shop.stock[(sku(2),)] = 11
    observed = adapter.fetch_stock([{"sku": sku(1)}, {"sku": sku(2)}, {"sku": "NOPE"}])
    assert [(o.keys, o.quantity) for o in observed] == [
        ({"sku": sku(1)}, 7),
        ({"sku": sku(2)}, 11),
    ]
    assert shop.requests[-1].query == {"skus": [f"{sku(1)},{sku(2)},NOPE"]}
    assert adapter.read_batches([{"sku": "a"}] * 120, 200) == [[{"sku": "a"}] * 50] * 2 + [
        [{"sku": "a"}] * 20
    ]


def test_fetch_stock_in_per_item_mode_and_its_failures(server, shop):
    adapter = make(
        server, shop, read={"path": "/api/v1/inventory/{{sku}}", "quantity": "available"}
    )
    observed = adapter.fetch_stock([{"sku": sku(1)}, {"sku": "NOPE"}])
    assert [(o.keys, o.quantity) for o in observed] == [({"sku": sku(1)}, 7)]
    assert [r.path for r in shop.requests] == [
        f"/api/v1/inventory/{sku(1)}",
        "/api/v1/inventory/NOPE",
    ]

    shop.inject(Fault(status=429, headers={"Retry-After": "3"}))
    with pytest.raises(AdapterError) as throttled:
        adapter.fetch_stock([{"sku": sku(1)}])
    assert (throttled.value.outcome, throttled.value.retry_after) == (Outcome.THROTTLED, 3.0)
    shop.inject(Fault(status=200, body='{"available": "many"}'))
    with pytest.raises(AdapterError) as unreadable:
        adapter.fetch_stock([{"sku": sku(1)}])
    assert unreadable.value.outcome == Outcome.RETRYABLE
    assert str(unreadable.value) == (
        "read-back: answer path `available` is not a whole number for SKU TEE-001"
    )


# --- orders -----------------------------------------------------------------------------------


def test_orders_updated_walks_pages_and_orders_fetch_maps_the_detail(server, shop):
    shop.configure(order_page_size=2)
    created = [
        shop.order_create(
            lines=[{"keys": {"sku": sku(1)}, "sku": sku(1), "quantity": n + 1, "price": "12.50"}],
            status=status,
            faults=NotifyFaults(drop=True),
        )
        for n, status in enumerate(["pending", "paid", "paid"])
    ]
    adapter = make(server, shop)
    now = datetime.now(tz=UTC)

    refs = adapter.orders_updated(
        since=now - timedelta(minutes=5), until=now + timedelta(minutes=1)
    )

    assert sorted(r.external_id for r in refs) == sorted(o.order_id for o in created)
    assert {r.raw_status for r in refs} == {"pending", "paid"}
    pages = [r.query["page"] for r in shop.requests if r.path == "/api/v1/orders"]
    assert pages == [["1"], ["2"], ["3"]]

    orders = adapter.orders_fetch([created[1].order_id, "UNKNOWN"])
    assert len(orders) == 1
    order = orders[0]
    assert (order.external_id, order.raw_status, order.status) == (
        created[1].order_id,
        "paid",
        OrderStatus.PAID,
    )
    assert order.order_number == f"#{created[1].order_id}"
    assert order.currency == "USD"
    (line,) = order.lines
    assert (line.sku, line.keys, line.quantity, line.unit_price, line.name) == (
        sku(1),
        {"sku": sku(1)},
        Decimal(2),
        Decimal("12.50"),
        f"Item {sku(1)}",
    )
    assert adapter.status_of("refunded") is None


def test_orders_are_empty_when_not_configured(server, shop):
    adapter = make(server, shop)
    adapter.options.pop("orders")
    adapter.__dict__.pop("_conf", None)
    now = datetime.now(tz=UTC)
    assert adapter.orders_updated(since=now, until=now) == []
    assert adapter.orders_fetch(["1"]) == []
    assert shop.requests == []


# --- webhook parsing ----------------------------------------------------------------------------


def test_webhook_parse_reads_order_and_stock_events(server, shop):
    adapter = make(server, shop)
    order = adapter.webhook_parse(
        body=json.dumps(
            {
                "id": "evt_1",
                "type": "order.updated",
                "created": 1767225600,
                "data": {"order_id": 1001, "status": "paid", "updated_at": "2026-01-01T00:00:05Z"},
            }
        ).encode()
    )
    assert (order.topic, order.event_key, order.order_id, order.status) == (
        "order",
        "evt_1",
        "1001",
        "paid",
    )
    assert order.updated_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    stock = adapter.webhook_parse(
        body=json.dumps(
            {
                "id": "evt_2",
                "type": "stock.updated",
                "created": 1767225600,
                "data": {"items": [{"sku": "A", "quantity": 5, "location": "main"}, {"sku": "B"}]},
            }
        ).encode()
    )
    assert stock.topic == "stock"
    assert [(r.keys, r.quantity) for r in stock.stock] == [
        ({"sku": "A", "location": "main"}, 5),
        ({"sku": "B"}, None),
    ]
    assert stock.updated_at == datetime(2026, 1, 1, tzinfo=UTC)
    other = adapter.webhook_parse(body=b'{"id": "evt_3", "type": "customer.created", "data": {}}')
    assert (other.topic, other.event_key) == ("other", "evt_3")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"type": "order.updated", "data": {"order_id": "1"}}',  # no id
        b'{"id": "evt\\u0000", "type": "order.updated", "data": {"order_id": "1"}}',
        b'{"id": "evt_1", "type": "order.updated", "data": {"order_id": "\\ud800"}}',
        b'{"id": "evt_1", "type": "order.updated", "data": {"order_id": {"a": 1}}}',
        b'{"id": "evt_1", "type": "order.updated", "data": []}',
        b'{"id": "evt_1", "type": "stock.updated", "data": {"items": "x"}}',
        b'{"id": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_webhook_parse_never_raises_on_hostile_bodies(server, shop, body):
    event = make(server, shop).webhook_parse(body=body)
    assert event.topic == "unreadable"
    assert event.event_key == hashlib.sha256(body).hexdigest()


def test_webhook_parse_out_of_range_quantity_reads_back(server, shop):
    event = make(server, shop).webhook_parse(
        body=b'{"id": "e", "type": "stock.updated", "data": {"items": [{"sku": "A", "quantity": '
        + b"9" * 40
        + b"}]}}"
    )
    assert [(r.keys, r.quantity) for r in event.stock] == [({"sku": "A"}, None)]
