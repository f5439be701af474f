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
    # pushed 10 and settled: the mismatch's figures still describe it
    listing = ChannelListingFactory(
        channel=channel, dirty=False, last_pushed_quantity=10, last_pushed_at=timezone.now()
    )
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


def test_conflict_detail_shows_its_history(
    make_shop, reader, api, django_capture_on_commit_callbacks
):
    # given: a mismatch opened, seen again with another figure, then resolved
    shop = make_shop(10)
    conflict = shop.mismatch(7)
    shop.mismatch(6)
    with django_capture_on_commit_callbacks(execute=True):
        resolved = api.post(
            f"{URL}{conflict.pk}/resolve/", {"strategy": "use_ours", "note": "n1"}, format="json"
        )
    assert resolved.status_code == 200, resolved.content

    body = reader.get(f"{URL}{conflict.pk}/").json()

    assert body["id"] == conflict.pk
    events = [
        {key: event[key] for key in ("action", "actor", "ours", "theirs", "strategy", "note")}
        for event in body["events"]
    ]
    assert events == [
        {
            "action": "opened",
            "actor": "system",
            "ours": "10.000",
            "theirs": "7.000",
            "strategy": "",
            "note": "",
        },
        {
            "action": "updated",
            "actor": "system",
            "ours": "10.000",
            "theirs": "6.000",
            "strategy": "",
            "note": "",
        },
        {
            "action": "resolved",
            "actor": "api_key:test client",
            "ours": "10.000",
            "theirs": "6.000",
            "strategy": "use_ours",
            "note": "n1",
        },
    ]
    assert body["events"][2]["value"] == "10.000"
    assert all(event["correlation_id"] for event in body["events"][2:])


@pytest.mark.parametrize("bad", ["abc", "0", str(2**63), "-1", "1e3"])
def test_conflict_unknown_ids_are_not_found(conflicts, api, bad):
    _error(api.get(f"{URL}{bad}/"), 404, "conflict_not_found")
    _error(
        api.post(f"{URL}{bad}/resolve/", {"strategy": "ignore"}, format="json"),
        404,
        "conflict_not_found",
    )


def test_conflict_ids_are_found_only_when_written_canonically(conflicts, api):
    pk = conflicts["mismatch"].pk
    arabic = str(pk).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert api.get(f"{URL}{pk}/").status_code == 200
    for spelling in (f"0{pk}", f"+{pk}", arabic, f"{pk}%20", f"%20{pk}", f"{pk}_0"):
        _error(api.get(f"{URL}{spelling}/"), 404, "conflict_not_found")
        _error(
            api.post(f"{URL}{spelling}/resolve/", {"strategy": "ignore"}, format="json"),
            404,
            "conflict_not_found",
        )
    assert conflicts["mismatch"].events.count() == 0


def _documented(status: int) -> str:
    """The error codes the schema gives for the resolve endpoint's `status` answers."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/conflicts/{id}/resolve/"]["post"]
    return operation["responses"][str(status)]["description"]


def test_conflict_resolve_refusals_to_move_stock_are_409_and_documented(make_shop, api, vendor):
    from channels_sync.models import ChannelListing
    from erp_mapping.services.agents import agent_register
    from tests.channels_sync.factories import AllocationRuleFactory

    documented = _documented(409)
    # a listing changed since the conflict was seen (a push pending)
    stale_shop = make_shop(10)
    stale = stale_shop.mismatch(7)
    ChannelListing.objects.filter(pk=stale_shop.listing.pk).update(dirty=True)
    body = _error(
        api.post(f"{URL}{stale.pk}/resolve/", {"strategy": "use_theirs"}, format="json"),
        409,
        "conflict_stale",
    )
    assert body["message"] == "The listing changed since the conflict was seen; reconcile it again."
    assert "`conflict_stale`" in documented
    # an allocation rule that does not show the pool one for one
    ruled_shop = make_shop(10)
    ruled = ruled_shop.mismatch(7)
    AllocationRuleFactory(channel=ruled_shop.channel, max_shown=8)
    body = _error(
        api.post(f"{URL}{ruled.pk}/resolve/", {"strategy": "set_value", "value": 3}, format="json"),
        409,
        "strategy_not_applicable",
    )
    assert "channel rule: all, max shown 8" in body["message"]
    # a vendor whose stock comes from its ERP
    agent_register(vendor=vendor, agent_url="http://agent.test", erp_type="convex")
    body = _error(
        api.post(f"{URL}{stale.pk}/resolve/", {"strategy": "use_theirs"}, format="json"),
        409,
        "erp_managed_stock",
    )
    assert "correct it there, or use ours" in body["message"]
    assert "`erp_managed_stock`" in documented
    # use ours always applies
    assert (
        api.post(f"{URL}{stale.pk}/resolve/", {"strategy": "use_ours"}, format="json").status_code
        == 200
    )


def test_conflict_resolve_quantity_out_of_range_is_400_and_documented(make_shop, api):
    from decimal import Decimal

    from channels_sync.services.push import channel_push
    from inventory.services import stock_reserve
    from tests.channels_sync.conflict_fixtures import ORIGIN

    # given: 5 on hand, a huge reservation (0 shown); the value asked for would take on hand
    # past the largest quantity
    shop = make_shop(5)
    shop.product.allow_negative_stock = True
    shop.product.save(update_fields=["allow_negative_stock"])
    huge = Decimal("99999999999")
    stock_reserve(product=shop.product, warehouse=shop.warehouse, quantity=huge, origin=ORIGIN)
    channel_push(channel_id=shop.channel.pk)
    conflict = shop.mismatch(3)

    response = api.post(
        f"{URL}{conflict.pk}/resolve/",
        {"strategy": "set_value", "value": str(huge)},
        format="json",
    )

    _error(response, 400, "quantity_out_of_range")
    assert "`quantity_out_of_range`" in _documented(400)
    conflict.refresh_from_db()
    assert conflict.status == "open"


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
