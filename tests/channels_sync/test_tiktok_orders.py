"""TikTok Shop and Tokopedia & Shop orders: notifications, order search and detail, both
through the adapter against the sandbox over real HTTP."""

import hashlib
import json
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from channels_sync.adapters.base import AdapterError, OrderStatus, Outcome
from channels_sync.adapters.tiktok import ORDER_STATUSES, TikTokAdapter, TokopediaAdapter
from channels_sync.models import Channel, ChannelListing
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import Fault, SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.channels_sync.conftest import listing_keys
from tests.inventory.factories import ProductFactory

DOCUMENTED = [
    "UNPAID",
    "ON_HOLD",
    "AWAITING_SHIPMENT",
    "PARTIALLY_SHIPPING",
    "AWAITING_COLLECTION",
    "IN_TRANSIT",
    "DELIVERED",
    "COMPLETED",
    "CANCELLED",
    "CANCEL",
]


class Receiver(SandboxApp):
    """A webhook endpoint that records every request and answers 200 with an empty body."""

    name = "receiver"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(200, b"", content_type="text/plain")


@pytest.fixture(scope="module")
def _receiver_server() -> Iterator[SandboxServer]:
    with SandboxServer(Receiver()) as server:
        yield server


@pytest.fixture
def receiver(_receiver_server) -> SandboxServer:
    _receiver_server.app.reset()
    return _receiver_server


def channel_url(channel: Channel) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/{channel.type}/{channel.pk}/"


@pytest.fixture(params=["tiktok", "tokopedia"])
def shop(request, wire, receiver):
    """(server, channel, adapter) for a TikTok Shop or a Tokopedia & Shop channel whose
    sandbox notifies the receiver."""
    server = request.getfixturevalue(request.param)
    channel = wire(server, request.param, products=())
    server.app.configure(webhook_url=f"{receiver.url}/webhooks/{channel.type}/{channel.pk}/")
    return server, channel, channel_adapter(channel)


def line(n: int, quantity: int, price: str = "12.50") -> dict:
    keys = listing_keys("tiktok", n)
    return {"keys": keys, "sku": f"SELLER-{n}", "quantity": quantity, "price": price}


def received(receiver: SandboxServer) -> list[SandboxRequest]:
    return list(receiver.app.requests)


# --- notifications ---------------------------------------------------------------------------


def test_tiktok_notification_verifies_with_the_adapter_and_parses_to_the_order_event(
    shop, receiver
):
    server, channel, adapter = shop
    # when
    order = server.app.order_create(lines=[line(1, 2)], status="AWAITING_SHIPMENT")
    # then
    [request] = received(receiver)
    assert adapter.webhook_verify(
        headers=request.headers, body=request.body, url=channel_url(channel)
    )
    event = adapter.webhook_parse(body=request.body)
    assert event.topic == "order"
    assert event.order_id == order.order_id
    assert event.status == "AWAITING_SHIPMENT"
    assert event.updated_at == datetime.fromtimestamp(int(order.updated), tz=UTC)
    assert event.event_key == json.loads(request.body)["tts_notification_id"]
    assert adapter.order_status(event.status) == OrderStatus.PAID


def test_tiktok_notification_with_a_bad_signature_fails_verification(shop, receiver):
    server, channel, adapter = shop
    server.app.order_create(
        lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(bad_signature=True)
    )
    [request] = received(receiver)
    assert not adapter.webhook_verify(
        headers=request.headers, body=request.body, url=channel_url(channel)
    )
    # The body itself is a real notification: only the key was wrong.
    assert adapter.webhook_parse(body=request.body).topic == "order"


