"""Lazada orders: push notifications, the order list and detail, against the Lazada sandbox
over real HTTP on localhost."""

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
from django.conf import settings

from channels_sync.adapters.base import AdapterError, ChannelEvent, OrderStatus, Outcome
from channels_sync.adapters.lazada import (
    ORDER_STATUSES,
    LazadaAdapter,
    lazada_time,
    market_order,
    order_status_of,
    push_event,
    signed_params,
)
from channels_sync.models import ChannelListing
from channels_sync.sandbox.base import NotifyFaults
from channels_sync.services.tokens import channel_adapter
from core.sandbox import Fault, SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.channels_sync.conftest import listing_keys
from tests.inventory.factories import ProductFactory


class Receiver(SandboxApp):
    """A webhook endpoint that records what it is sent and answers 200 with no body."""

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


@pytest.fixture
def channel(lazada, wire, receiver):
    """A Lazada channel on the sandbox, which pushes to the receiver."""
    channel = wire(lazada, "lazada")
    lazada.app.configure(webhook_url=f"{receiver.url}/webhooks/lazada/{channel.pk}/")
    return channel


def webhook_url(channel) -> str:
    return f"{settings.PUBLIC_BASE_URL}/webhooks/lazada/{channel.pk}/"


def line(n: int, quantity: int = 1, price: str = "10.00") -> dict:
    keys = listing_keys("lazada", n)
    return {
        "keys": {"item_id": keys["item_id"], "sku_id": keys["sku_id"]},
        "sku": keys["seller_sku"],
        "quantity": quantity,
        "price": price,
    }


def received(receiver) -> list[SandboxRequest]:
    return list(receiver.app.requests)


# --- notifications ----------------------------------------------------------------------------


def test_lazada_notification_verifies_and_parses_to_the_order_event(lazada, channel, receiver):
    # given
    adapter = channel_adapter(channel)

    # when
    order = lazada.app.order_create(lines=[line(0, quantity=2)], status="pending")

    # then
    (request,) = received(receiver)
    assert request.path == f"/webhooks/lazada/{channel.pk}/"
    url = webhook_url(channel)
    assert adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
    message = json.loads(request.body)
    assert message["message_type"] == 0
    assert message["data"]["trade_order_id"] == order.order_id
    event = adapter.webhook_parse(body=request.body)
    assert event.topic == "order"
    assert event.order_id == order.order_id
    assert event.status == "pending"
    assert event.updated_at == datetime.fromtimestamp(int(order.updated), tz=UTC)
    assert event.updated_at.tzinfo is UTC
    assert len(event.event_key) == 64
    assert adapter.webhook_ack == (200, b"", "text/plain")


def test_lazada_notification_with_a_bad_signature_fails_verification(lazada, channel, receiver):
    adapter = channel_adapter(channel)

    lazada.app.order_create(
        lines=[line(0)], status="unpaid", faults=NotifyFaults(bad_signature=True)
    )

    (request,) = received(receiver)
    assert not adapter.webhook_verify(
        headers=request.headers, body=request.body, url=webhook_url(channel)
    )
    assert lazada.app.deliveries[-1].bad_signature
    # The same body signed by the sandbox with the right key does verify.
    assert adapter.webhook_verify(
        headers=lazada.app.push_headers(request.body), body=request.body, url=webhook_url(channel)
    )


def test_lazada_notification_ids_look_like_lazadas(lazada, channel, receiver):
    order = lazada.app.order_create(lines=[line(0), line(1, quantity=3)], status="unpaid")

    data = json.loads(received(receiver)[0].body)["data"]
    assert order.order_id.isdigit()
    assert len(order.order_id) == 15
    assert data["trade_order_line_id"].isdigit()
    assert data["trade_order_line_id"] != order.order_id
    assert isinstance(data["status_update_time"], int)
    assert lazada.app.status_is_paid("unpaid") is False
    assert lazada.app.status_is_paid("pending") is True


def test_lazada_event_keys_are_stable_for_the_same_change_and_differ_otherwise(
    lazada, channel, receiver
):
    adapter = channel_adapter(channel)
    order = lazada.app.order_create(lines=[line(0)], status="unpaid", faults=NotifyFaults(copies=2))
    lazada.app.order_update(order.order_id, status="pending")
    lazada.app.order_update(order.order_id, status="pending")

    events = [adapter.webhook_parse(body=request.body) for request in received(receiver)]

    assert [event.status for event in events] == ["unpaid", "unpaid", "pending", "pending"]
    keys = [event.event_key for event in events]
    assert keys[0] == keys[1]  # a resent copy
    assert len({keys[1], keys[2], keys[3]}) == 3  # a new status; the same status later
    assert events[2].updated_at < events[3].updated_at


