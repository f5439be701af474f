from collections.abc import Iterator

import pytest
from django.db import connection
from rest_framework.test import APIClient

from channels_sync.models import AllocationRule, Channel, ChannelListing, PushAttempt
from channels_sync.sandbox import ShopeeSandbox
from core.sandbox import SandboxServer
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory

URL = "/api/v1/channels/"
PARTNER_KEY = "pk-very-secret-0001"
ACCESS_TOKEN = "at-very-secret-0002"
REFRESH_TOKEN = "rt-very-secret-0003"
WEBHOOK_SECRET = "wh-very-secret-0004"
SECRETS = (PARTNER_KEY, ACCESS_TOKEN, REFRESH_TOKEN, WEBHOOK_SECRET)


def _shopee_body(**fields) -> dict:
    return {
        "name": "Shopee ID",
        "type": "shopee",
        "base_url": "https://partner.test-stable.shopeemobile.com/",
        "credentials": {
            "partner_id": "2001887",
            "partner_key": PARTNER_KEY,
            "shop_id": "77",
            "access_token": ACCESS_TOKEN,
            "refresh_token": REFRESH_TOKEN,
        },
        "warehouses": ["MAIN"],
        "webhook_secret": WEBHOOK_SECRET,
        **fields,
    }


def _no_secrets(response) -> None:
    text = response.content.decode()
    for secret in SECRETS:
        assert secret not in text


def _error(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


@pytest.fixture
def admin_api(make_client) -> APIClient:
    return make_client(("admin",))


@pytest.fixture
def reader(make_client) -> APIClient:
    return make_client(("read",))


@pytest.fixture
def channel(warehouse) -> Channel:
    return ChannelFactory(name="Shop", warehouses=[warehouse])


@pytest.fixture
def shopee() -> Iterator[tuple[ShopeeSandbox, SandboxServer]]:
    app = ShopeeSandbox()
    with SandboxServer(app) as server:
        yield app, server


# --- Channels ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_channel_create_stores_credentials_encrypted_and_never_returns_them(
    warehouse, admin_api, reader
):
    # when
    created = admin_api.post(URL, _shopee_body(rate_limit_per_second=2.5), format="json")

    # then
    assert created.status_code == 201, created.content
    _no_secrets(created)
    body = created.json()
    assert "credentials" not in body
    assert "webhook_secret" not in body
    assert body["credentials_set"] is True
    assert body["webhook_secret_set"] is True
    assert body["credential_fields"] == [
        "access_token",
        "partner_id",
        "partner_key",
        "refresh_token",
        "shop_id",
    ]
    assert body["base_url"] == "https://partner.test-stable.shopeemobile.com"
    assert body["warehouses"] == ["MAIN"]
    assert body["needs_reauth"] is False
    assert body["token_expires_at"] is None
    # the channel's own rate, the type's burst and batch size
    assert body["effective_rate_limit_per_second"] == 2.5
    assert (body["effective_rate_limit_burst"], body["effective_batch_size"]) == (10, 50)
    assert (body["listing_count"], body["dirty_count"], body["error_count"]) == (0, 0, 0)
    stored = Channel.objects.get(pk=body["id"])
    assert stored.credentials["partner_key"] == PARTNER_KEY
    assert stored.webhook_secret == WEBHOOK_SECRET
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credentials, webhook_secret FROM channels_sync_channel WHERE id = %s",
            [stored.pk],
        )
        raw = cursor.fetchone()
    assert all(column.startswith("enc1:") for column in raw)
    listed = reader.get(URL)
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [stored.pk]
    _no_secrets(listed)
    shown = reader.get(f"{URL}{stored.pk}/")
    assert shown.status_code == 200
    assert shown.json()["credential_fields"] == body["credential_fields"]
    _no_secrets(shown)


@pytest.mark.django_db
def test_channel_create_with_an_idempotency_key_replays_the_first_answer(warehouse, admin_api):
    first = admin_api.post(URL, _shopee_body(), format="json", HTTP_IDEMPOTENCY_KEY="ch-1")

    retry = admin_api.post(URL, _shopee_body(), format="json", HTTP_IDEMPOTENCY_KEY="ch-1")
    other = admin_api.post(
        URL, _shopee_body(name="Other"), format="json", HTTP_IDEMPOTENCY_KEY="ch-1"
    )

    assert first.status_code == 201, first.content
    assert retry.status_code == 201, retry.content
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert _error(other) == (422, "idempotency_key_reused")
    assert Channel.objects.count() == 1
    _no_secrets(retry)