def test_tiktok_notification_of_a_cancelled_order_uses_the_webhook_spelling(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(lines=[line(1, 1)], status="AWAITING_SHIPMENT")
    server.app.order_update(order.order_id, status="CANCELLED")
    event = adapter.webhook_parse(body=received(receiver)[-1].body)
    assert event.status == "CANCEL"
    assert adapter.order_status(event.status) == OrderStatus.CANCELLED


def test_tiktok_notification_keys_are_stable_per_change_and_differ_between_changes(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(lines=[line(1, 1)], status="UNPAID")
    # when: the same change notified again, then two later changes
    server.app.notify(order, NotifyFaults())
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    first, again, paid, paid_later = (
        adapter.webhook_parse(body=request.body) for request in received(receiver)
    )
    # then
    assert first.event_key == again.event_key
    assert len({first.event_key, paid.event_key, paid_later.event_key}) == 3
    assert paid.status == paid_later.status
    assert paid_later.updated_at > paid.updated_at


def test_tiktok_webhook_parse_without_a_notification_id_keys_by_order_status_and_time():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})

    def body(status: str, update_time: int) -> bytes:
        data = {"order_id": "576486316948490001", "order_status": status}
        return json.dumps({"type": 1, "data": {**data, "update_time": update_time}}).encode()

    one = adapter.webhook_parse(body=body("UNPAID", 1644412885))
    assert one.topic == "order"
    assert one.event_key == adapter.webhook_parse(body=body("UNPAID", 1644412885)).event_key
    assert one.event_key != adapter.webhook_parse(body=body("UNPAID", 1644412886)).event_key
    assert one.event_key != adapter.webhook_parse(body=body("ON_HOLD", 1644412885)).event_key


def test_tiktok_webhook_parse_cancellation_request_is_an_order_event_that_changes_nothing():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    body = json.dumps(
        {
            "type": 11,
            "tts_notification_id": "7327112393057371910",
            "shop_id": "7494049642642441621",
            "timestamp": 1644412885,
            "data": {
                "order_id": "576486316948490001",
                "cancellations_role": "BUYER",
                "cancel_status": "CANCELLATION_REQUEST_PENDING",
                "cancel_id": "4035318504086604100",
                "create_time": 1627587600,
            },
        }
    ).encode()
    event = adapter.webhook_parse(body=body)
    assert event.topic == "order"
    assert event.event_key == "7327112393057371910"
    assert event.order_id == "576486316948490001"
    assert event.status == "CANCELLATION_REQUEST_PENDING"
    assert event.updated_at == datetime.fromtimestamp(1627587600, tz=UTC)
    assert adapter.order_status(event.status) is None


def test_tiktok_webhook_parse_other_types_and_unreadable_bodies():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    package = json.dumps(
        {
            "type": 4,
            "tts_notification_id": "7327112393057371911",
            "data": {"package_id": "1", "update_time": 1627587600},
        }
    ).encode()
    event = adapter.webhook_parse(body=package)
    assert (event.topic, event.event_key, event.order_id) == ("other", "7327112393057371911", "")
    # an inventory status change without both ids names no listing
    inventory = json.dumps(
        {"type": 27, "tts_notification_id": "7327112393057371912", "data": {"sku_id": "2"}}
    ).encode()
    assert adapter.webhook_parse(body=inventory).topic == "other"
    for body in (b"not json", b"\xff\xfe", b"[1, 2]", b"{}", b"[" * 100_000, b""):
        event = adapter.webhook_parse(body=body)
        assert event.topic == "unreadable"
        assert event.event_key == hashlib.sha256(body).hexdigest()


def test_tiktok_webhook_ack_is_200_with_an_empty_body():
    assert TikTokAdapter.webhook_ack[:2] == (200, b"")
    assert TokopediaAdapter.webhook_ack[:2] == (200, b"")


# --- delivery faults -------------------------------------------------------------------------


def test_tiktok_notification_copies_arrive_with_one_key(shop, receiver):
    server, _, adapter = shop
    server.app.order_create(lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(copies=3))
    keys = {adapter.webhook_parse(body=request.body).event_key for request in received(receiver)}
    assert len(received(receiver)) == 3
    assert len(keys) == 1


def test_tiktok_dropped_notification_never_arrives_but_the_order_search_finds_it(shop, receiver):
    server, _, adapter = shop
    before = datetime.now(tz=UTC) - timedelta(seconds=2)
    order = server.app.order_create(
        lines=[line(1, 1)], status="AWAITING_SHIPMENT", faults=NotifyFaults(drop=True)
    )
    assert received(receiver) == []
    assert server.app.deliveries[-1].error == "dropped"
    refs = adapter.orders_updated(since=before, until=datetime.now(tz=UTC) + timedelta(seconds=2))
    assert [ref.external_id for ref in refs] == [order.order_id]