def test_lazada_event_key_is_a_digest_of_order_status_and_time():
    def body(line_id="1", status="pending", stamp=1603698638, order_id="260422900198363"):
        return json.dumps(
            {
                "seller_id": "1",
                "message_type": 0,
                "data": {
                    "order_status": status,
                    "trade_order_id": order_id,
                    "trade_order_line_id": line_id,
                    "status_update_time": stamp,
                },
                "timestamp": 1603766859530,
                "site": "lazada_vn",
            }
        ).encode()

    base = push_event(body())
    # The push time and the JSON layout are not part of the key.
    same = push_event(body().replace(b"1603766859530", b"1603766999999").replace(b", ", b","))

    assert base.event_key == same.event_key
    # Lazada sends one message per order line: the lines of one change make one event.
    assert push_event(body(line_id="2")).event_key == base.event_key
    assert push_event(body(order_id="260422900198364")).event_key != base.event_key
    assert push_event(body(status="packed")).event_key != base.event_key
    assert push_event(body(stamp=1603698639)).event_key != base.event_key
    assert base.updated_at == datetime(2020, 10, 26, 7, 50, 38, tzinfo=UTC)
    assert base.order_id == "260422900198363"


@pytest.mark.parametrize(
    ("body", "topic"),
    [
        (b"not json", "unreadable"),
        (b"\xff\xfe", "unreadable"),
        (b"[1, 2]", "unreadable"),
        (b'{"data": {}}', "unreadable"),
        (b'{"message_type": 0, "data": "x"}', "unreadable"),
        (b'{"message_type": 0, "data": {"order_status": "pending"}}', "unreadable"),
        (b'{"message_type": 0, "data": {"trade_order_id": "1", "order_status": 5}}', "unreadable"),
        (b"[" * 100000, "unreadable"),
        (b'{"message_type": 3, "data": {"item_id": 1}}', "other"),
        (b'{"message_type": 10, "data": {"reverse_order_id": 1}}', "other"),
    ],
)
def test_lazada_webhook_parse_never_raises(body, topic):
    event = push_event(body)

    assert event == ChannelEvent(topic=topic, event_key=hashlib.sha256(body).hexdigest())


def test_lazada_webhook_parse_falls_back_to_the_push_time():
    body = json.dumps(
        {
            "message_type": 0,
            "data": {"order_status": "unpaid", "trade_order_id": 260422900198363},
            "timestamp": 1603766859530,
        }
    ).encode()

    event = push_event(body)

    assert event.topic == "order"
    assert event.order_id == "260422900198363"
    assert event.updated_at == datetime(2020, 10, 27, 2, 47, 39, 530000, tzinfo=UTC)


# --- delivery faults --------------------------------------------------------------------------


def test_lazada_notification_faults_copy_drop_hold_and_release(lazada, channel, receiver):
    adapter = channel_adapter(channel)
    order = lazada.app.order_create(
        lines=[line(0)], status="unpaid", faults=NotifyFaults(hold=True)
    )
    lazada.app.order_update(order.order_id, status="pending", faults=NotifyFaults(copies=3))
    lazada.app.order_update(order.order_id, status="packed", faults=NotifyFaults(drop=True))
    assert [adapter.webhook_parse(body=r.body).status for r in received(receiver)] == [
        "pending",
        "pending",
        "pending",
    ]

    released = lazada.app.notifications_release()

    statuses = [adapter.webhook_parse(body=r.body).status for r in received(receiver)]
    assert statuses == ["pending", "pending", "pending", "unpaid"]  # the held one, late
    assert [d.http_status for d in released] == [200]
    assert ("packed", None, "dropped") in [
        (d.status, d.http_status, d.error) for d in lazada.app.deliveries
    ]
    assert all(
        adapter.webhook_verify(headers=r.headers, body=r.body, url=webhook_url(channel))
        for r in received(receiver)
    )


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("unpaid", OrderStatus.PENDING_PAYMENT),
        ("pending", OrderStatus.PAID),
        ("topack", OrderStatus.PAID),
        ("packed", OrderStatus.READY_TO_SHIP),
        ("ready_to_ship", OrderStatus.READY_TO_SHIP),
        ("ready_to_ship_pending", OrderStatus.READY_TO_SHIP),
        ("toship", OrderStatus.READY_TO_SHIP),
        ("shipped", OrderStatus.SHIPPED),
        ("shipping", OrderStatus.SHIPPED),
        ("lost", OrderStatus.SHIPPED),
        ("delivered", OrderStatus.DELIVERED),
        ("canceled", OrderStatus.CANCELLED),
        ("returned", OrderStatus.RETURNED),
        ("failed", OrderStatus.RETURNED),
        ("Delivered", OrderStatus.DELIVERED),
        ("in_cancel_request", None),
        ("", None),
    ],
)
def test_lazada_order_status_maps_every_documented_status(raw, expected):
    assert LazadaAdapter.order_status(raw) == expected