def test_channel_create_defaults_and_errors(warehouse, admin_api, api):
    refused = api.post(URL, _shopee_body(), format="json")
    assert _error(refused) == (403, "insufficient_scope")

    bad_type = admin_api.post(URL, _shopee_body(type="etsy"), format="json")
    assert _error(bad_type) == (400, "validation_error")
    assert "type" in bad_type.json()["details"]

    missing = _shopee_body()
    del missing["credentials"]["partner_key"]
    answer = admin_api.post(URL, missing, format="json")
    assert _error(answer) == (400, "invalid_credentials")
    assert "partner_key" in answer.json()["message"]
    _no_secrets(answer)

    unknown_field = _shopee_body()
    unknown_field["credentials"]["app_secret"] = "x"
    assert _error(admin_api.post(URL, unknown_field, format="json")) == (
        400,
        "invalid_credentials",
    )
    assert _error(admin_api.post(URL, _shopee_body(warehouses=["NOPE"]), format="json")) == (
        400,
        "unknown_warehouse",
    )
    assert _error(admin_api.post(URL, _shopee_body(batch_size=51), format="json")) == (
        400,
        "invalid_batch_size",
    )
    assert _error(
        admin_api.post(
            URL, _shopee_body(vendor="00000000-0000-0000-0000-000000000000"), format="json"
        )
    ) == (404, "vendor_not_found")
    assert _error(admin_api.post(URL, [], format="json")) == (400, "validation_error")
    bad_url = admin_api.post(URL, _shopee_body(base_url="ftp://x.example"), format="json")
    assert _error(bad_url) == (400, "validation_error")
    assert "base_url" in bad_url.json()["details"]

    # base_url omitted: the marketplace's production host
    lazada = admin_api.post(
        URL,
        {
            "name": "Lazada",
            "type": "lazada",
            "credentials": {"app_key": "1", "app_secret": "s"},
            "warehouses": [],
            "dry_run": True,
        },
        format="json",
    )
    assert lazada.status_code == 201, lazada.content
    assert lazada.json()["base_url"] == "https://api.lazada.co.id/rest"
    assert lazada.json()["dry_run"] is True
    assert lazada.json()["effective_batch_size"] == 20
    assert lazada.json()["warehouses"] == []
    # a private single-label host (a sandbox, a proxy) is a valid base
    private = admin_api.post(
        URL, _shopee_body(name="Private", base_url="http://shopee-sandbox:8080/"), format="json"
    )
    assert private.json()["base_url"] == "http://shopee-sandbox:8080"

    first = admin_api.post(URL, _shopee_body(), format="json")
    assert first.status_code == 201
    again = admin_api.post(URL, _shopee_body(), format="json")
    assert _error(again) == (409, "channel_exists")
    _no_secrets(again)


@pytest.mark.django_db
def test_channel_patch_merges_credentials_and_clears_reauth(
    warehouse, store, admin_api, api, reader
):
    created = admin_api.post(URL, _shopee_body(), format="json").json()
    url = f"{URL}{created['id']}/"
    Channel.objects.filter(pk=created["id"]).update(needs_reauth=True, reauth_reason="refused")
    assert _error(api.patch(url, {"priority": 5}, format="json")) == (403, "insufficient_scope")

    # when
    patched = admin_api.patch(
        url,
        {
            "credentials": {
                "access_token": "at-rotated-secret",
                "access_token_expires_at": "2031-01-01T00:00:00Z",
            },
            "warehouses": ["MAIN", "STORE"],
            "priority": 5,
            "batch_size": 20,
        },
        format="json",
    )

    # then
    assert patched.status_code == 200, patched.content
    assert "at-rotated-secret" not in patched.content.decode()
    _no_secrets(patched)
    body = patched.json()
    assert body["needs_reauth"] is False
    assert body["token_expires_at"] == "2031-01-01T00:00:00Z"
    assert body["warehouses"] == ["MAIN", "STORE"]
    assert (body["priority"], body["batch_size"], body["effective_batch_size"]) == (5, 20, 20)
    assert "access_token_expires_at" in body["credential_fields"]
    stored = Channel.objects.get(pk=created["id"])
    assert stored.credentials["access_token"] == "at-rotated-secret"
    assert stored.credentials["partner_key"] == PARTNER_KEY  # merged, not replaced

    # a null removes a credential field
    removed = admin_api.patch(url, {"credentials": {"refresh_token": None}}, format="json")
    assert removed.status_code == 200
    assert "refresh_token" not in removed.json()["credential_fields"]

    assert _error(admin_api.patch(url, {"batch_size": 51}, format="json")) == (
        400,
        "invalid_batch_size",
    )
    assert _error(admin_api.patch(url, {"warehouses": ["NOPE"]}, format="json")) == (
        400,
        "unknown_warehouse",
    )
    assert _error(admin_api.patch(url, {"credentials": {"partner_key": ""}}, format="json")) == (
        400,
        "invalid_credentials",
    )
    assert _error(admin_api.patch(url, {"priority": -1}, format="json")) == (
        400,
        "validation_error",
    )
    ChannelFactory(name="Other")
    assert _error(admin_api.patch(url, {"name": "Other"}, format="json")) == (
        409,
        "channel_exists",
    )
    assert _error(admin_api.patch(f"{URL}999999/", {}, format="json")) == (
        404,
        "channel_not_found",
    )
    assert _error(reader.get(f"{URL}999999/")) == (404, "channel_not_found")