def test_tiktok_held_notification_released_later_arrives_out_of_order(shop, receiver):
    server, _, adapter = shop
    order = server.app.order_create(
        lines=[line(1, 1)], status="UNPAID", faults=NotifyFaults(hold=True)
    )
    server.app.order_update(order.order_id, status="AWAITING_SHIPMENT")
    assert len(received(receiver)) == 1
    # when
    [delivery] = server.app.notifications_release()
    # then: the older change arrives last
    assert delivery.http_status == 200
    paid, unpaid = (adapter.webhook_parse(body=request.body) for request in received(receiver))
    assert (paid.status, unpaid.status) == ("AWAITING_SHIPMENT", "UNPAID")
    assert unpaid.updated_at < paid.updated_at
    assert server.app.held == []


def test_tiktok_sandbox_order_control_routes_create_and_update(shop, receiver):
    import requests

    server, _, adapter = shop
    created = requests.post(
        f"{server.url}/_sandbox/orders",
        json={"lines": [line(1, 2)], "status": "UNPAID"},
        timeout=10,
    )
    assert created.status_code == 201
    order_id = created.json()["order_id"]
    assert len(order_id) == 18
    assert order_id.isdigit()
    updated = requests.post(
        f"{server.url}/_sandbox/orders/{order_id}",
        json={"status": "AWAITING_SHIPMENT", "faults": {"copies": 2}},
        timeout=10,
    )
    assert updated.status_code == 200
    assert updated.json()["paid"] is not None
    statuses = [adapter.webhook_parse(body=r.body).status for r in received(receiver)]
    assert statuses == ["UNPAID", "AWAITING_SHIPMENT", "AWAITING_SHIPMENT"]


# --- statuses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("UNPAID", OrderStatus.PENDING_PAYMENT),
        ("ON_HOLD", OrderStatus.PAID),
        ("AWAITING_SHIPMENT", OrderStatus.PAID),
        ("PARTIALLY_SHIPPING", OrderStatus.READY_TO_SHIP),
        ("AWAITING_COLLECTION", OrderStatus.READY_TO_SHIP),
        ("IN_TRANSIT", OrderStatus.SHIPPED),
        ("DELIVERED", OrderStatus.DELIVERED),
        ("COMPLETED", OrderStatus.COMPLETED),
        ("CANCELLED", OrderStatus.CANCELLED),
        ("CANCEL", OrderStatus.CANCELLED),
        ("cancel", OrderStatus.CANCELLED),
        ("CANCELLATION_REQUEST_PENDING", None),
        ("CANCELLATION_REQUEST_CANCELLED", None),
        ("CANCELLATION_REQUEST_SUCCESS", None),
        ("CANCELLATION_REQUEST_COMPLETE", None),
        ("SOMETHING_NEW", None),
        ("", None),
    ],
)
def test_tiktok_order_status_maps_every_documented_status(raw, expected):
    assert TikTokAdapter.order_status(raw) == expected
    assert TokopediaAdapter.order_status(raw) == expected


def test_tiktok_order_status_table_covers_every_documented_order_status():
    for raw in DOCUMENTED:
        assert ORDER_STATUSES[raw] is not None


# --- order search ----------------------------------------------------------------------------


def window(seconds: float = 5) -> dict:
    now = datetime.now(tz=UTC)
    return {"since": now - timedelta(seconds=seconds), "until": now + timedelta(seconds=seconds)}


def calls(server: SandboxServer, path: str) -> list[SandboxRequest]:
    return [request for request in server.app.requests if request.path == path]


def test_tiktok_orders_updated_walks_every_page(shop):
    server, _, adapter = shop
    server.app.configure(order_page_size=2)
    created = [
        server.app.order_create(lines=[line(n, 1)], status="AWAITING_SHIPMENT").order_id
        for n in range(5)
    ]
    # when
    refs = adapter.orders_updated(**window())
    # then
    assert sorted(ref.external_id for ref in refs) == sorted(created)
    assert {ref.raw_status for ref in refs} == {"AWAITING_SHIPMENT"}
    searches = calls(server, "/order/202309/orders/search")
    assert len(searches) == 3
    assert "page_token" not in searches[0].query
    assert all("page_token" in request.query for request in searches[1:])
    assert {request.query["page_size"][0] for request in searches} == {"100"}
    assert {request.query["sort_field"][0] for request in searches} == {"update_time"}