def test_lazada_order_status_table_is_covered_by_the_test():
    # A status added to the table must be added to the test above too.
    assert set(ORDER_STATUSES) == {
        "unpaid",
        "pending",
        "topack",
        "packed",
        "ready_to_ship",
        "ready_to_ship_pending",
        "toship",
        "shipped",
        "shipping",
        "lost",
        "delivered",
        "canceled",
        "returned",
        "failed",
    }


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["pending", "shipped"], ("pending", OrderStatus.PAID)),
        (["shipped", "canceled"], ("shipped", OrderStatus.SHIPPED)),
        (["canceled", "canceled"], ("canceled", OrderStatus.CANCELLED)),
        (["canceled", "returned"], ("returned", OrderStatus.RETURNED)),
        (["delivered", "failed"], ("delivered", OrderStatus.DELIVERED)),
        (["mystery", "packed"], ("packed", OrderStatus.READY_TO_SHIP)),
        (["mystery"], ("mystery", None)),
        ([], ("", None)),
    ],
)
def test_lazada_order_takes_the_least_advanced_open_item_status(items, expected):
    assert order_status_of(items) == expected


def test_lazada_partly_cancelled_order_counts_only_units_that_go_on():
    items = [
        _item(sku_id=5001, status="pending", paid_price=9.5),
        _item(sku_id=5001, status="canceled"),
        _item(sku_id=5002, status="canceled"),
    ]

    order = market_order({"order_id": 1, "order_number": 1, "statuses": []}, items)

    assert order.status == OrderStatus.PAID
    assert [(line.line_key, line.quantity, line.discount) for line in order.lines] == [
        ("5001", Decimal(1), Decimal("0.5")),
        ("5002", Decimal(0), Decimal(0)),
    ]
    cancelled = market_order(
        {"order_id": 1}, [_item(sku_id=5001, status="canceled") for _ in range(2)]
    )
    assert cancelled.status == OrderStatus.CANCELLED
    assert [line.quantity for line in cancelled.lines] == [Decimal(2)]


def _item(*, sku_id: int, status: str, paid_price: float = 10.0) -> dict:
    return {
        "order_item_id": 1,
        "sku_id": sku_id,
        "product_id": 1000,
        "sku": f"S-{sku_id}",
        "status": status,
        "item_price": 10.0,
        "paid_price": paid_price,
    }


# --- the order list ---------------------------------------------------------------------------


def _orders_at(lazada, stamps: list[int]) -> list[str]:
    """Orders (notifications dropped) whose creation and update are at these Unix seconds."""
    ids = []
    for n, stamp in enumerate(stamps):
        order = lazada.app.order_create(
            lines=[line(n)], status="pending", faults=NotifyFaults(drop=True)
        )
        order.created = order.updated = float(stamp)
        ids.append(order.order_id)
    return ids


def _at(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, tz=UTC)


def _order_list_calls(lazada) -> list[dict[str, str]]:
    return [
        {name: values[0] for name, values in r.query.items()}
        for r in lazada.app.requests
        if r.path.removeprefix("/rest") == "/orders/get"
    ]