@pytest.mark.django_db
def test_channel_list_filters(warehouse, reader, django_assert_num_queries):
    shopee = ChannelFactory(type="shopee", warehouses=[warehouse])
    lazada = ChannelFactory(type="lazada", active=False, warehouses=[warehouse])
    ChannelFactory(type="tiktok", vendor=VendorFactory())
    ChannelListingFactory.create_batch(2, channel=shopee)

    # key, throttle window touch, count, page (with listing counts), warehouses
    with django_assert_num_queries(5):
        everything = reader.get(URL).json()
    assert [row["listing_count"] for row in everything["results"]] == [2, 0, 0]
    assert everything["results"][0]["warehouses"] == ["MAIN"]

    by_type = reader.get(URL, {"type": "lazada"}).json()["results"]
    inactive = reader.get(URL, {"active": "false"}).json()["results"]

    assert [row["id"] for row in by_type] == [lazada.pk]
    assert [row["id"] for row in inactive] == [lazada.pk]
    assert reader.get(URL).json()["count"] == 3
    assert shopee.pk in [row["id"] for row in reader.get(URL).json()["results"]]
    assert _error(reader.get(URL, {"type": "etsy"})) == (400, "invalid_filter")


# --- Listings ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_listings_batch_reports_each_row_and_never_stops_valid_ones(channel, api):
    ProductFactory(sku="A")
    ProductFactory(sku="B")
    ProductFactory(sku="C")
    url = f"{URL}{channel.pk}/listings/"
    rows = [
        {"sku": "A", "keys": {"item_id": "1001", "model_id": "0"}},
        {"sku": "NOPE", "keys": {"item_id": "1002", "model_id": "0"}},
        {"sku": "B", "keys": {"item_id": "1003"}},
        {"sku": "C", "keys": {"item_id": 1004, "model_id": 7, "location_id": "ID0"}},
        {"sku": "A", "keys": {"item_id": "1005", "model_id": "0"}},
        "not an object",
        {"sku": "B", "keys": {"item_id": "1006", "model_id": "0", "colour": "red"}},
    ]

    # when
    answer = api.post(url, {"rows": rows}, format="json")

    # then
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["counts"] == {"created": 2, "updated": 0, "unchanged": 0, "invalid": 5}
    assert [(r["index"], r["status"], r["code"], r["field"]) for r in body["results"]] == [
        (0, "created", "", ""),
        (1, "invalid", "unknown_sku", "sku"),
        (2, "invalid", "invalid_keys", "keys"),
        (3, "created", "", ""),
        (4, "invalid", "duplicate", ""),
        (5, "invalid", "invalid_row", "sku"),
        (6, "invalid", "invalid_keys", "keys"),
    ]
    listed = api.get(url).json()
    assert listed["count"] == 2
    first = listed["results"][0]
    assert first["sku"] == "A"
    assert first["keys"] == {"item_id": "1001", "model_id": "0"}
    assert first["dirty"] is True
    assert first["status"] == "ok"
    assert first["desired_quantity"] is None
    assert listed["results"][1]["keys"] == {
        "item_id": "1004",
        "model_id": "7",
        "location_id": "ID0",
    }

    # the same batch again changes nothing; new keys update the listing
    again = api.post(url, {"rows": [rows[0], rows[3]]}, format="json").json()
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "invalid": 0}
    moved = api.post(
        url, {"rows": [{"sku": "A", "keys": {"item_id": "2001", "model_id": "0"}}]}, format="json"
    ).json()
    assert moved["results"][0]["status"] == "updated"
    assert ChannelListing.objects.get(product__sku="A").external_item_id == "2001"