def test_tiktok_orders_updated_filters_by_update_time(shop):
    server, _, adapter = shop
    now = time.time()
    old, inside, late = (
        server.app.order_create(lines=[line(n, 1)], status="UNPAID") for n in range(3)
    )
    old.updated = now - 3600
    late.updated = now + 3600
    since = datetime.fromtimestamp(now - 60, tz=UTC)
    until = datetime.fromtimestamp(now + 60, tz=UTC)
    # when
    refs = adapter.orders_updated(since=since, until=until)
    # then
    assert [ref.external_id for ref in refs] == [inside.order_id]
    assert refs[0].updated_at == datetime.fromtimestamp(int(inside.updated), tz=UTC)
    [search] = calls(server, "/order/202309/orders/search")
    assert json.loads(search.body) == {
        "update_time_ge": int(now - 60),
        "update_time_lt": math.ceil(now + 60),
    }


def test_tiktok_orders_updated_with_no_orders_is_empty(shop):
    server, _, adapter = shop
    assert adapter.orders_updated(**window()) == []
    assert len(calls(server, "/order/202309/orders/search")) == 1


def search_page(orders: list[dict], token: str) -> str:
    data = {"orders": orders, "next_page_token": token, "total_count": 9}
    return json.dumps({"code": 0, "message": "Success", "data": data})


def test_tiktok_orders_updated_stops_at_an_empty_page_even_with_a_token(shop):
    server, _, adapter = shop
    server.app.inject(Fault(status=200, body=search_page([], "more")))
    assert adapter.orders_updated(**window()) == []
    assert len(calls(server, "/order/202309/orders/search")) == 1


def test_tiktok_orders_updated_refuses_a_page_token_that_comes_back(shop):
    server, _, adapter = shop
    page = search_page([{"id": "576000000000000001", "status": "UNPAID"}], "same")
    server.app.inject(Fault(status=200, body=page, count=3))
    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(**window())
    assert caught.value.outcome == Outcome.RETRYABLE
    assert len(calls(server, "/order/202309/orders/search")) == 2


# --- order detail ----------------------------------------------------------------------------


def test_tiktok_orders_fetch_lines_match_the_channels_listings(request, wire, receiver):
    for channel_type in ("tiktok", "tokopedia"):
        server = request.getfixturevalue(channel_type)
        server.app.configure(webhook_url=f"{receiver.url}/webhooks/")
        channel = wire(server, channel_type, products=ProductFactory.create_batch(2))
        adapter = channel_adapter(channel)
        listings = list(ChannelListing.objects.filter(channel=channel).order_by("pk"))
        lines = [
            {
                "keys": adapter.keys_from_listing(listing),
                "sku": listing.product.sku,
                "quantity": quantity,
                "price": price,
            }
            for listing, quantity, price in zip(listings, (3, 1), ("12.50", "7.00"), strict=True)
        ]
        order = server.app.order_create(lines=lines, status="AWAITING_SHIPMENT")
        # when
        [fetched] = adapter.orders_fetch([order.order_id])
        # then: one row per unit on the wire, one line per SKU here
        assert len(fetched.raw["line_items"]) == 4
        assert fetched.external_id == order.order_id
        assert fetched.raw_status == "AWAITING_SHIPMENT"
        assert fetched.status == OrderStatus.PAID
        assert fetched.paid_at == datetime.fromtimestamp(int(order.paid), tz=UTC)
        assert fetched.placed_at == datetime.fromtimestamp(int(order.created), tz=UTC)
        assert fetched.amount == Decimal("44.50")
        assert fetched.currency == server.app.currency
        assert fetched.customer["name"] == "Sandbox Buyer"
        by_key = {line.line_key: line for line in fetched.lines}
        assert len(by_key) == 2
        for listing, quantity, price in zip(listings, (3, 1), ("12.50", "7.00"), strict=True):
            found = by_key[listing.external_variant_id]
            assert found.quantity == Decimal(quantity)
            assert found.unit_price == Decimal(price)
            assert found.sku == listing.product.sku
            assert found.keys == {
                "product_id": listing.external_item_id,
                "sku_id": listing.external_variant_id,
            }
            match = ChannelListing.objects.get(
                channel=channel, **adapter.keys_to_columns(found.keys)
            )
            assert match.pk == listing.pk