def test_lazada_orders_updated_pages_through_every_order(lazada, channel):
    # given: seven orders, three at one second, pages of two
    base = 1_790_000_000
    ids = _orders_at(lazada, [base + 1, base + 2, base + 2, base + 2, base + 3, base + 5, base + 9])
    lazada.app.configure(orders_page_size=2)
    adapter = channel_adapter(channel)

    # when
    refs = adapter.orders_updated(since=_at(base), until=_at(base + 100))

    # then
    assert [ref.external_id for ref in refs] == [
        ids[0],
        *sorted(ids[1:4]),
        ids[4],
        ids[5],
        ids[6],
    ]
    assert {ref.raw_status for ref in refs} == {"pending"}
    assert refs[0].updated_at == _at(base + 1)
    calls = _order_list_calls(lazada)
    assert {(c["sort_by"], c["sort_direction"], c["limit"]) for c in calls} == {
        ("updated_at", "ASC", "100")
    }
    assert all("status" not in c for c in calls)  # every status: `status` is left out
    assert calls[0]["update_before"] == _at(base + 100).isoformat()
    # each page starts at the last second seen, an offset only past a page of one second
    assert [(c["update_after"], c["offset"]) for c in calls] == [
        (_at(base).isoformat(), "0"),
        (_at(base + 2).isoformat(), "0"),
        (_at(base + 2).isoformat(), "2"),
        (_at(base + 3).isoformat(), "0"),
        (_at(base + 5).isoformat(), "0"),
    ]


def test_lazada_orders_updated_keeps_only_the_half_open_range(lazada, channel):
    base = 1_790_000_000
    ids = _orders_at(lazada, [base - 1, base, base + 5, base + 10, base + 11])
    adapter = channel_adapter(channel)

    refs = adapter.orders_updated(since=_at(base), until=_at(base + 10))

    assert [ref.external_id for ref in refs] == [ids[1], ids[2]]
    assert adapter.orders_updated(since=_at(base + 10), until=_at(base + 10)) == []
    later = adapter.orders_updated(since=_at(base + 10), until=_at(base + 12))
    assert [ref.external_id for ref in later] == [ids[3], ids[4]]


def test_lazada_orders_updated_sees_an_order_move_on(lazada, channel):
    lazada.app.configure(webhook_url="")
    base = 1_790_000_000
    (order_id,) = _orders_at(lazada, [base + 1])
    adapter = channel_adapter(channel)
    lazada.app.order_update(order_id, status="packed", faults=NotifyFaults(drop=True))

    (ref,) = adapter.orders_updated(
        since=_at(base), until=_at(int(lazada.app.orders[order_id].updated) + 1)
    )

    assert ref.raw_status == "packed"
    assert ref.updated_at == _at(int(lazada.app.orders[order_id].updated))


# --- the order detail -------------------------------------------------------------------------


def test_lazada_orders_fetch_maps_lines_to_listing_keys(lazada, wire, receiver, warehouse):
    # given: a channel with two listings, an order of three units of one and one of the other
    products = ProductFactory.create_batch(2)
    channel = wire(lazada, "lazada", warehouses=[warehouse], products=products)
    lazada.app.configure(webhook_url=f"{receiver.url}/webhooks/lazada/{channel.pk}/")
    listings = list(ChannelListing.objects.filter(channel=channel).order_by("pk"))
    order = lazada.app.order_create(
        lines=[line(0, quantity=3, price="12.50"), line(1, price="4.00")],
        status="pending",
        buyer={"name": "Siti Aminah", "phone": "+6591234567"},
    )
    adapter = channel_adapter(channel)

    # when
    (fetched,) = adapter.orders_fetch([order.order_id])

    # then
    assert fetched.external_id == order.order_id
    assert fetched.order_number == order.order_id
    assert fetched.raw_status == "pending"
    assert fetched.status == OrderStatus.PAID
    assert fetched.placed_at == _at(int(order.created))
    assert fetched.updated_at == _at(int(order.updated))
    assert fetched.amount == Decimal("41.50")
    assert fetched.currency == "SGD"
    assert fetched.customer == {"first_name": "Siti", "last_name": "Aminah"}
    assert fetched.address["phone"] == "+6591234567"
    assert len(fetched.raw["items"]) == 4  # one item per unit
    first, second = fetched.lines
    assert first.keys == adapter.keys_from_listing(listings[0])
    assert second.keys == adapter.keys_from_listing(listings[1])
    # An order line names the SKU; which warehouse ships it is not a listing key of the line.
    assert set(first.keys) == set(LazadaAdapter.key_columns) - {"warehouse_code"}
    assert (first.line_key, first.sku, first.quantity) == (
        listings[0].external_variant_id,
        listings[0].external_sku,
        Decimal(3),
    )
    assert (first.unit_price, first.discount) == (Decimal("12.5"), Decimal(0))
    assert isinstance(first.quantity, Decimal)
    assert (second.quantity, second.unit_price) == (Decimal(1), Decimal("4.0"))


