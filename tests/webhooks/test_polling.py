"""Order polling: the cursor always moves once the listing worked; every order listed but not
applied gets a retry of its own (an event); out of time stops cleanly; a webhook and a poll
of the same new order at once make one order."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection
from django.utils import timezone

from channels_sync.models import Channel
from channels_sync.sandbox.base import NotifyFaults
from core.errors import DomainError
from core.models import DeadLetter
from inventory.models import Reservation
from orders.models import Order
from orders.services import order_apply_market
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent
from webhooks.services.events import webhook_events_sweep
from webhooks.services.polling import orders_poll_channel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(tiktok, hooked, stocked, warehouse):
    product = stocked(10)
    channel = hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product])
    return tiktok, channel, product


def place(server, quantity: int = 2, **faults):
    return server.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "SKU-0", "quantity": quantity}],
        status="AWAITING_SHIPMENT",
        faults=NotifyFaults(**faults) if faults else None,
    )


def reserved(product) -> Decimal:
    rows = Reservation.objects.filter(level__product=product, status="active")
    return sum((r.quantity for r in rows), Decimal(0))


@pytest.fixture
def hidden(monkeypatch):
    """Order ids the sandbox's detail call leaves out (its search still lists them), as a
    marketplace whose detail lags its search does."""
    ids: set[str] = set()

    def install(server) -> set[str]:
        original = server.app._order_detail

        def detail(request):
            with server.app._lock:
                kept = {i: server.app.orders.pop(i) for i in list(ids) if i in server.app.orders}
            try:
                return original(request)
            finally:
                with server.app._lock:
                    server.app.orders.update(kept)

        monkeypatch.setattr(server.app, "_order_detail", detail)
        return ids

    return install


def test_poll_keeps_an_order_the_detail_left_out_as_an_event_and_moves_the_cursor(shop, hidden):
    server, channel, product = shop
    ids = hidden(server)
    lagging = place(server, quantity=2, drop=True)
    good = place(server, quantity=1, drop=True)
    ids.add(lagging.order_id)

    report = orders_poll_channel(channel_id=channel.pk)

    # then the cursor moved, the returned order was applied, the other kept to retry
    assert report.outcome == "deferred"
    assert (report.listed, report.applied, report.missing) == (2, 1, [lagging.order_id])
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    assert Order.objects.filter(external_id=good.order_id).exists()
    event = WebhookEvent.objects.get()
    assert report.deferred == [event.pk]
    assert (event.source, event.topic, event.order_id) == ("poll", "order", lagging.order_id)
    assert event.event_key.startswith(f"poll:{lagging.order_id}:")
    # its processing was tried at once (still left out), and waits for its retry
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.attempts == 1
    assert "did not return order" in event.error
    # an overlapping poll that lists the same version again keeps it once
    Channel.objects.filter(pk=channel.pk).update(orders_cursor=None)
    assert orders_poll_channel(channel_id=channel.pk).deferred == []
    assert WebhookEvent.objects.count() == 1
    # when the detail returns it, the event's retry applies it
    ids.clear()
    WebhookEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert webhook_events_sweep() == [event.pk]
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    row = Order.objects.get(channel=channel, external_id=lagging.order_id)
    assert row.status == "paid"
    assert reserved(product) == Decimal(3)


def test_poll_of_an_order_that_cannot_be_applied_moves_the_cursor_and_dead_letters_it(
    shop, monkeypatch
):
    server, channel, product = shop
    bad = place(server, quantity=1, drop=True)
    good = place(server, quantity=2, drop=True)

    def apply(*, channel, order, source, event_ref=""):
        # Our order service refusing one order (one it cannot store, say).
        if order.external_id == bad.order_id:
            raise DomainError("This order cannot be stored.", code="order_unstorable")
        return order_apply_market(channel=channel, order=order, source=source, event_ref=event_ref)

    monkeypatch.setattr("webhooks.services.polling.order_apply_market", apply)
    monkeypatch.setattr("webhooks.services.events.order_apply_market", apply)

    report = orders_poll_channel(channel_id=channel.pk)

    assert report.outcome == "deferred"
    assert report.failed == [bad.order_id]
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    assert Order.objects.get(channel=channel).external_id == good.order_id
    assert reserved(product) == Decimal(2)
    # the bad order is an event of its own, processed once, failed and dead-lettered
    event = WebhookEvent.objects.get()
    assert (event.source, event.order_id) == ("poll", bad.order_id)
    assert event.status == WebhookEvent.Status.FAILED
    assert "cannot be stored" in event.error
    letter = DeadLetter.objects.get(task_name="webhooks.process_event")
    assert letter.kwargs == {"event_id": event.pk}
    # the next poll moves on too (no window growing behind one order)
    again = orders_poll_channel(channel_id=channel.pk)
    channel.refresh_from_db()
    assert channel.orders_cursor == again.until
    assert WebhookEvent.objects.count() == 1  # the same version of it is kept once


def _detail_fails_after_listing(server, fault) -> None:
    """The listing answers; every detail call after it gets `fault`."""
    original = server.app._order_search

    def search(request):
        answer = original(request)
        server.app.inject(fault)
        return answer

    server.app._order_search = search


def test_poll_detail_call_failing_keeps_the_cursor_and_defers_nothing(shop):
    from core.sandbox import Fault

    server, channel, _product = shop
    first = place(server, drop=True)
    # the listing answers, then the detail call fails with a 5xx (the marketplace is down)
    _detail_fails_after_listing(server, Fault(status=500, count=1))
    try:
        report = orders_poll_channel(channel_id=channel.pk)
    finally:
        del server.app._order_search

    # then the poll failed and kept its cursor: no event per order while it is down
    assert report.outcome == "failed"
    channel.refresh_from_db()
    assert channel.orders_cursor is None
    assert WebhookEvent.objects.count() == 0
    # and the next poll, the marketplace back, applies the order
    assert orders_poll_channel(channel_id=channel.pk).outcome == "ok"
    assert Order.objects.filter(channel=channel, external_id=first.order_id).exists()


def test_poll_detail_call_refused_for_good_defers_that_batch(shop):
    from core.sandbox import Fault

    server, channel, _product = shop
    first = place(server, drop=True)
    second = place(server, drop=True)
    # the detail call is refused as a bad request (permanent), once
    body = '{"code": 36009004, "message": "Invalid ids", "data": null}'
    _detail_fails_after_listing(server, Fault(status=400, count=1, body=body))
    try:
        report = orders_poll_channel(channel_id=channel.pk)
    finally:
        del server.app._order_search

    # then the cursor moves and the refused orders retry as events of their own
    assert report.outcome == "deferred"
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    kept = set(WebhookEvent.objects.values_list("order_id", flat=True))
    assert kept == {first.order_id, second.order_id}
    assert set(WebhookEvent.objects.values_list("source", flat=True)) == {"poll"}


def test_poll_out_of_time_stops_cleanly_and_keeps_the_rest(shop, monkeypatch):
    server, channel, _product = shop
    first = place(server, drop=True)
    second = place(server, drop=True)

    def apply(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr("webhooks.services.polling.order_apply_market", apply)

    report = orders_poll_channel(channel_id=channel.pk)

    # then the poll stopped (no exception), the lock is free, nothing was dropped
    assert report.outcome == "stopped"
    assert report.failed == []
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    kept = set(WebhookEvent.objects.values_list("order_id", flat=True))
    assert kept == {first.order_id, second.order_id}
    # the kept orders were processed by their own events (the real order service)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Order.objects.filter(channel=channel).count() == 2
    # and the channel's poll lock was given back
    monkeypatch.undo()
    assert orders_poll_channel(channel_id=channel.pk).outcome == "ok"


def test_webhook_and_poll_of_the_same_new_order_at_once_make_one_order(shop):
    server, channel, product = shop
    # given a new order the marketplace has not notified yet
    order = place(server, quantity=3, drop=True)
    body, headers = server.app.notification(order, bad_signature=False)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def notify() -> None:
        barrier.wait()
        results["webhook"] = server.app._deliver(order.order_id, order.status, body, headers)

    def poll() -> None:
        barrier.wait()
        try:
            results["poll"] = orders_poll_channel(channel_id=channel.pk)
        finally:
            connection.close()

    # when the notification and a poll apply it at the same moment
    threads = [threading.Thread(target=notify), threading.Thread(target=poll)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then one order, one reservation of the full quantity
    assert results["webhook"].http_status == 200
    assert results["poll"].outcome == "ok"
    assert Order.objects.filter(channel=channel, external_id=order.order_id).count() == 1
    assert Reservation.objects.filter(level__product=product).count() == 1
    assert reserved(product) == Decimal(3)
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED


def test_poll_of_a_list_without_update_times_keeps_an_order_once(
    shopee, hooked, stocked, warehouse, hidden
):
    # given a Shopee order (its list gives no update time) the detail call leaves out
    product = stocked(10)
    channel = hooked(shopee, "shopee", warehouses=[warehouse], products=[product])
    ids = hidden(shopee)
    order = shopee.app.order_create(
        lines=[{"keys": listing_keys("shopee", 0), "sku": "SKU-0", "quantity": 1}],
        status="READY_TO_SHIP",
        faults=NotifyFaults(drop=True),
    )
    ids.add(order.order_id)
    # when three overlapping polls list it
    for _ in range(3):
        Channel.objects.filter(pk=channel.pk).update(orders_cursor=None)
        orders_poll_channel(channel_id=channel.pk)
    # then it is kept once, under the status the list shows
    event = WebhookEvent.objects.get()
    assert event.event_key == f"poll:{order.order_id}:status:READY_TO_SHIP"