def test_tiktok_orders_fetch_unpaid_and_cancelled(shop):
    server, _, adapter = shop
    unpaid = server.app.order_create(lines=[line(1, 2)], status="UNPAID")
    cancelled = server.app.order_create(lines=[line(2, 1)], status="AWAITING_SHIPMENT")
    server.app.order_update(cancelled.order_id, status="CANCELLED")
    fetched = {
        o.external_id: o for o in adapter.orders_fetch([unpaid.order_id, cancelled.order_id])
    }
    assert fetched[unpaid.order_id].status == OrderStatus.PENDING_PAYMENT
    assert fetched[unpaid.order_id].paid_at is None
    assert fetched[unpaid.order_id].lines[0].quantity == Decimal(2)
    assert fetched[cancelled.order_id].status == OrderStatus.CANCELLED
    assert fetched[cancelled.order_id].updated_at == datetime.fromtimestamp(
        int(cancelled.updated), tz=UTC
    )


def test_tiktok_orders_fetch_batches_fifty_ids_and_leaves_unknown_ones_out(shop):
    server, _, adapter = shop
    ids = [
        server.app.order_create(lines=[line(n % 3, 1)], status="UNPAID").order_id
        for n in range(120)
    ]
    # when
    fetched = adapter.orders_fetch([*ids, "576000000000000000", ids[0]])
    # then
    assert sorted(order.external_id for order in fetched) == sorted(ids)
    details = calls(server, "/order/202309/orders")
    sizes = [len(request.query["ids"][0].split(",")) for request in details]
    assert sizes == [50, 50, 21]


def test_tiktok_orders_fetch_of_nothing_makes_no_call(shop):
    server, _, adapter = shop
    assert adapter.orders_fetch([]) == []
    assert server.app.requests == []


# --- errors ----------------------------------------------------------------------------------


def order_calls(adapter):
    return [
        lambda: adapter.orders_updated(**window()),
        lambda: adapter.orders_fetch(["576000000000000001"]),
    ]


def test_tiktok_order_calls_with_a_revoked_token_are_auth(shop):
    server, _, adapter = shop
    server.app.revoke()
    for call in order_calls(adapter):
        with pytest.raises(AdapterError) as caught:
            call()
        # TikTok answers an unknown token as a bad one (36009004 naming the token header):
        # refresh, and the refused refresh asks for re-authorisation.
        assert caught.value.outcome == Outcome.AUTH
        assert caught.value.token_expired is True
        assert "36009004" in str(caught.value)


def test_tiktok_order_calls_with_an_expired_token_are_auth_to_refresh(shop):
    server, _, adapter = shop
    server.app.expire_tokens()
    for call in order_calls(adapter):
        with pytest.raises(AdapterError) as caught:
            call()
        assert caught.value.outcome == Outcome.AUTH
        assert caught.value.token_expired is True
    # then: a refreshed token goes through
    adapter.token_refresh()
    assert adapter.orders_fetch(["576000000000000001"]) == []


def test_tiktok_order_calls_throttled(shop):
    server, _, adapter = shop
    body = json.dumps({"code": 36009002, "message": "Too many requests.", "request_id": "x"})
    for call in order_calls(adapter):
        server.app.inject(Fault(status=429, body=body, headers={"Retry-After": "3"}))
        with pytest.raises(AdapterError) as caught:
            call()
        assert caught.value.outcome == Outcome.THROTTLED
        assert caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, '{"code": 36009003, "message": "Internal error"}'),
        (503, "Service Unavailable"),
        (200, '{"code": 36009007, "message": "Request timeout, please try again"}'),
        (200, "<html>gateway</html>"),
    ],
)
def test_tiktok_order_calls_server_errors_are_retryable(shop, status, body):
    server, _, adapter = shop
    for call in order_calls(adapter):
        server.app.inject(Fault(status=status, body=body))
        with pytest.raises(AdapterError) as caught:
            call()
        assert caught.value.outcome == Outcome.RETRYABLE