@pytest.mark.django_db
def test_listings_batch_refuses_bad_bodies(channel, api, reader):
    url = f"{URL}{channel.pk}/listings/"
    too_many = [{"sku": f"S{i}", "keys": {"item_id": str(i), "model_id": "0"}} for i in range(1001)]

    assert _error(api.post(url, {"rows": too_many}, format="json")) == (400, "batch_too_large")
    assert api.post(url, {"rows": too_many}, format="json").json()["details"] == {
        "max": 1000,
        "received": 1001,
    }
    assert _error(api.post(url, {"rows": "x"}, format="json")) == (400, "invalid_body")
    assert _error(api.post(url, [{"sku": "A"}], format="json")) == (400, "invalid_body")
    assert _error(api.post(url, {}, format="json")) == (400, "invalid_body")
    assert _error(api.post(url, "{", content_type="application/json")) == (400, "parse_error")
    assert _error(reader.post(url, {"rows": []}, format="json")) == (403, "insufficient_scope")
    assert _error(api.post(f"{URL}999999/listings/", {"rows": []}, format="json")) == (
        404,
        "channel_not_found",
    )
    assert _error(reader.get(f"{URL}999999/listings/")) == (404, "channel_not_found")


@pytest.mark.django_db
def test_listings_list_filters_by_dirty_status_and_sku(channel, reader, django_assert_num_queries):
    clean = ChannelListingFactory(channel=channel, dirty=False)
    failed = ChannelListingFactory(
        channel=channel, dirty=False, status=ChannelListing.Status.ERROR, last_error="refused"
    )
    dirty = ChannelListingFactory(channel=channel)
    ChannelListingFactory()  # another channel's
    url = f"{URL}{channel.pk}/listings/"

    # key, throttle window touch, channel, count, page (products joined)
    with django_assert_num_queries(5):
        everything = reader.get(url).json()

    assert [row["id"] for row in everything["results"]] == [clean.pk, failed.pk, dirty.pk]
    assert [r["id"] for r in reader.get(url, {"dirty": "true"}).json()["results"]] == [dirty.pk]
    errors = reader.get(url, {"status": "error"}).json()["results"]
    assert [(r["id"], r["last_error"]) for r in errors] == [(failed.pk, "refused")]
    by_sku = reader.get(url, {"sku": clean.product.sku}).json()["results"]
    assert [r["id"] for r in by_sku] == [clean.pk]
    assert _error(reader.get(url, {"status": "bogus"})) == (400, "invalid_filter")


# --- Rules and preview ------------------------------------------------------------------------


@pytest.mark.django_db
def test_rules_set_then_replace_and_the_preview_shows_pool_and_desired(
    channel, stocked, api, reader
):
    first = ChannelListingFactory(channel=channel, product=stocked(10, sku="P-1"))
    second = ChannelListingFactory(channel=channel, product=stocked(7, sku="P-2"))
    url = f"{URL}{channel.pk}/rules/"
    preview = f"{URL}{channel.pk}/preview/"

    # when: half of the pool, then a fixed 2 for one product
    created = api.post(url, {"strategy": "percentage", "parameter": "50"}, format="json")
    product_rule = api.post(
        url, {"scope": "product", "sku": "P-2", "strategy": "fixed", "parameter": 2}, format="json"
    )

    # then
    assert created.status_code == 201, created.content
    assert created.json()["scope"] == "channel"
    assert created.json()["parameter"] == "50.000"
    assert product_rule.status_code == 201
    assert product_rule.json()["sku"] == "P-2"
    table = reader.get(preview).json()
    assert table["next_after"] is None
    assert [
        (r["listing_id"], r["sku"], r["pool"], r["current"], r["desired"], r["change"])
        for r in table["rows"]
    ] == [
        (first.pk, "P-1", "10.000", None, 5, True),
        (second.pk, "P-2", "7.000", None, 2, True),
    ]
    assert all(row["reason"] for row in table["rows"])

    replaced = api.post(
        url, {"strategy": "percentage", "parameter": 30, "buffer_units": 1}, format="json"
    )
    assert replaced.status_code == 200
    assert replaced.json()["id"] == created.json()["id"]
    assert AllocationRule.objects.filter(channel=channel).count() == 2
    rows = reader.get(preview).json()["rows"]
    assert rows[0]["desired"] == 2  # 30% of (10 - 1)
    listed = reader.get(url).json()["results"]
    assert [(r["scope"], r["sku"]) for r in listed] == [("channel", None), ("product", "P-2")]

    # the preview sends nothing and stores nothing
    assert not PushAttempt.objects.exists()
    assert ChannelListing.objects.get(pk=first.pk).desired_quantity is None


