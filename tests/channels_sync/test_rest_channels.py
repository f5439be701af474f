"""Custom REST shop channels: options checked through the API and the console, and the push
pipeline converging on the REST shop sandbox under faults and throttling."""

import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from rest_framework.test import APIClient

from channels_sync.models import Channel, ChannelListing, PushAttempt
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.sandbox.rest_options import BATCH, PER_ITEM
from channels_sync.services.push import channel_push
from core.models import DeadLetter
from core.sandbox import SandboxServer
from inventory.services import Origin, stock_adjust, stock_set
from tests.channels_sync.rest_shop import options, rest_channel, sku
from tests.inventory.factories import ProductFactory

URL = "/api/v1/channels/"
ORIGIN = Origin(source="test", actor="test")
FAST = {
    "CHANNEL_PUSH_RETRY_BASE_SECONDS": 0.01,
    "CHANNEL_PUSH_RETRY_CAP_SECONDS": 0.05,
    "CHANNEL_THROTTLE_WAIT_SECONDS": 0.05,
    "CHANNEL_PUSH_FAILURE_STREAK": 1000,
}


@pytest.fixture(scope="module")
def _server():
    with SandboxServer(RestShopSandbox()) as running:
        yield running


@pytest.fixture
def server(_server) -> SandboxServer:
    _server.app.reset()
    return _server


@pytest.fixture
def admin_api(make_client) -> APIClient:
    return make_client(("admin",))


def _body(**fields) -> dict:
    return {
        "name": "Own shop",
        "type": "rest",
        "base_url": "https://shop.example.com",
        "credentials": {"token": "tok-secret-1", "webhook_secret": "whsec_1"},
        "warehouses": ["MAIN"],
        "options": options(),
        **fields,
    }


def _products(warehouse, quantities) -> list:
    products = []
    for quantity in quantities:
        product = ProductFactory()
        stock_set(product=product, warehouse=warehouse, quantity=Decimal(quantity), origin=ORIGIN)
        products.append(product)
    return products


# --- options through the API ----------------------------------------------------------------


def test_channel_create_with_options_stores_them_checked(warehouse, admin_api):
    created = admin_api.post(URL, _body(), format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["options"]["stock"]["mode"] == "per_item"
    assert body["options"]["read"]["batch_size"] == 50  # the default, filled in
    channel = Channel.objects.get(pk=body["id"])
    assert channel.options == body["options"]
    assert channel.credentials["token"] == "tok-secret-1"
    assert "tok-secret-1" not in created.content.decode()


def _stock(**changes) -> dict:
    return options(stock={**PER_ITEM["stock"], **changes})


DEEP: dict = {}
_level = DEEP
for _ in range(12):
    _level["a"] = {}
    _level = _level["a"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"auth": "oauth"}, "options.auth must be one of bearer, basic, api_key, hmac"),
        ({"color": "red"}, "options: unknown field color"),
        ({"stock": "POST /x"}, "options.stock must be an object"),
        ({"auth": 1}, "options.auth must be one of bearer, basic, api_key, hmac"),
        (_stock(method="DELETE"), "options.stock.method must be one of POST, PUT, PATCH"),
        (
            _stock(path="inventory"),
            "options.stock.path must start with / and hold only URL "
            "path characters (no query, fragment, spaces or //)",
        ),
        (_stock(path="/a/../b"), "options.stock.path must not hold . or .. segments"),
        (
            _stock(path="/a?b=1"),
            "options.stock.path must start with / and hold only URL path "
            "characters (no query, fragment, spaces or //)",
        ),
        (
            _stock(body={"q": "{{qty}}"}),
            "options.stock.body: unknown placeholder {{qty}} (known "
            "here: expected, idempotency_key, location, quantity, sku, variant_id)",
        ),
        (
            _stock(body={"q": "{{quantity"}),
            "options.stock.body: a placeholder is not closed or not a name: '{{quantity'",
        ),
        (
            _stock(ok="results[].ok"),
            "options.stock.ok reads one answer per item: no [] in mode per_item",
        ),
        (_stock(ok="a..b"), "options.stock.ok: empty part in `a..b`"),
        (_stock(ok="a[].b[].c"), "options.stock.ok: at most one [] in a path"),
        (
            _stock(ok="__import__('os')"),
            "options.stock.ok: `__import__('os')` is not a name "
            "(letters, digits, _ and - only, optionally followed by [])",
        ),
        (
            _stock(ok_value=[1]),
            "options.stock.ok_value must be a string, an integer, true, false or null",
        ),
        (
            options(stock={**BATCH["stock"], "body": {"x": 1}}),
            "options.stock.body must hold {{items}} in mode batch",
        ),
        (
            options(stock={**BATCH["stock"], "sku": "rows[].sku"}),
            "options.stock.error, options.stock.ok, options.stock.sku must read the same rows "
            "(the same path up to [])",
        ),
        (_stock(body=DEEP), "options.stock.body is nested deeper than 8 levels"),
        (
            _stock(body={"x": "y" * 20_000}),
            "options.stock.body is longer than 10000 characters of JSON",
        ),
        (_stock(path="/" + "a" * 400), "options.stock.path must be a path of 1 to 300 characters"),
        (
            {"read": {"path": "/r", "quantity": 5}},
            "options.read.quantity must be a string (an answer path such as results[].ok)",
        ),
        (
            {"read": {**PER_ITEM["read"], "batch_size": True}},
            "options.read.batch_size must be an integer from 1 to 500",
        ),
        (
            {"orders": {**PER_ITEM["orders"], "status_map": {"paid": "settled"}}},
            "options.orders.status_map.paid must be one of pending_payment, paid, ready_to_ship, "
            "shipped, delivered, completed, cancelled, returned or null (says nothing about "
            "stock)",
        ),
        ({"api_key_header": "X-Key"}, "options.api_key_header is only for auth api_key"),
    ],
)
def test_channel_create_refuses_bad_options_as_invalid_options(warehouse, admin_api, bad, message):
    answer = admin_api.post(URL, _body(options={**options(), **bad}), format="json")
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert (body["code"], body["message"]) == ("invalid_options", message)
    assert body["details"]["field"] == "options"
    assert body["correlation_id"]
    assert not Channel.objects.exists()