def test_tiktok_order_calls_transport_failure_is_retryable(shop):
    _, channel, _ = shop
    with SandboxServer(Receiver()) as gone:
        url = gone.url
    adapter = TikTokAdapter(base_url=url, credentials=channel.credentials, timeout=2)
    for call in order_calls(adapter):
        with pytest.raises(AdapterError) as caught:
            call()
        assert caught.value.outcome == Outcome.RETRYABLE


def test_tiktok_order_calls_refused_request_is_permanent(shop):
    server, _, adapter = shop
    body = '{"code": 21011001, "message": "Order does not exist"}'
    for call in order_calls(adapter):
        server.app.inject(Fault(status=200, body=body))
        with pytest.raises(AdapterError) as caught:
            call()
        assert caught.value.outcome == Outcome.PERMANENT


def test_tiktok_order_calls_with_a_wrong_secret_are_refused_as_a_bad_signature(shop):
    server, channel, _ = shop
    adapter = TikTokAdapter(
        base_url=server.url, credentials={**channel.credentials, "app_secret": "wrong"}
    )
    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(**window())
    assert caught.value.outcome == Outcome.AUTH
    assert "106001" in str(caught.value)
    assert server.app.counts["bad_signature"] == 1


# --- the sandbox's own checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"page_size": "0"}, b"{}"),
        ({"page_size": "101"}, b"{}"),
        ({}, b"{}"),
        ({"page_size": "10", "page_token": "not-a-token"}, b"{}"),
        ({"page_size": "10", "sort_field": "price"}, b"{}"),
        ({"page_size": "10"}, b'{"update_time_ge": "yesterday"}'),
        ({"page_size": "10"}, b"[]"),
    ],
)
def test_tiktok_sandbox_order_search_refuses_bad_parameters(tiktok, wire, params, body):
    adapter = channel_adapter(wire(tiktok, "tiktok"))
    response, _ = adapter._signed("POST", "/order/202309/orders/search", body, params)
    assert response.status_code == 400
    assert response.json()["code"] == 36009004


@pytest.mark.parametrize("count", [0, 51])
def test_tiktok_sandbox_order_detail_takes_one_to_fifty_ids(tiktok, wire, count):
    adapter = channel_adapter(wire(tiktok, "tiktok"))
    ids = ",".join(str(576000000000000000 + n) for n in range(count))
    response, _ = adapter._signed("GET", "/order/202309/orders", b"", {"ids": ids} if ids else {})
    assert response.status_code == 400
    assert response.json()["code"] == 36009004


def test_tiktok_sandbox_order_search_filters_by_status_and_sorts(tiktok, wire, receiver):
    tiktok.app.configure(webhook_url=receiver.url)
    adapter = channel_adapter(wire(tiktok, "tiktok"))
    first = tiktok.app.order_create(lines=[line(1, 1)], status="UNPAID")
    second = tiktok.app.order_create(lines=[line(2, 1)], status="UNPAID")
    tiktok.app.order_create(lines=[line(3, 1)], status="AWAITING_SHIPMENT")
    first.created -= 10
    response, _ = adapter._signed(
        "POST",
        "/order/202309/orders/search",
        b'{"order_status": "UNPAID"}',
        {"page_size": "10", "sort_field": "create_time", "sort_order": "DESC"},
    )
    data = response.json()["data"]
    assert [order["id"] for order in data["orders"]] == [second.order_id, first.order_id]
    assert data["total_count"] == 2
    assert data["next_page_token"] == ""


def test_tiktok_sandbox_configure_refuses_a_bad_order_page_size(tiktok):
    with pytest.raises(ValueError, match="order_page_size"):
        tiktok.app.configure(order_page_size=0)
    assert tiktok.app.configure(order_page_size=3)["order_page_size"] == 3
    # Other options leave it as it is.
    assert tiktok.app.configure(latency=0)["order_page_size"] == 3


# --- hostile notifications and answers --------------------------------------------------------