def test_lazada_orders_fetch_batches_items_fifty_orders_a_call(lazada, channel):
    ids = _orders_at(lazada, [1_790_000_000 + n for n in range(51)])
    adapter = channel_adapter(channel)

    fetched = adapter.orders_fetch([*ids, "999999999999999", ids[0]])

    assert [order.external_id for order in fetched] == ids
    assert all(len(order.lines) == 1 for order in fetched)
    item_calls = [
        r for r in lazada.app.requests if r.path.removeprefix("/rest") == "/orders/items/get"
    ]
    assert [len(json.loads(r.query["order_ids"][0])) for r in item_calls] == [50, 1]
    order_calls = [r for r in lazada.app.requests if r.path.removeprefix("/rest") == "/order/get"]
    assert len(order_calls) == 52  # each known order once, and the unknown one


def test_lazada_orders_fetch_leaves_out_unknown_orders(lazada, channel):
    adapter = channel_adapter(channel)

    assert adapter.orders_fetch(["999999999999999"]) == []
    assert adapter.orders_fetch([]) == []


# --- errors -----------------------------------------------------------------------------------


def test_lazada_order_calls_with_an_expired_token_raise_auth_token_expired(lazada, channel):
    adapter = channel_adapter(channel)
    lazada.app.expire_tokens()

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(since=_at(1_790_000_000), until=_at(1_790_000_100))

    assert caught.value.outcome == Outcome.AUTH
    assert caught.value.token_expired is True


def test_lazada_order_calls_with_a_revoked_token_raise_auth(lazada, channel):
    adapter = channel_adapter(channel)
    lazada.app.revoke()

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["260422900198363"])

    assert caught.value.outcome == Outcome.AUTH
    assert caught.value.token_expired is False


@pytest.mark.parametrize(
    ("status", "body", "outcome", "retry_after"),
    [
        (200, {"code": "901", "message": "API level QPS limiting flow"}, Outcome.THROTTLED, 1.0),
        (
            200,
            {"code": "ApiCallLimit", "message": "ban will last 3 seconds"},
            Outcome.THROTTLED,
            3.0,
        ),
        (429, "", Outcome.THROTTLED, 1.0),
        (502, "<html>Bad Gateway</html>", Outcome.RETRYABLE, None),
        (500, {"code": "6", "message": "Unexpected internal error"}, Outcome.RETRYABLE, None),
        (200, {"code": "ServiceTimeout"}, Outcome.RETRYABLE, None),
        (200, "not json", Outcome.RETRYABLE, None),
        (200, {"code": "InvalidParameter", "message": "Invalid offset"}, Outcome.PERMANENT, None),
        (200, {"code": "IncompleteSignature"}, Outcome.AUTH, None),
    ],
)
def test_lazada_order_call_failures_are_classified(
    lazada, channel, status, body, outcome, retry_after
):
    adapter = channel_adapter(channel)
    text = body if isinstance(body, str) else json.dumps(body)
    lazada.app.inject(Fault(status=status, body=text))

    with pytest.raises(AdapterError) as caught:
        adapter.orders_fetch(["260422900198363"])

    assert caught.value.outcome == outcome
    assert caught.value.retry_after == retry_after
    assert caught.value.token_expired is False


def test_lazada_order_call_transport_failure_is_retryable(lazada, channel):
    channel.base_url = "http://127.0.0.1:9/rest"
    adapter = channel_adapter(channel, timeout=2)

    with pytest.raises(AdapterError) as caught:
        adapter.orders_updated(since=_at(1_790_000_000), until=_at(1_790_000_100))

    assert caught.value.outcome == Outcome.RETRYABLE


# --- the sandbox's order routes ---------------------------------------------------------------


def _signed_get(lazada, path: str, business: dict) -> dict:
    credentials = lazada.app.credentials()
    params = signed_params(
        path,
        business,
        app_key=credentials["app_key"],
        app_secret=credentials["app_secret"],
        access_token=credentials["access_token"],
    )
    return requests.get(f"{lazada.url}/rest{path}", params=params, timeout=5).json()


