"""The conflicts API: list and filters, detail with history, resolve and its errors; the
channel's conflict policy."""

from datetime import timedelta

import pytest
from django.utils import timezone

from channels_sync.models import Channel, Conflict
from tests.channels_sync.factories import ChannelFactory, ChannelListingFactory

URL = "/api/v1/conflicts/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(make_client):
    return make_client(("read",))


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message", "details", "correlation_id"}
    return body


@pytest.fixture
def conflicts(vendor):
    """A stock mismatch (open), an oversell (open, 3 days old), a duplicate (resolved)."""
    channel = ChannelFactory(vendor=vendor)
    other = ChannelFactory(vendor=vendor)
    listing = ChannelListingFactory(channel=channel)
    mismatch = Conflict.objects.create(
        kind="stock_mismatch",
        vendor=vendor,
        channel=channel,
        listing=listing,
        product=listing.product,
        source="reconciliation",
        ours=10,
        theirs=7,
    )
    oversell = Conflict.objects.create(
        kind="oversell",
        vendor=vendor,
        channel=other,
        listing=ChannelListingFactory(channel=other),
        source="order",
        ours=-2,
        theirs=2,
        detected_at=timezone.now() - timedelta(days=3),
    )
    duplicate = Conflict.objects.create(
        kind="duplicate_order",
        vendor=vendor,
        channel=other,
        source="order",
        reference="DUP-1",
        status="resolved",
    )
    return {"mismatch": mismatch, "oversell": oversell, "duplicate": duplicate}


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_conflicts_list_filters_and_shows_the_difference(
    conflicts, reader, django_assert_max_num_queries
):
    mismatch, oversell = conflicts["mismatch"], conflicts["oversell"]

    with django_assert_max_num_queries(4):
        everything = reader.get(URL)
    body = everything.json()
    assert body["count"] == 3
    row = next(r for r in body["results"] if r["id"] == mismatch.pk)
    assert (row["ours"], row["theirs"], row["difference"]) == ("10.000", "7.000", "-3.000")
    assert row["sku"] == mismatch.product.sku
    assert row["listing_id"] == mismatch.listing_id

    assert _ids(reader.get(URL, {"kind": "oversell"})) == [oversell.pk]
    assert set(_ids(reader.get(URL, {"status": "open"}))) == {mismatch.pk, oversell.pk}
    assert _ids(reader.get(URL, {"channel": mismatch.channel_id})) == [mismatch.pk]
    assert _ids(reader.get(URL, {"listing": mismatch.listing_id})) == [mismatch.pk]
    assert _ids(reader.get(URL, {"product": mismatch.product_id})) == [mismatch.pk]
    assert _ids(reader.get(URL, {"sku": mismatch.product.sku})) == [mismatch.pk]
    yesterday = (timezone.now() - timedelta(days=1)).isoformat()
    assert _ids(reader.get(URL, {"detected_before": yesterday})) == [oversell.pk]
    assert oversell.pk not in _ids(reader.get(URL, {"detected_after": yesterday}))
    assert _ids(reader.get(URL, {"channel": 2**70})) == []


@pytest.mark.parametrize(
    "query",
    [{"kind": "nope"}, {"status": ""}, {"channel": "x"}, {"detected_after": "yesterday"}],
)
def test_conflicts_list_refuses_unreadable_filters(conflicts, reader, query):
    _error(reader.get(URL, query), 400, "invalid_filter")


def test_conflict_detail_shows_its_history(conflicts, reader):
    mismatch = conflicts["mismatch"]
    body = reader.get(f"{URL}{mismatch.pk}/").json()
    assert body["id"] == mismatch.pk
    assert body["events"] == []  # made directly, not through conflict_open


@pytest.mark.parametrize("bad", ["abc", "0", str(2**63), "-1", "1e3"])
def test_conflict_unknown_ids_are_not_found(conflicts, api, bad):
    _error(api.get(f"{URL}{bad}/"), 404, "conflict_not_found")
    _error(
        api.post(f"{URL}{bad}/resolve/", {"strategy": "ignore"}, format="json"),
        404,
        "conflict_not_found",
    )