@pytest.mark.parametrize(
    "hostile",
    [
        "not an object",
        [1, 2],
        {"auth": "bearer", "stock": {"path": "/" + "\u0000"}},
        {"a" * 10_000: 1},
    ],
)
def test_channel_create_never_500s_on_hostile_options(warehouse, admin_api, hostile):
    answer = admin_api.post(URL, _body(options=hostile), format="json")
    assert answer.status_code == 400, answer.content
    assert answer.json()["code"] in ("invalid_options", "validation_error", "invalid_json")


def test_channel_create_refuses_deeply_nested_options_without_a_500(warehouse, admin_api):
    nested: dict = {}
    level = nested
    for _ in range(200):
        level["x"] = {}
        level = level["x"]
    raw = json.dumps(_body(options={**options(), "stock": nested}))
    answer = admin_api.post(URL, raw, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_json"


def test_channel_update_checks_options_and_rejects_them_for_other_types(warehouse, admin_api):
    channel_id = admin_api.post(URL, _body(), format="json").json()["id"]
    changed = admin_api.patch(f"{URL}{channel_id}/", {"options": options(BATCH)}, format="json")
    assert changed.status_code == 200, changed.content
    assert Channel.objects.get(pk=channel_id).options["stock"]["mode"] == "batch"
    refused = admin_api.patch(f"{URL}{channel_id}/", {"options": {"auth": "x"}}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_options")


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({"token": "tok\u20ac"}, "credential token is sent in an HTTP header"),
        ({"token": "tok\r\nX-Evil: 1"}, "credential token is sent in an HTTP header"),
        ({"token": {"nested": True}}, "credential token must be text"),
    ],
)
def test_channel_create_refuses_credentials_that_cannot_be_sent(
    warehouse, admin_api, credentials, message
):
    answer = admin_api.post(URL, _body(credentials=credentials), format="json")
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert (body["code"], body["details"]["field"]) == ("invalid_credentials", "credentials")
    assert body["message"].startswith(message)
    assert not Channel.objects.exists()