def notification(**envelope) -> bytes:
    data = {"order_id": "576486316948490001", "order_status": "UNPAID", "update_time": 1644412885}
    message = {"type": 1, "tts_notification_id": "7327112393057371910", "data": data}
    return json.dumps({**message, **envelope}).encode()


HOSTILE_NOTIFICATIONS = [
    notification(tts_notification_id="\ud800"),
    notification(tts_notification_id="73271\u000012393"),
    notification(tts_notification_id="x" * 500),
    notification(data={"order_id": "\u0000", "order_status": "UNPAID"}),
    notification(data={"order_id": "5764\ud800", "order_status": "UNPAID"}),
    notification(tts_notification_id=None, data={"order_id": "\ud800", "order_status": "UNPAID"}),
    notification(data={"order_id": "576486316948490001", "order_status": "UN\u0000PAID"}),
    notification(data={"order_id": "576486316948490001", "update_time": "\ud800"}),
    notification(type=1e300, data={"order_id": "\ud800"}),
    notification(timestamp="9" * 500),
    b"[" * 100_000,
    b'{"type": 1, "data": ' * 5000 + b"1" + b"}" * 5000,
]


@pytest.mark.parametrize("body", HOSTILE_NOTIFICATIONS)
def test_tiktok_webhook_parse_never_raises_on_hostile_bodies(body):
    adapter = TikTokAdapter(base_url="http://unused", credentials={})

    event = adapter.webhook_parse(body=body)

    assert event.topic in {"order", "other", "unreadable"}
    for text in (event.event_key, event.order_id, event.status):
        assert "\x00" not in text
        assert len(text) <= 100
        text.encode("utf-8")  # no lone surrogate
    if event.topic == "order":
        assert event.order_id == "576486316948490001"


def test_tiktok_notification_id_unfit_to_store_keys_by_the_body():
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    body = notification(tts_notification_id="\ud800")

    event = adapter.webhook_parse(body=body)

    assert (event.topic, event.order_id, event.status) == ("order", "576486316948490001", "UNPAID")
    assert event.event_key == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("notification_id", ["7327112393057371910", None])
def test_tiktok_notification_with_an_order_id_unfit_to_store_is_unreadable(notification_id):
    adapter = TikTokAdapter(base_url="http://unused", credentials={})
    body = notification(
        tts_notification_id=notification_id, data={"order_id": "\ud800", "order_status": "UNPAID"}
    )

    event = adapter.webhook_parse(body=body)

    assert (event.topic, event.event_key) == ("unreadable", hashlib.sha256(body).hexdigest())


@pytest.mark.parametrize("missing", ["app_key", "app_secret"])
def test_tiktok_webhook_verify_refuses_every_signature_without_the_signing_keys(missing):
    credentials = {"app_key": "key", "app_secret": "secret", missing: ""}
    adapter = TikTokAdapter(base_url="http://unused", credentials=credentials)
    body = notification()
    signature = adapter.webhook_signature(body=body)

    assert adapter.webhook_verify(headers={"Authorization": signature}, body=body) is False


@pytest.mark.parametrize(
    "answer",
    [
        {"code": 0, "data": {"orders": 5, "next_page_token": ""}},
        {"code": 0, "data": {"orders": {"id": "1"}}},
        {"code": 0, "data": {"orders": "x", "next_page_token": "t"}},
    ],
)
def test_tiktok_orders_updated_odd_answers_are_retryable_adapter_errors(shop, answer):
    server, _, adapter = shop
    server.app.inject(Fault(status=200, body=json.dumps(answer)))

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(**window())

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "`orders` in the answer is not a list" in str(caught.value)


def test_tiktok_order_call_with_a_code_past_a_float_is_an_adapter_error(shop):
    server, _, adapter = shop
    server.app.inject(Fault(status=200, body='{"code": 1e400, "message": "?", "data": {}}'))

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["576000000000000001"])

    assert caught.value.outcome == Outcome.PERMANENT  # an answer with no code we know


def test_tiktok_orders_updated_odd_json_nesting_is_a_retryable_adapter_error(shop):
    server, _, adapter = shop
    server.app.inject(Fault(status=200, body='{"code": 0, "data": ' * 5000 + "1" + "}" * 5000))

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(**window())

    assert caught.value.outcome == Outcome.RETRYABLE


