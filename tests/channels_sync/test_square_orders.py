"""Square orders and notifications: the adapter against the sandbox over real HTTP, and the
parsing of notifications (including hostile bodies)."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests

from channels_sync.adapters.base import AdapterError, OrderStatus, Outcome
from channels_sync.adapters.square import SquareAdapter
from channels_sync.adapters.square.orders import market_order
from channels_sync.sandbox.base import NotifyFaults
from core.sandbox import Fault, SandboxApp, SandboxRequest, SandboxResponse, SandboxServer
from tests.channels_sync import square_fixtures
from tests.channels_sync.square_fixtures import LOCATION, square_keys

_square_server = square_fixtures._square_server
square = square_fixtures.square

HOOK_PATH = "/webhooks/square/1/?src=test"


class Receiver(SandboxApp):
    """A webhook endpoint that records every request and answers 200."""

    name = "receiver"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(200, b"", content_type="text/plain")


@pytest.fixture(scope="module")
def _receiver_server():
    with SandboxServer(Receiver()) as server:
        yield server


@pytest.fixture
def shop(square, _receiver_server):
    """(sandbox, adapter, webhook URL) with notifications going to the receiver."""
    _receiver_server.app.reset()
    url = _receiver_server.url + HOOK_PATH
    square.app.configure(webhook_url=url, listings=[square_keys(0), square_keys(1)])
    adapter = SquareAdapter(
        base_url=square.url, auth_base_url=square.url, credentials=square.app.credentials()
    )
    return square.app, adapter, url, _receiver_server.app


def line(n: int, quantity: int, price: str = "12.50") -> dict:
    return {"keys": square_keys(n), "sku": "", "quantity": quantity, "price": price}


# --- notifications ------------------------------------------------------------------------------


def test_square_order_notifications_verify_over_url_and_body_and_parse(shop):
    app, adapter, url, receiver = shop

    order = app.order_create(lines=[line(0, 2)], status="OPEN")
    app.order_update(order.order_id, status="COMPLETED")

    created, updated = receiver.requests
    for request in (created, updated):
        assert adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
        assert not adapter.webhook_verify(
            headers=request.headers, body=request.body, url=url.replace("?src=test", "")
        )
    first = adapter.webhook_parse(body=created.body)
    second = adapter.webhook_parse(body=updated.body)
    assert json.loads(created.body)["type"] == "order.created"
    assert json.loads(updated.body)["type"] == "order.updated"
    assert (first.topic, first.order_id, first.status) == ("order", order.order_id, "OPEN")
    assert (second.topic, second.order_id, second.status) == ("order", order.order_id, "COMPLETED")
    assert first.event_key == json.loads(created.body)["event_id"]
    assert first.event_key != second.event_key
    assert second.updated_at == datetime.fromtimestamp(order.updated, tz=UTC).replace(
        microsecond=int(order.updated % 1 * 1000) * 1000
    )


def test_square_notification_with_a_bad_signature_fails_verification(shop):
    app, adapter, url, receiver = shop

    app.order_create(lines=[line(0, 1)], status="OPEN", faults=NotifyFaults(bad_signature=True))

    [request] = receiver.requests
    assert not adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
    assert adapter.webhook_parse(body=request.body).topic == "order"


def test_square_notification_copies_keep_their_event_id(shop):
    app, adapter, _, receiver = shop

    app.order_create(lines=[line(0, 1)], status="OPEN", faults=NotifyFaults(copies=3))

    keys = {adapter.webhook_parse(body=r.body).event_key for r in receiver.requests}
    assert len(receiver.requests) == 3
    assert len(keys) == 1


def test_square_stock_notification_is_a_stock_event_per_in_stock_count(shop):
    app, adapter, url, receiver = shop

    app.stock_set_external(square_keys(1), 3)

    [request] = receiver.requests
    assert adapter.webhook_verify(headers=request.headers, body=request.body, url=url)
    event = adapter.webhook_parse(body=request.body)
    assert event.topic == "stock"
    assert [(r.keys, r.quantity) for r in event.stock] == [(square_keys(1), 3)]
    assert event.event_key == json.loads(request.body)["event_id"]
    assert abs((event.updated_at - datetime.now(UTC)).total_seconds()) < 5


def test_square_webhook_parse_counts_other_states_and_fractions():
    body = json.dumps(
        {
            "type": "inventory.count.updated",
            "event_id": "ev-1",
            "created_at": "2026-01-01T00:00:09Z",
            "data": {
                "type": "inventory_counts",
                "id": "x",
                "object": {
                    "inventory_counts": [
                        {
                            **square_keys(0),
                            "state": "IN_STOCK",
                            "quantity": "4.75",
                            "calculated_at": "2026-01-01T00:00:05.123456789Z",
                        },
                        {**square_keys(0), "state": "SOLD", "quantity": "9"},
                        {
                            **square_keys(1),
                            "state": "IN_STOCK",
                            "quantity": "-3",
                            "calculated_at": "2026-01-01T00:00:07Z",
                        },
                    ]
                },
            },
        }
    ).encode()

    event = SquareAdapter.webhook_parse(
        SquareAdapter(base_url="http://unused", credentials={}), body=body
    )

    assert event.topic == "stock"
    assert [(r.keys, r.quantity) for r in event.stock] == [
        (square_keys(0), 4),
        (square_keys(1), None),  # a shortfall is no figure: the listing is read back
    ]
    assert event.updated_at == datetime(2026, 1, 1, 0, 0, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("envelope", "topic"),
    [
        ({"type": "payment.updated", "event_id": "e1", "data": {"id": "p"}}, "other"),
        ({"type": "inventory.count.updated", "event_id": "e2", "data": {}}, "other"),
        ({"type": "order.updated", "event_id": "e3", "data": {"id": "\u0000"}}, "unreadable"),
        (
            {
                "type": "order.fulfillment.updated",
                "event_id": "e4",
                "data": {
                    "id": "O-4",
                    "object": {"order_fulfillment_updated": {"order_id": "O-4", "state": "OPEN"}},
                },
            },
            "order",
        ),
        ({"type": "order.updated", "event_id": "e5", "data": {"id": "O-5"}}, "order"),
    ],
)
def test_square_webhook_parse_topics(envelope, topic):
    adapter = SquareAdapter(base_url="http://unused", credentials={})

    event = adapter.webhook_parse(body=json.dumps(envelope).encode())

    assert event.topic == topic
    if topic == "order":
        assert event.order_id == envelope["data"]["id"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\xff",
        b"[]",
        b'{"type": 5}',
        b'{"type":"order.updated","event_id":"\\ud800","data":{"id":"x"}}',
        b'{"type":"order.updated","data":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"type":"inventory.count.updated","data":{"object":{"inventory_counts":'
        b'[{"catalog_object_id":"V","location_id":"L","state":"IN_STOCK",'
        b'"quantity":"1e999999"}]}}}',
        b'{"type":"order.created","event_id":"e","data":{"id":' + b"9" * 5000 + b"}}",
    ],
)
def test_square_webhook_parse_never_raises_on_hostile_bodies(body):
    adapter = SquareAdapter(base_url="http://unused", credentials={})

    event = adapter.webhook_parse(body=body)

    assert event.topic in ("unreadable", "other", "order", "stock")
    assert event.event_key
    assert len(event.event_key) <= 100


def test_square_notification_without_an_event_id_keys_by_order_state_and_version():
    adapter = SquareAdapter(base_url="http://unused", credentials={})

    def body(state: str, version: int) -> bytes:
        inner = {"order_id": "O-1", "state": state, "version": version}
        return json.dumps(
            {"type": "order.updated", "data": {"id": "O-1", "object": {"order_updated": inner}}}
        ).encode()

    assert (
        adapter.webhook_parse(body=body("OPEN", 2)).event_key
        == adapter.webhook_parse(body=body("OPEN", 2)).event_key
    )
    assert (
        adapter.webhook_parse(body=body("OPEN", 2)).event_key
        != adapter.webhook_parse(body=body("OPEN", 3)).event_key
    )


# --- order status -------------------------------------------------------------------------------


def order_raw(state: str, **fields) -> dict:
    raw = {
        "id": "O-1",
        "location_id": LOCATION,
        "state": state,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:05:00Z",
        "line_items": [
            {
                "uid": "u1",
                "catalog_object_id": "V1",
                "quantity": "2",
                "base_price_money": {"amount": 1250, "currency": "USD"},
            }
        ],
        "total_money": {"amount": 2500, "currency": "USD"},
        "net_amount_due_money": {"amount": 2500, "currency": "USD"},
    }
    raw.update(fields)
    return raw


PAID = {
    "net_amount_due_money": {"amount": 0, "currency": "USD"},
    "tenders": [{"created_at": "2026-01-01T00:01:00Z", "amount_money": {"amount": 2500}}],
}


@pytest.mark.parametrize(
    ("state", "fields", "expected"),
    [
        ("DRAFT", {}, OrderStatus.PENDING_PAYMENT),
        ("OPEN", {}, OrderStatus.PENDING_PAYMENT),
        ("OPEN", PAID, OrderStatus.PAID),
        ("OPEN", {**PAID, "fulfillments": [{"state": "PREPARED"}]}, OrderStatus.READY_TO_SHIP),
        ("OPEN", {**PAID, "fulfillments": [{"state": "COMPLETED"}]}, OrderStatus.SHIPPED),
        ("OPEN", {**PAID, "fulfillments": [{"state": "PROPOSED"}]}, OrderStatus.PAID),
        (
            "OPEN",
            {"net_amount_due_money": None, "tenders": PAID["tenders"]},
            OrderStatus.PAID,
        ),
        ("COMPLETED", PAID, OrderStatus.COMPLETED),
        ("CANCELED", {}, OrderStatus.CANCELLED),
        ("REFUNDED", {}, None),
    ],
)
def test_square_order_state_maps_to_status(state, fields, expected):
    order = market_order(order_raw(state, **fields))

    assert order.status == expected
    assert order.raw_status == state


def test_square_order_lines_are_keyed_by_variation_and_location_with_money_in_units():
    raw = order_raw(
        "OPEN",
        **PAID,
        line_items=[
            {
                "uid": "u1",
                "catalog_object_id": "V1",
                "quantity": "2",
                "name": "Tee",
                "variation_name": "Large",
                "base_price_money": {"amount": 1250, "currency": "USD"},
                "total_discount_money": {"amount": 100, "currency": "USD"},
            },
            {"uid": "u2", "quantity": "1", "name": "Custom amount"},
        ],
    )

    order = market_order(raw)

    [only] = order.lines
    assert only.line_key == "u1"
    assert only.sku == ""
    assert only.keys == {"catalog_object_id": "V1", "location_id": LOCATION}
    assert (only.quantity, only.unit_price, only.discount) == (
        Decimal(2),
        Decimal("12.50"),
        Decimal("1.00"),
    )
    assert only.name == "Tee Large"
    assert (order.amount, order.currency) == (Decimal("25.00"), "USD")
    assert order.paid_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_square_order_with_a_fractional_quantity_is_left_out():
    raw = order_raw("OPEN", line_items=[{"uid": "u", "catalog_object_id": "V", "quantity": "1.5"}])

    assert market_order(raw) is None


def test_square_order_in_yen_has_no_minor_units():
    raw = order_raw("OPEN", total_money={"amount": 2500, "currency": "JPY"})

    assert market_order(raw).amount == Decimal(2500)


# --- order calls --------------------------------------------------------------------------------


def test_square_orders_updated_walks_every_page_of_the_channels_locations(shop):
    app, adapter, _, _ = shop
    app.configure(order_page_size=2)
    placed = [app.order_create(lines=[line(0, 1)], status="OPEN") for _ in range(5)]
    elsewhere = app.order_create(
        lines=[{"keys": square_keys(0, location="LOTHER"), "quantity": 1}], status="OPEN"
    )
    now = datetime.now(UTC)

    refs = adapter.orders_updated(
        since=now - timedelta(minutes=1), until=now + timedelta(seconds=1)
    )

    assert sorted(r.external_id for r in refs) == sorted(o.order_id for o in placed)
    assert {r.raw_status for r in refs} == {"OPEN"}
    searches = [json.loads(r.body) for r in app.requests if r.path == "/v2/orders/search"]
    assert len(searches) == 3
    assert searches[0]["location_ids"] == [LOCATION]
    assert searches[0]["query"]["sort"] == {"sort_field": "UPDATED_AT", "sort_order": "ASC"}
    assert "cursor" in searches[1]
    # another location polled through the option
    adapter.options = {"order_location_ids": ["LOTHER"]}
    refs = adapter.orders_updated(
        since=now - timedelta(minutes=1), until=now + timedelta(seconds=1)
    )
    assert elsewhere.order_id in {r.external_id for r in refs}


def test_square_orders_updated_filters_by_update_time(shop):
    app, adapter, _, _ = shop
    order = app.order_create(lines=[line(0, 1)], status="OPEN")
    moment = datetime.fromtimestamp(order.updated, tz=UTC)

    before = adapter.orders_updated(
        since=moment - timedelta(hours=2), until=moment - timedelta(hours=1)
    )
    around = adapter.orders_updated(
        since=moment - timedelta(seconds=1), until=moment + timedelta(seconds=1)
    )

    assert before == []
    assert [r.external_id for r in around] == [order.order_id]


def test_square_orders_fetch_reads_detail_and_leaves_unknown_ids_out(shop):
    app, adapter, _, _ = shop
    paid = app.order_create(lines=[line(0, 2), line(1, 1, "3.00")], status="OPEN")
    unpaid = app.order_create(lines=[line(0, 1)], status="OPEN_UNPAID")

    orders = {
        o.external_id: o for o in adapter.orders_fetch([paid.order_id, unpaid.order_id, "NOPE"])
    }

    assert set(orders) == {paid.order_id, unpaid.order_id}
    assert orders[paid.order_id].status == OrderStatus.PAID
    assert orders[paid.order_id].paid_at is not None
    assert orders[unpaid.order_id].status == OrderStatus.PENDING_PAYMENT
    assert orders[unpaid.order_id].paid_at is None
    assert [(ln.keys, ln.quantity) for ln in orders[paid.order_id].lines] == [
        (square_keys(0), Decimal(2)),
        (square_keys(1), Decimal(1)),
    ]
    assert orders[paid.order_id].amount == Decimal("28.00")
    [request] = [r for r in app.requests if r.path == "/v2/orders/batch-retrieve"]
    assert json.loads(request.body) == {"order_ids": [paid.order_id, unpaid.order_id, "NOPE"]}


def test_square_orders_fetch_batches_100_ids(shop):
    app, adapter, _, _ = shop

    assert adapter.orders_fetch([f"ID{n}" for n in range(150)]) == []

    sizes = [
        len(json.loads(r.body)["order_ids"])
        for r in app.requests
        if r.path == "/v2/orders/batch-retrieve"
    ]
    assert sizes == [100, 50]


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (Fault(status=429, body='{"errors":[{"code":"RATE_LIMITED"}]}'), Outcome.THROTTLED),
        (Fault(status=503, body="down"), Outcome.RETRYABLE),
        (Fault(status=401, body='{"errors":[{"code":"ACCESS_TOKEN_EXPIRED"}]}'), Outcome.AUTH),
        (Fault(status=400, body='{"errors":[{"code":"INVALID_VALUE"}]}'), Outcome.PERMANENT),
        (Fault(status=200, body='{"orders": 5}'), Outcome.RETRYABLE),
    ],
    ids=["throttled", "down", "expired", "refused", "odd-answer"],
)
def test_square_order_calls_raise_classified_errors(shop, fault, outcome):
    app, adapter, _, _ = shop
    app.inject(fault)
    now = datetime.now(UTC)

    with pytest.raises(AdapterError) as failed:
        adapter.orders_updated(since=now - timedelta(minutes=1), until=now)

    assert failed.value.outcome == outcome


def test_square_sandbox_order_search_wants_the_sort_of_the_time_filtered_on(shop):
    _, adapter, _, _ = shop
    body = {
        "location_ids": [LOCATION],
        "query": {
            "filter": {"date_time_filter": {"updated_at": {"start_at": "2026-01-01T00:00:00Z"}}},
            "sort": {"sort_field": "CREATED_AT"},
        },
    }

    response = requests.post(
        adapter.base_url + "/v2/orders/search",
        json=body,
        headers={"Authorization": f"Bearer {adapter.credentials['access_token']}"},
        timeout=5,
    )

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "query.sort.sort_field"
