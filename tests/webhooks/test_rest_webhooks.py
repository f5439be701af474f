"""A custom REST shop's webhooks end to end: Stripe-style signature, time window, replays,
duplicate events, Redis down; and polling its orders."""

import json
import time

import pytest
import requests
from django.test import override_settings
from prometheus_client import REGISTRY

from channels_sync.sandbox.base import NotifyFaults
from channels_sync.sandbox.rest import RestShopSandbox
from channels_sync.selectors import channel_webhook_url
from channels_sync.services.tokens import channel_adapter
from core.sandbox import SandboxServer
from orders.models import Order
from tests.channels_sync.rest_shop import rest_channel, sku
from tests.inventory.factories import ProductFactory
from webhooks.models import WebhookEvent
from webhooks.services.polling import orders_poll_channel
from webhooks.services.replays import nonce_claim

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def _server():
    with SandboxServer(RestShopSandbox()) as running:
        yield running


@pytest.fixture
def hooked(_server, live_server, settings, vendor, warehouse):
    """A REST shop channel whose shop sends its webhooks to the live server."""
    settings.PUBLIC_BASE_URL = live_server.url
    _server.app.reset()
    channel = rest_channel(vendor, _server, warehouses=[warehouse], products=[ProductFactory()])
    _server.app.configure(webhook_url=channel_webhook_url(channel))
    return channel, _server.app


def _post(channel, body: bytes, headers: dict) -> requests.Response:
    return requests.post(channel_webhook_url(channel), data=body, headers=headers, timeout=10)


def _line() -> list[dict]:
    return [{"keys": {"sku": sku(0)}, "sku": sku(0), "quantity": 2}]


def test_a_signed_order_webhook_is_stored_and_its_order_fetched(hooked):
    channel, shop = hooked
    order = shop.order_create(lines=_line(), status="paid")
    assert [d.http_status for d in shop.deliveries] == [200]
    event = WebhookEvent.objects.get(channel=channel)
    assert (event.topic, event.order_id, event.event_key) == (
        "order",
        order.order_id,
        f"evt_{order.order_id}_paid_{int(order.updated)}",
    )
    stored = Order.objects.get(channel=channel, external_id=order.order_id)
    assert stored.status == "paid"
    assert [(line.sku, line.quantity) for line in stored.lines.all()] == [(sku(0), 2)]


def test_a_bad_signature_is_refused_401(hooked):
    channel, shop = hooked
    shop.order_create(lines=_line(), status="paid", faults=NotifyFaults(bad_signature=True))
    assert [d.http_status for d in shop.deliveries] == [401]
    assert not WebhookEvent.objects.exists()
    answer = _post(channel, b'{"id": "e"}', {"X-SyncStore-Signature": "t=1,v1=zz"})
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_signature")


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_outside_five_minutes_is_refused(hooked, offset):
    channel, shop = hooked
    body = b'{"id": "evt_old", "type": "order.updated", "data": {"order_id": "1"}}'
    stamp = int(time.time()) + offset
    signature = shop.signed(body)["X-SyncStore-Signature"].split(",")[1]
    from channels_sync.sandbox.rest import _sign

    header = f"t={stamp},v1={_sign(shop.webhook_secret, stamp, body)}"
    assert signature != header.split(",")[1]
    answer = _post(channel, body, {"X-SyncStore-Signature": header})
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_signature")
    assert not WebhookEvent.objects.exists()


def replays_counted() -> float:
    value = REGISTRY.get_sample_value(
        "syncstore_webhooks_total", {"channel_type": "rest", "outcome": "replayed"}
    )
    return value or 0.0


def test_a_replay_of_a_stored_event_gets_the_duplicate_answer(hooked):
    channel, shop = hooked
    # the shop delivers an order change twice, each delivery signed afresh
    shop.order_create(lines=_line(), status="pending", faults=NotifyFaults(copies=2))
    assert [d.http_status for d in shop.deliveries] == [200, 200]
    assert WebhookEvent.objects.filter(channel=channel).count() == 1
    before = replays_counted()

    # the same signed bytes sent again: a replay, answered as the duplicate it is
    replay = shop.redeliver_last()
    assert replay.http_status == 200
    body, headers = shop.sent[-1]
    answer = _post(channel, body, headers)
    assert (answer.status_code, answer.json()) == (200, {"received": True})
    assert replays_counted() == before + 2
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