def test_tiktok_orders_updated_stops_after_the_page_cap(shop, monkeypatch):
    # given: a search that mints a fresh page token for every page
    server, _, adapter = shop
    monkeypatch.setattr("channels_sync.adapters.tiktok.ORDER_SEARCH_PAGES_MAX", 5)
    for page in range(6):
        server.app.inject(
            Fault(status=200, body=search_page([{"id": f"57600000000000{page:04d}"}], f"t{page}"))
        )

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(**window())

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "more than 5 pages" in str(caught.value)
    assert len(calls(server, "/order/202309/orders/search")) == 5


def detail_answer(*orders: dict) -> Fault:
    return Fault(status=200, body=json.dumps({"code": 0, "data": {"orders": list(orders)}}))


def row(sku_id: str) -> dict:
    return {"id": f"row-{sku_id}", "sku_id": sku_id, "product_id": "1000", "sale_price": "5.00"}


def detail(order_id: str, status: str, rows: object) -> dict:
    order = {"id": order_id, "status": status, "update_time": 1644412885}
    return order if rows is None else {**order, "line_items": rows}


@pytest.mark.parametrize("rows", [None, [], 5, [{"sku_id": "\u0000"}], ["x"]])
def test_tiktok_orders_fetch_leaves_out_an_order_without_readable_line_items(shop, rows):
    server, _, adapter = shop
    good = detail("576000000000000002", "AWAITING_SHIPMENT", [row("5000")])
    server.app.inject(detail_answer(detail("576000000000000001", "AWAITING_SHIPMENT", rows), good))

    fetched = adapter.orders_fetch(["576000000000000001", "576000000000000002"])

    assert [order.external_id for order in fetched] == ["576000000000000002"]


def test_tiktok_orders_fetch_does_not_count_cancelled_rows_of_a_live_order(shop):
    # given: three units of one SKU (one cancelled by display status, one with a cancel
    # reason) and one unit of another, in an order that goes on; and the same rows in an
    # order cancelled as a whole
    server, _, adapter = shop
    rows = [
        row("5000"),
        {**row("5000"), "display_status": "CANCELLED"},
        {**row("5000"), "cancel_reason": "Out of stock"},
        row("5001"),
    ]
    server.app.inject(
        detail_answer(
            detail("576000000000000001", "AWAITING_SHIPMENT", rows),
            detail("576000000000000002", "CANCELLED", rows),
        )
    )

    live, cancelled = adapter.orders_fetch(["576000000000000001", "576000000000000002"])

    assert [(line.line_key, line.quantity) for line in live.lines] == [
        ("5000", Decimal(1)),
        ("5001", Decimal(1)),
    ]
    assert [(line.line_key, line.quantity) for line in cancelled.lines] == [
        ("5000", Decimal(3)),
        ("5001", Decimal(1)),
    ]


def test_tiktok_orders_fetch_prices_out_of_range_are_none(shop):
    server, _, adapter = shop
    rows = [{**row("5000"), "sale_price": "1e400"}, {**row("5001"), "sale_price": "99999999999"}]
    payment = {"total_amount": "NaN", "currency": "IDR\u0000"}
    order = {**detail("576000000000000001", "AWAITING_SHIPMENT", rows), "payment": payment}
    server.app.inject(detail_answer(order))

    (fetched,) = adapter.orders_fetch(["576000000000000001"])

    assert [line.unit_price for line in fetched.lines] == [None, None]
    assert (fetched.amount, fetched.currency) == (None, "")


def test_tiktok_orders_updated_lets_a_task_time_limit_through(tiktok, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from channels_sync.adapters.tiktok import TikTokAdapter

    # given the task's soft time limit lands during the call
    adapter = TikTokAdapter(base_url=tiktok.url, credentials=tiktok.app.credentials())

    def out_of_time(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(adapter, "_signed", out_of_time)
    # then it is not turned into a marketplace failure
    now = datetime.now(UTC)
    with pytest.raises(SoftTimeLimitExceeded):
        adapter.orders_updated(since=now - timedelta(hours=1), until=now)