def test_lazada_sandbox_order_list_refuses_what_lazada_refuses(lazada):
    after = "2026-01-01T00:00:00+08:00"

    assert _signed_get(lazada, "/orders/get", {"limit": 10})["code"] == "MissingParameter"
    assert (
        _signed_get(lazada, "/orders/get", {"update_after": after, "limit": 101})["code"]
        == "InvalidParameter"
    )
    assert _signed_get(lazada, "/orders/get", {"update_after": "yesterday"})["code"] == (
        "InvalidParameter"
    )
    answer = _signed_get(lazada, "/orders/get", {"update_after": after})
    assert answer["code"] == "0"
    assert answer["data"] == {"count": 0, "countTotal": 0, "orders": []}
    too_many = "[" + ",".join(str(n) for n in range(1, 52)) + "]"
    assert _signed_get(lazada, "/orders/items/get", {"order_ids": too_many})["code"] == "38"
    assert _signed_get(lazada, "/orders/items/get", {"order_ids": "1,2"})["code"] == "56"
    unsigned = requests.get(f"{lazada.url}/rest/orders/get", params={"app_key": "x"}, timeout=5)
    assert unsigned.json()["code"] == "InvalidAppKey"


def test_lazada_sandbox_order_detail_and_items_in_lazadas_shapes(lazada):
    lazada.app.configure(orders_page_size=1)
    order = lazada.app.order_create(
        lines=[line(0, quantity=2)], status="unpaid", faults=NotifyFaults(drop=True)
    )

    detail = _signed_get(lazada, "/order/get", {"order_id": order.order_id})["data"]
    items = _signed_get(lazada, "/order/items/get", {"order_id": order.order_id})["data"]
    missing = _signed_get(lazada, "/order/get", {"order_id": "1"})

    assert detail["order_id"] == int(order.order_id)
    assert detail["statuses"] == ["unpaid"]
    assert detail["created_at"].endswith(" +0800")
    assert [item["status"] for item in items] == ["unpaid", "unpaid"]
    assert len({item["order_item_id"] for item in items}) == 2
    assert {(item["product_id"], item["sku_id"], item["sku"]) for item in items} == {
        (1000, 5000, "SELLER-0")
    }
    assert missing["code"] == "16"
    assert lazada.app.configure()["orders_page_size"] == 1
    with pytest.raises(ValueError, match="orders_page_size"):
        lazada.app.configure(orders_page_size=101)


def test_lazada_orders_updated_skips_nothing_when_an_order_moves_on_while_paging(lazada, channel):
    # given: five orders, pages of two; after the first page an order of that page is
    # updated again (now out of the range), which shifts every later offset by one
    base = 1_790_000_000
    ids = _orders_at(lazada, [base + 1, base + 2, base + 3, base + 4, base + 5])
    lazada.app.configure(orders_page_size=2)

    class MovingShop(type(channel_adapter(channel))):
        def _order_call(self, path, business, name, **kwargs):
            data = super()._order_call(path, business, name, **kwargs)
            if path == "/orders/get" and business["offset"] == 0 and not moved:
                moved.append(ids[0])
                lazada.app.orders[ids[0]].updated = float(base + 1000)
            return data

    moved: list[str] = []
    adapter = MovingShop(base_url=channel.base_url, credentials=channel.credentials)

    # when
    refs = adapter.orders_updated(since=_at(base), until=_at(base + 100))

    # then: every order of the range was seen (the moved one on the page before it moved)
    assert moved == [ids[0]]
    assert [ref.external_id for ref in refs] == ids


# --- hostile pushes and answers ---------------------------------------------------------------


def trade_push(**data) -> bytes:
    fields = {
        "order_status": "pending",
        "trade_order_id": "260422900198363",
        "trade_order_line_id": "2604229001983631",
        "status_update_time": 1603698638,
        **data,
    }
    return json.dumps({"seller_id": "1", "message_type": 0, "data": fields}).encode()