@pytest.mark.parametrize("disguise", ["xt=1,{}", "{},xt=2", "v0=00,{}"])
def test_a_replay_with_parts_the_check_ignores_is_still_a_replay(hooked, disguise):
    channel, shop = hooked
    shop.order_create(lines=_line(), status="pending")
    body, headers = shop.sent[-1]
    assert WebhookEvent.objects.filter(channel=channel).count() == 1
    before = replays_counted()
    header = headers["X-SyncStore-Signature"]
    stamp = header.split(",")[0].removeprefix("t=")
    variants = (disguise.format(header), header.replace(f"t={stamp}", f"t=00{stamp}"))
    for variant in variants:
        answer = _post(channel, body, {**headers, "X-SyncStore-Signature": variant})
        assert (answer.status_code, answer.json()) == (200, {"received": True}), variant
    # each one recognised as the same signed request, not a new one
    assert replays_counted() == before + len(variants)
    assert WebhookEvent.objects.filter(channel=channel).count() == 1


def test_a_replay_whose_first_delivery_never_stored_its_event_is_taken(hooked):
    channel, shop = hooked
    body = json.dumps(
        {
            "id": "evt_lost",
            "type": "customer.created",
            "created": int(time.time()),
            "data": {},
        }
    ).encode()
    headers = shop.signed(body)
    # a worker claimed this request's nonce, then stopped before the INSERT
    adapter = channel_adapter(channel)
    key, replayed = nonce_claim(channel_id=channel.pk, adapter=adapter, headers=headers, body=body)
    assert (key is not None, replayed) == (True, False)
    assert not WebhookEvent.objects.filter(channel=channel).exists()
    before = replays_counted()

    # the same signed request sent again: a replay, and its event is taken, once
    for _ in range(2):
        answer = _post(channel, body, headers)
        assert (answer.status_code, answer.json()) == (200, {"received": True})
    assert replays_counted() == before + 2
    stored = WebhookEvent.objects.filter(channel=channel)
    assert list(stored.values_list("event_key", flat=True)) == ["evt_lost"]


def test_with_redis_down_the_intake_still_answers_and_dedupes_by_event(hooked, settings):
    channel, shop = hooked
    down = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    with override_settings(CACHES={**settings.CACHES, "default": down}):
        body = json.dumps(
            {"id": "evt_x", "type": "customer.created", "created": int(time.time()), "data": {}}
        ).encode()
        headers = shop.signed(body)
        first = _post(channel, body, headers)
        # without Redis the nonce is not remembered: the same request is taken again, and
        # the event id keeps it stored once
        again = _post(channel, body, headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json() == {"received": True}
    assert WebhookEvent.objects.filter(channel=channel, event_key="evt_x").count() == 1


def test_a_stock_webhook_is_stored_as_a_stock_report(hooked):
    channel, shop = hooked
    delivery = shop.stock_set_external({"sku": sku(0)}, 4)
    assert delivery.http_status == 200
    event = WebhookEvent.objects.get(channel=channel)
    assert event.topic == "stock"


def test_polling_finds_an_order_whose_webhook_was_dropped(hooked):
    channel, shop = hooked
    order = shop.order_create(lines=_line(), status="paid", faults=NotifyFaults(drop=True))
    report = orders_poll_channel(channel_id=channel.pk)
    assert report.listed == 1
    stored = Order.objects.get(channel=channel, external_id=order.order_id)
    assert stored.status == "paid"
    assert [p for p in (r.path for r in shop.requests) if p.startswith("/api/v1/orders")] == [
        "/api/v1/orders",  # page 1
        "/api/v1/orders",  # page 2, empty: the list ends
        f"/api/v1/orders/{order.order_id}",
    ]