@pytest.mark.django_db
def test_rules_errors(channel, api, reader):
    url = f"{URL}{channel.pk}/rules/"
    listing = ChannelListingFactory(channel=channel)
    cases = [
        ({"strategy": "percentage"}, "invalid_rule"),
        ({"strategy": "percentage", "parameter": 150}, "invalid_rule"),
        ({"strategy": "fixed"}, "invalid_rule"),
        ({"strategy": "bogus"}, "validation_error"),
        ({"scope": "product", "strategy": "all"}, "invalid_rule"),
        ({"scope": "listing", "strategy": "all"}, "invalid_rule"),
        ({"strategy": "all", "sku": "X"}, "invalid_rule"),
        ({"strategy": "all", "listing_id": 1}, "invalid_rule"),
        ({"strategy": "all", "buffer_percent": 101}, "invalid_rule"),
        ({"scope": "product", "sku": "NOPE", "strategy": "all"}, "unknown_sku"),
        ({"scope": "listing", "listing_id": 999999, "strategy": "all"}, "unknown_listing"),
    ]
    for body, code in cases:
        assert _error(api.post(url, body, format="json")) == (400, code), body
    on_listing = api.post(
        url, {"scope": "listing", "listing_id": listing.pk, "strategy": "all"}, format="json"
    )
    assert on_listing.status_code == 201
    assert on_listing.json()["listing_id"] == listing.pk
    assert _error(reader.post(url, {"strategy": "all"}, format="json")) == (
        403,
        "insufficient_scope",
    )
    assert _error(api.post(f"{URL}999999/rules/", {"strategy": "all"}, format="json")) == (
        404,
        "channel_not_found",
    )


@pytest.mark.django_db
def test_preview_pages_by_listing_id(channel, stocked, reader):
    listings = [ChannelListingFactory(channel=channel, product=stocked(3)) for _ in range(3)]
    excluded = ChannelListingFactory(
        channel=channel, product=stocked(3), status=ChannelListing.Status.EXCLUDED
    )
    url = f"{URL}{channel.pk}/preview/"

    page_one = reader.get(url, {"limit": 2}).json()
    page_two = reader.get(url, {"limit": 2, "after": page_one["next_after"]}).json()

    assert [row["listing_id"] for row in page_one["rows"]] == [listings[0].pk, listings[1].pk]
    assert page_one["next_after"] == listings[1].pk
    # the excluded listing is shown as not pushed, and its page is the last
    rows = page_two["rows"]
    assert [row["listing_id"] for row in rows] == [listings[2].pk, excluded.pk]
    assert (rows[1]["desired"], rows[1]["change"]) == (None, False)
    assert rows[1]["reason"].startswith("excluded")
    assert page_two["next_after"] is None
    assert _error(reader.get(url, {"limit": 1001})) == (400, "validation_error")
    assert _error(reader.get(url, {"after": -1})) == (400, "validation_error")
    assert _error(reader.get(f"{URL}999999/preview/")) == (404, "channel_not_found")


# --- Push and attempts ------------------------------------------------------------------------