@pytest.mark.parametrize(
    ("auth", "credentials", "message"),
    [
        ("bearer", {"webhook_secret": "w"}, "auth bearer needs the credential token"),
        ("basic", {"token": "t"}, "auth basic needs the credential username, password"),
        ("api_key", {"token": "t"}, "auth api_key needs the credential api_key"),
        ("hmac", {"token": "t"}, "auth hmac needs the credential hmac_secret"),
    ],
)
def test_channel_create_refuses_credentials_missing_for_the_auth_mode(
    warehouse, admin_api, auth, credentials, message
):
    answer = admin_api.post(
        URL, _body(credentials=credentials, options=options(auth=auth)), format="json"
    )
    assert answer.status_code == 400, answer.content
    assert (answer.json()["code"], answer.json()["message"]) == ("invalid_credentials", message)
    assert not Channel.objects.exists()


def test_channel_update_checks_credentials_against_the_options(warehouse, admin_api):
    channel_id = admin_api.post(URL, _body(), format="json").json()["id"]
    url = f"{URL}{channel_id}/"
    # another auth mode whose credential the channel does not hold
    refused = admin_api.patch(url, {"options": options(auth="hmac")}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (400, "invalid_credentials")
    assert refused.json()["message"] == "auth hmac needs the credential hmac_secret"
    # the credential removed (null removes a stored field) while bearer needs it
    removed = admin_api.patch(url, {"credentials": {"token": None}}, format="json")
    assert (removed.status_code, removed.json()["code"]) == (400, "invalid_credentials")
    assert removed.json()["message"] == "auth bearer needs the credential token"
    unsafe = admin_api.patch(url, {"credentials": {"token": "a\r\nb"}}, format="json")
    assert (unsafe.status_code, unsafe.json()["code"]) == (400, "invalid_credentials")
    channel = Channel.objects.get(pk=channel_id)
    assert (channel.options["auth"], channel.credentials["token"]) == ("bearer", "tok-secret-1")
    # both at once: taken
    both = admin_api.patch(
        url, {"options": options(auth="hmac"), "credentials": {"hmac_secret": "s"}}, format="json"
    )
    assert both.status_code == 200, both.content
    channel.refresh_from_db()
    assert (channel.options["auth"], channel.credentials["hmac_secret"]) == ("hmac", "s")


# --- the console ---------------------------------------------------------------------------


@pytest.fixture
def staff_client(db) -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _form(warehouse, **fields) -> dict:
    return {
        "name": "Own shop",
        "type": "rest",
        "vendor": str(warehouse.vendor_id),
        "base_url": "https://shop.example.com/",
        "auth_base_url": "",
        "warehouses": [warehouse.pk],
        "new_credentials": json.dumps({"token": "tok-admin-1"}),
        "new_webhook_secret": "",
        "options_json": json.dumps(options()),
        "active": "on",
        "push_enabled": "on",
        "priority": "100",
        "rate_limit_per_second": "",
        "rate_limit_burst": "",
        "batch_size": "",
        "conflict_policy": "use_ours",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        **fields,
    }


def test_admin_edits_options_as_json_and_shows_errors_on_the_form(warehouse, staff_client):
    admin = "/admin/channels_sync/channel"
    for text, error in [
        ("{not json", "Not valid JSON"),
        ("[1]", "The options must be a JSON object."),
        (
            json.dumps({**options(), "auth": "nope"}),
            "options.auth must be one of bearer, basic, api_key, hmac",
        ),
        ("", "options: missing auth, stock, read"),
    ]:
        page = staff_client.post(f"{admin}/add/", _form(warehouse, options_json=text))
        assert page.status_code == 200, text
        assert error in page.content.decode(), text
    assert not Channel.objects.exists()

    added = staff_client.post(f"{admin}/add/", _form(warehouse))
    assert added.status_code == 302, added.content.decode()[:2000]
    channel = Channel.objects.get()
    assert channel.options["stock"]["path"] == "/api/v1/inventory/{{sku}}"
    page = staff_client.get(f"{admin}/{channel.pk}/change/")
    assert "/api/v1/inventory/{{sku}}" in page.content.decode()

    form = _form(warehouse, options_json=json.dumps(options(BATCH)), new_credentials="")
    for fixed in ("type", "vendor"):
        del form[fixed]
    changed = staff_client.post(f"{admin}/{channel.pk}/change/", form)
    assert changed.status_code == 302, changed.content.decode()[:2000]
    channel.refresh_from_db()
    assert channel.options["stock"]["mode"] == "batch"


def test_admin_shows_credentials_missing_for_the_auth_mode_on_the_credentials(
    warehouse, staff_client
):
    page = staff_client.post(
        "/admin/channels_sync/channel/add/",
        _form(warehouse, options_json=json.dumps(options(auth="basic"))),
    )
    assert page.status_code == 200
    assert "auth basic needs the credential username, password" in page.content.decode()
    assert not Channel.objects.exists()


# --- the push pipeline ---------------------------------------------------------------------


@pytest.mark.parametrize("base", [PER_ITEM, BATCH], ids=["per_item", "batch"])
def test_push_converges_under_errors_and_throttling(server, vendor, warehouse, base):
    app: RestShopSandbox = server.app
    app.configure(error_ratio=0.4, throttle_per_second=8, seed=3)
    products = _products(warehouse, range(1, 13))
    channel = rest_channel(
        vendor,
        server,
        warehouses=[warehouse],
        products=products,
        dirty=True,
        options=options(base),
        batch_size=3,
        rate_limit_per_second=6,
        rate_limit_burst=2,
    )
    for product in products[::3]:
        stock_adjust(product=product, warehouse=warehouse, delta=Decimal(5), origin=ORIGIN)
    with override_settings(**FAST):
        for _ in range(40):
            report = channel_push(channel_id=channel.pk, respect_backoff=False)
            if not ChannelListing.objects.filter(dirty=True).exists():
                break
    shown = {sku(n): app.quantity({"sku": sku(n)}) for n in range(len(products))}
    wanted = {
        listing.external_item_id: listing.desired_quantity
        for listing in ChannelListing.objects.filter(channel=channel)
    }
    assert shown == wanted
    assert sorted(shown.values()) == sorted(
        [n + 5 if (n - 1) % 3 == 0 else n for n in range(1, 13)]
    )
    assert not channel.listings.exclude(status="ok").exists()
    assert report.stopped == ""
    assert app.counts["errors"] > 0
    assert app.max_calls_in_window(1.0) <= 6 + 2
    assert PushAttempt.objects.filter(channel=channel, outcome="retryable").exists()
    bodies = [json.loads(r.body) for r in app.requests]
    if base is PER_ITEM:
        assert all(set(b) == {"quantity"} for b in bodies)
    else:
        assert max(len(b["items"]) for b in bodies) == 3


def test_push_item_rejection_dead_letters_that_item_only(server, vendor, warehouse):
    app: RestShopSandbox = server.app
    app.configure(reject=[{"sku": sku(1)}])
    products = _products(warehouse, [4, 5, 6])
    channel = rest_channel(
        vendor,
        server,
        warehouses=[warehouse],
        products=products,
        dirty=True,
        options=options(BATCH),
    )
    report = channel_push(channel_id=channel.pk)
    assert (report.pushed, report.failed) == (2, 1), report
    assert [app.quantity({"sku": sku(n)}) for n in range(3)] == [4, 0, 6]
    failed = ChannelListing.objects.get(channel=channel, external_item_id=sku(1))
    assert failed.status == "error"
    assert failed.last_error == "sku_locked"
    assert DeadLetter.objects.count() == 1


def test_push_refused_credentials_flag_the_channel_for_reauthorisation(server, vendor, warehouse):
    products = _products(warehouse, [4])
    channel = rest_channel(
        vendor,
        server,
        warehouses=[warehouse],
        products=products,
        dirty=True,
    )
    Channel.objects.filter(pk=channel.pk).update(credentials={"token": "wrong"})
    report = channel_push(channel_id=channel.pk)
    channel.refresh_from_db()
    assert channel.needs_reauth is True
    assert channel.reauth_reason == (
        'the marketplace refused the credentials ({"error": "unauthorized", "message": '
        '"bad bearer token"})'
    )
    assert report.pushed == 0
    assert server.app.quantity({"sku": sku(0)}) == 0


def test_push_with_stored_credentials_that_cannot_be_sent_flags_the_channel(
    server, vendor, warehouse
):
    # Credentials stored before they were checked: the push ends cleanly, the channel is
    # flagged for new credentials, and nothing reached the shop.
    products = _products(warehouse, [4])
    channel = rest_channel(vendor, server, warehouses=[warehouse], products=products, dirty=True)
    Channel.objects.filter(pk=channel.pk).update(credentials={"token": "tok\u20ac"})
    report = channel_push(channel_id=channel.pk)
    channel.refresh_from_db()
    assert channel.needs_reauth is True
    assert "credential token is sent in an HTTP header" in channel.reauth_reason
    assert report.pushed == 0
    assert server.app.requests == []