def test_conflict_resolve_then_repeat_is_not_open(conflicts, api):
    duplicate = Conflict.objects.create(
        kind="duplicate_order", vendor=conflicts["duplicate"].vendor, source="order", reference="D2"
    )

    response = api.post(
        f"{URL}{duplicate.pk}/resolve/",
        {"strategy": "use_ours", "note": "two sales, both real"},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["strategy"], body["note"]) == (
        "resolved",
        "use_ours",
        "two sales, both real",
    )
    assert body["resolved_by"] == "api_key:test client"
    assert [event["action"] for event in body["events"]] == ["resolved"]
    again = api.post(f"{URL}{duplicate.pk}/resolve/", {"strategy": "ignore"}, format="json")
    body = _error(again, 409, "conflict_not_open")
    assert body["details"]["status"] == "resolved"


def test_conflict_resolve_with_an_idempotency_key_replays(conflicts, api):
    oversell = conflicts["oversell"]
    headers = {"HTTP_IDEMPOTENCY_KEY": "resolve-oversell-1"}
    first = api.post(
        f"{URL}{oversell.pk}/resolve/", {"strategy": "ignore"}, format="json", **headers
    )
    second = api.post(
        f"{URL}{oversell.pk}/resolve/", {"strategy": "ignore"}, format="json", **headers
    )
    assert first.status_code == second.status_code == 200
    assert second["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert oversell.events.count() == 1


def test_conflict_resolve_errors(conflicts, api, reader):
    mismatch, oversell = conflicts["mismatch"], conflicts["oversell"]
    url = f"{URL}{mismatch.pk}/resolve/"

    _error(api.post(url, {"strategy": "nope"}, format="json"), 400, "validation_error")
    _error(api.post(url, {}, format="json"), 400, "validation_error")
    _error(api.post(url, ["ignore"], format="json"), 400, "validation_error")
    _error(
        api.post(url, {"strategy": "set_value", "value": -1}, format="json"),
        400,
        "validation_error",
    )
    _error(
        api.post(url, {"strategy": "set_value", "value": "1e99"}, format="json"),
        400,
        "validation_error",
    )
    _error(
        api.post(url, {"strategy": "ignore", "note": "x" * 1001}, format="json"),
        400,
        "validation_error",
    )
    body = _error(api.post(url, {"strategy": "set_value"}, format="json"), 400, "invalid_value")
    assert body["details"]["field"] == "value"
    body = _error(
        api.post(f"{URL}{oversell.pk}/resolve/", {"strategy": "use_theirs"}, format="json"),
        409,
        "strategy_not_applicable",
    )
    assert body["details"]["applicable"] == ["use_ours", "set_value", "ignore"]
    # the channel sells from no warehouse: our stock cannot follow theirs
    _error(api.post(url, {"strategy": "use_theirs"}, format="json"), 409, "no_channel_warehouse")
    # a read-only key may not resolve
    _error(reader.post(url, {"strategy": "ignore"}, format="json"), 403, "insufficient_scope")
    mismatch.refresh_from_db()
    assert mismatch.status == "open"


def test_channel_conflict_policy_is_read_and_changed_through_the_channel_api(vendor, make_client):
    admin_api = make_client(("read", "write", "admin"))
    channel = ChannelFactory(vendor=vendor)
    url = f"/api/v1/channels/{channel.pk}/"

    assert admin_api.get(url).json()["conflict_policy"] == "use_ours"
    changed = admin_api.patch(url, {"conflict_policy": "manual"}, format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["conflict_policy"] == "manual"
    assert Channel.objects.get(pk=channel.pk).conflict_policy == "manual"
    _error(
        admin_api.patch(url, {"conflict_policy": "ignore"}, format="json"), 400, "validation_error"
    )