@pytest.mark.parametrize(
    "body",
    [
        trade_push(trade_order_id="\u0000"),
        trade_push(trade_order_id="\ud800"),
        trade_push(trade_order_id="1" * 101),
        trade_push(order_status="\ud800"),
        trade_push(order_status="pend\u0000ing"),
        trade_push(order_status="x" * 101),
        trade_push(status_update_time="\ud800"),
        trade_push().replace(b"1603698638", b"1" + b"0" * 400),  # 10^400: past a float
        trade_push(status_update_time=[1]),
        b"[" * 100_000,
        b'{"message_type": 0, "data": ' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_lazada_webhook_parse_never_raises_on_hostile_bodies(body):
    event = LazadaAdapter(base_url="http://unused", credentials={}).webhook_parse(body=body)

    assert event.topic in {"order", "unreadable"}
    for text in (event.event_key, event.order_id, event.status):
        assert "\x00" not in text
        assert len(text) <= 100
        text.encode("utf-8")  # no lone surrogate
    if event.topic == "order":
        assert event.order_id == "260422900198363"
        assert event.status == "pending"
    else:
        assert event.event_key == hashlib.sha256(body).hexdigest()


def test_lazada_push_with_an_order_id_unfit_to_store_is_unreadable():
    body = trade_push(trade_order_id="2604\u0000")

    assert push_event(body) == ChannelEvent(
        topic="unreadable", event_key=hashlib.sha256(body).hexdigest()
    )


def test_lazada_push_of_every_line_of_one_change_is_one_event():
    keys = {push_event(trade_push(trade_order_line_id=f"26042290019836{n}")) for n in range(10)}

    assert len({event.event_key for event in keys}) == 1


@pytest.mark.parametrize("missing", ["app_key", "app_secret"])
def test_lazada_webhook_verify_refuses_every_signature_without_the_signing_keys(missing):
    credentials = {"app_key": "100777", "app_secret": "secret", missing: ""}
    adapter = LazadaAdapter(base_url="http://unused", credentials=credentials)
    body = trade_push()
    signature = hmac.new(
        credentials["app_secret"].encode(), credentials["app_key"].encode() + body, "sha256"
    ).hexdigest()

    assert adapter.webhook_verify(headers={"Authorization": signature}, body=body) is False


def test_lazada_time_far_out_of_range_is_none():
    assert lazada_time("0001-01-01 00:00:00 +0800") is None
    assert lazada_time("0001-01-01T00:00:00+08:00") is None
    assert lazada_time("9999-12-31 23:59:59 -0800") is None
    assert lazada_time("2018-02-12 13:44:36 +0800") == datetime(2018, 2, 12, 5, 44, 36, tzinfo=UTC)


def lazada_answer(data: object, **fault) -> Fault:
    return Fault(status=200, body=json.dumps({"code": "0", "data": data}), **fault)


def order_row(order_id: int, updated: str = "2026-01-01 10:00:00 +0800", **extra) -> dict:
    return {"order_id": order_id, "updated_at": updated, "statuses": ["pending"], **extra}


@pytest.mark.parametrize(
    "data",
    [
        {"orders": 5, "countTotal": 1},
        {"orders": "x"},
        [1, 2],
    ],
)
def test_lazada_orders_updated_odd_answer_shapes_are_retryable_adapter_errors(
    lazada, channel, data
):
    lazada.app.inject(lazada_answer(data))

    with pytest.raises(AdapterError) as caught:
        channel_adapter(channel).orders_updated(since=_at(1_767_225_000), until=_at(1_767_300_000))

    assert caught.value.outcome == Outcome.RETRYABLE


def test_lazada_orders_updated_odd_fields_are_no_crash(lazada, channel):
    rows = [
        order_row(1, statuses=7),
        order_row(2, updated="0001-01-01 00:00:00 +0800"),  # unreadable time: left out
        order_row(3, statuses=["\ud800", "packed"]),
        order_row("\u0000"),
    ]
    lazada.app.inject(lazada_answer({"orders": rows, "countTotal": 1e300}))
    lazada.app.inject(lazada_answer({"orders": [], "countTotal": 0}))

    refs = channel_adapter(channel).orders_updated(
        since=_at(1_767_225_000), until=_at(1_767_300_000)
    )

    assert [(ref.external_id, ref.raw_status) for ref in refs] == [("1", ""), ("3", "packed")]


def test_lazada_orders_updated_stops_when_the_server_ignores_the_offset(lazada, channel):
    # given: a server answering the same full page of one second whatever the offset
    rows = [order_row(n) for n in range(1, 101)]
    lazada.app.inject(lazada_answer({"orders": rows, "countTotal": 1000}, count=10))

    # when / then
    with pytest.raises(AdapterError) as caught:
        channel_adapter(channel).orders_updated(since=_at(1_767_225_000), until=_at(1_767_300_000))

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "added no new order" in str(caught.value)
    # the page again from its second at offset 0, then at offset 100: nothing new
    assert [c["offset"] for c in _order_list_calls(lazada)] == ["0", "0", "100"]


def test_lazada_orders_updated_stops_after_the_page_cap(lazada, channel, monkeypatch):
    # given: a server whose list never ends (each page a second later, fresh orders)
    monkeypatch.setattr("channels_sync.adapters.lazada.ORDERS_PAGES_MAX", 5)
    for page in range(6):
        updated = f"2026-01-01 10:00:0{page} +0800"
        rows = [order_row(page * 100 + n, updated) for n in range(100)]
        lazada.app.inject(lazada_answer({"orders": rows, "countTotal": 10**6}))

    # when / then
    with pytest.raises(AdapterError) as caught:
        channel_adapter(channel).orders_updated(since=_at(1_767_225_000), until=_at(1_767_300_000))

    assert caught.value.outcome == Outcome.RETRYABLE
    assert "more than 5 pages" in str(caught.value)
    assert len(_order_list_calls(lazada)) == 5


def test_lazada_orders_updated_skips_nothing_when_the_pages_last_order_moves_on(lazada, channel):
    # given: five orders at +1, +2, +2, +2, +3 and pages of two; after the first page its
    # last order (one at +2) is updated again, out of the range: a next query from +2 at
    # offset 1 (the orders of +2 seen so far) would skip one of the two left at +2
    base = 1_790_000_000
    ids = _orders_at(lazada, [base + 1, base + 2, base + 2, base + 2, base + 3])
    lazada.app.configure(orders_page_size=2)

    class MovingShop(LazadaAdapter):
        def _order_call(self, path, business, name, **kwargs):
            data = super()._order_call(path, business, name, **kwargs)
            if path == "/orders/get" and not moved:
                last = str(data["orders"][-1]["order_id"])
                moved.append(last)
                lazada.app.orders[last].updated = float(base + 1000)
            return data

    moved: list[str] = []
    adapter = MovingShop(base_url=channel.base_url, credentials=channel.credentials)

    # when
    refs = adapter.orders_updated(since=_at(base), until=_at(base + 100))

    # then: all five were seen (the moved one on the first page)
    assert moved[0] in ids[1:4]
    assert sorted(ref.external_id for ref in refs) == sorted(ids)
    assert {ref.external_id: ref.updated_at for ref in refs}[ids[4]] == _at(base + 3)


def test_lazada_sandbox_order_list_takes_only_documented_statuses(lazada):
    after = "2026-01-01T00:00:00+08:00"

    for status in ("all", "PENDING", "anything"):
        answer = _signed_get(lazada, "/orders/get", {"update_after": after, "status": status})
        assert answer["code"] == "InvalidParameter"
    for status in ("unpaid", "pending", "packed", "canceled", "lost"):
        answer = _signed_get(lazada, "/orders/get", {"update_after": after, "status": status})
        assert answer["code"] == "0"


def test_lazada_orders_fetch_leaves_out_an_order_whose_items_did_not_come_back(lazada, channel):
    # given: two orders; the items call names only the second (then: says none was found)
    first = lazada.app.order_create(
        lines=[line(0)], status="pending", faults=NotifyFaults(drop=True)
    )
    second = lazada.app.order_create(
        lines=[line(1)], status="pending", faults=NotifyFaults(drop=True)
    )
    headers = [_signed_get(lazada, "/order/get", {"order_id": o.order_id}) for o in (first, second)]
    items = _signed_get(lazada, "/orders/items/get", {"order_ids": f"[{second.order_id}]"})
    for header in headers:
        lazada.app.inject(Fault(status=200, body=json.dumps(header)))
    lazada.app.inject(Fault(status=200, body=json.dumps(items)))
    for header in headers:
        lazada.app.inject(Fault(status=200, body=json.dumps(header)))
    lazada.app.inject(Fault(status=200, body=json.dumps({"code": "39", "message": "E039"})))
    adapter = channel_adapter(channel)

    # when
    partly = adapter.orders_fetch([first.order_id, second.order_id])
    none_found = adapter.orders_fetch([first.order_id, second.order_id])

    # then: an order without its items is not returned (yet); never one without lines
    assert [order.external_id for order in partly] == [second.order_id]
    assert partly[0].lines
    assert none_found == []
    assert [o.external_id for o in adapter.orders_fetch([first.order_id])] == [first.order_id]


def test_lazada_orders_fetch_leaves_out_an_order_whose_items_cannot_be_read(lazada, channel):
    order = lazada.app.order_create(
        lines=[line(0)], status="pending", faults=NotifyFaults(drop=True)
    )
    header = _signed_get(lazada, "/order/get", {"order_id": order.order_id})
    bad_item = {"order_item_id": "\u0000", "sku_id": "\ud800", "status": "pending"}
    items = [{"order_id": int(order.order_id), "order_items": [bad_item]}]
    lazada.app.inject(Fault(status=200, body=json.dumps(header)))
    lazada.app.inject(lazada_answer(items))

    assert channel_adapter(channel).orders_fetch([order.order_id]) == []