@pytest.mark.django_db
def test_push_dry_run_reports_and_records_attempts_without_sending(
    channel, stocked, admin_api, api, reader
):
    ChannelListingFactory(channel=channel, product=stocked(4))
    ChannelListingFactory(channel=channel, product=stocked(6))
    push = f"{URL}{channel.pk}/push/"
    assert _error(api.post(push)) == (403, "insufficient_scope")

    # when
    report = admin_api.post(f"{push}?dry_run=1")

    # then: the factory's channel points at a closed port; a dry run never calls it
    assert report.status_code == 200, report.content
    body = report.json()
    assert body["dry_run"] is True
    assert (body["planned"], body["pushed"], body["failed"], body["calls"]) == (2, 0, 0, 0)
    assert body["stopped"] == ""
    attempts = reader.get(f"{URL}{channel.pk}/attempts/").json()["results"]
    assert len(attempts) == 1
    assert attempts[0]["outcome"] == "dry_run"
    assert attempts[0]["item_count"] == 2
    assert sorted(item["quantity"] for item in attempts[0]["items"]) == [4, 6]
    assert reader.get(f"{URL}{channel.pk}/attempts/", {"outcome": "ok"}).json()["results"] == []
    assert _error(reader.get(f"{URL}{channel.pk}/attempts/", {"outcome": "x"})) == (
        400,
        "invalid_filter",
    )
    assert _error(admin_api.post(f"{push}?dry_run=maybe")) == (400, "validation_error")
    assert _error(admin_api.post(f"{URL}999999/push/")) == (404, "channel_not_found")
    assert _error(reader.get(f"{URL}999999/attempts/")) == (404, "channel_not_found")


@pytest.mark.django_db
def test_push_queues_a_push_that_reaches_the_marketplace(
    warehouse, stocked, admin_api, reader, shopee
):
    sandbox, server = shopee
    channel = ChannelFactory(
        base_url=server.url, credentials=sandbox.credentials(), warehouses=[warehouse]
    )
    ChannelListingFactory(
        channel=channel, product=stocked(9), external_item_id="3001", external_variant_id="0"
    )
    sandbox.seed_listings([{"item_id": "3001", "model_id": "0"}], quantity=1)

    # when (the test settings run tasks eagerly: the queued push runs in the request)
    answer = admin_api.post(f"{URL}{channel.pk}/push/")

    # then
    assert answer.status_code == 202
    assert answer.json() == {"channel_id": channel.pk, "queued": True}
    assert sandbox.quantity({"item_id": "3001", "model_id": "0"}) == 9
    attempts = reader.get(f"{URL}{channel.pk}/attempts/").json()["results"]
    assert [(a["outcome"], a["http_status"]) for a in attempts] == [("ok", 200)]
    listing = reader.get(f"{URL}{channel.pk}/listings/").json()["results"][0]
    assert (listing["last_pushed_quantity"], listing["dirty"]) == (9, False)
    shown = reader.get(f"{URL}{channel.pk}/").json()
    assert shown["last_push_at"] is not None
    assert sandbox.credentials()["partner_key"] not in str(shown)


@pytest.mark.django_db
def test_channel_endpoints_need_a_key(channel):
    anonymous = APIClient()
    for path in ("", f"{channel.pk}/", f"{channel.pk}/listings/", f"{channel.pk}/preview/"):
        assert _error(anonymous.get(f"{URL}{path}")) == (401, "not_authenticated")


@pytest.mark.django_db
def test_channel_of_another_vendor_uses_its_own_warehouses(admin_api):
    other = VendorFactory()
    WarehouseFactory(vendor=other, code="FAR")
    answer = admin_api.post(
        URL, _shopee_body(vendor=str(other.pk), warehouses=["FAR"]), format="json"
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["vendor_id"] == str(other.pk)
    assert answer.json()["warehouses"] == ["FAR"]


@pytest.mark.django_db
def test_channel_and_rule_refusals_name_the_field_in_details(warehouse, channel, admin_api, api):
    created = admin_api.post(URL, _shopee_body(batch_size=51), format="json")
    assert _error(created) == (400, "invalid_batch_size")
    assert created.json()["details"] == {
        "field": "batch_size",
        "batch_size": ["Shopee takes 1 to 50 listings per call."],
        "max_batch_size": 50,
    }

    patched = admin_api.patch(f"{URL}{channel.pk}/", {"warehouses": ["NOPE"]}, format="json")
    assert _error(patched) == (400, "unknown_warehouse")
    assert patched.json()["details"]["field"] == "warehouses"
    assert patched.json()["details"]["codes"] == ["NOPE"]

    rule = api.post(f"{URL}{channel.pk}/rules/", {"strategy": "all", "sku": "P-1"}, format="json")
    assert _error(rule) == (400, "invalid_rule")
    assert rule.json()["details"] == {"field": "sku", "sku": ["Only a product rule names a SKU."]}
