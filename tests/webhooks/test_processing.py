"""Processing webhook events into orders, through the real sandboxes and order services:
refetch and reserve, status paths, out of order, polling, the sweep, retries, the purge."""

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.test import Client
from django.utils import timezone

from channels_sync.models import Channel
from channels_sync.sandbox.base import NotifyFaults
from core.models import DeadLetter
from core.sandbox import Fault
from core.services import dead_letter_record, dead_letter_retry
from inventory.models import Reservation, StockLevel
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from webhooks.models import WebhookEvent
from webhooks.services.events import (
    webhook_event_process,
    webhook_events_purge,
    webhook_events_reprocess,
    webhook_events_sweep,
)
from webhooks.services.polling import orders_poll_channel

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shop(tiktok, hooked, stocked, warehouse):
    """A TikTok channel with one listed product holding 10, notifications to the live server."""
    product = stocked(10)
    channel = hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product])
    return tiktok, channel, product


def place(server, status: str = "AWAITING_SHIPMENT", quantity: int = 2, **faults):
    return server.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "SKU-0", "quantity": quantity}],
        status=status,
        faults=NotifyFaults(**faults) if faults else None,
    )


def level(product) -> StockLevel:
    return StockLevel.objects.get(product=product)


def active_reserved(product) -> Decimal:
    return sum(
        (r.quantity for r in Reservation.objects.filter(level__product=product, status="active")),
        Decimal(0),
    )


def test_processing_fetches_the_detail_and_reserves(shop):
    server, channel, product = shop
    # when the marketplace notifies a paid order
    order = place(server, quantity=3)
    # then the event was processed: the order fetched and its stock reserved
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 1
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    assert active_reserved(product) == Decimal(3)
    assert level(product).available == Decimal(7)
    assert any("/order/202309/orders" in r.path for r in server.app.requests)


def test_processing_paid_then_shipped_commits(shop):
    server, channel, product = shop
    order = place(server, quantity=2)
    server.app.order_update(order.order_id, status="IN_TRANSIT")
    assert WebhookEvent.objects.filter(status="processed").count() == 2
    assert Order.objects.get(channel=channel).status == "shipped"
    stock = level(product)
    assert stock.on_hand == Decimal(8)
    assert stock.reserved == Decimal(0)


def test_processing_cancelled_releases(shop):
    server, channel, product = shop
    order = place(server, quantity=2)
    server.app.order_update(order.order_id, status="CANCELLED")
    assert Order.objects.get(channel=channel).status == "cancelled"
    stock = level(product)
    assert (stock.on_hand, stock.reserved) == (Decimal(10), Decimal(0))


def test_processing_out_of_order_never_moves_back(shop):
    server, channel, product = shop
    # given the "paid" notification held back, and "shipped" delivered first
    order = place(server, quantity=2, hold=True)
    assert WebhookEvent.objects.count() == 0
    server.app.order_update(order.order_id, status="IN_TRANSIT")
    assert Order.objects.get(channel=channel).status == "shipped"
    # when the older notification arrives late
    [delivery] = server.app.notifications_release()
    # then it is stored and processed, and the order stays shipped, stock committed once
    assert delivery.http_status == 200
    assert WebhookEvent.objects.filter(status="processed").count() == 2
    assert Order.objects.get(channel=channel).status == "shipped"
    stock = level(product)
    assert (stock.on_hand, stock.reserved) == (Decimal(8), Decimal(0))


def test_processing_1000_copies_make_one_event_one_order_one_reservation(shop):
    server, channel, product = shop
    order = place(server, quantity=1, drop=True)
    body, headers = server.app.notification(order, bad_signature=False)
    client = Client()
    path = f"/webhooks/tiktok/{channel.pk}/"
    answers = {
        client.post(
            path, body, content_type="application/json", HTTP_AUTHORIZATION=headers["Authorization"]
        ).status_code
        for _ in range(1000)
    }
    assert answers == {200}
    assert WebhookEvent.objects.count() == 1
    assert Order.objects.count() == 1
    assert Reservation.objects.filter(level__product=product).count() == 1
    assert active_reserved(product) == Decimal(1)


def test_processing_20_concurrent_copies_make_one_order_one_reservation(shop):
    server, _channel, product = shop
    order = place(server, quantity=1, drop=True)
    body, headers = server.app.notification(order, bad_signature=False)
    barrier = threading.Barrier(20)
    deliveries = []

    def send() -> None:
        barrier.wait()
        deliveries.append(server.app._deliver(order.order_id, order.status, body, headers))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [d.http_status for d in deliveries] == [200] * 20
    assert WebhookEvent.objects.count() == 1
    assert Order.objects.count() == 1
    assert Reservation.objects.filter(level__product=product).count() == 1


def test_polling_finds_a_dropped_notification_and_moves_the_cursor(shop):
    server, channel, product = shop
    order = place(server, quantity=2, drop=True)
    assert WebhookEvent.objects.count() == 0

    report = orders_poll_channel(channel_id=channel.pk)

    assert report.outcome == "ok"
    assert report.applied == 1
    assert Order.objects.get(channel=channel, external_id=order.order_id).status == "paid"
    assert active_reserved(product) == Decimal(2)
    channel.refresh_from_db()
    assert channel.orders_cursor == report.until
    assert channel.orders_polled_at is not None
    # the next poll overlaps the cursor and changes nothing
    again = orders_poll_channel(channel_id=channel.pk)
    assert again.since == report.until - timedelta(seconds=600)
    assert Reservation.objects.filter(level__product=product).count() == 1


def test_polling_failure_keeps_the_cursor(shop):
    server, channel, _product = shop
    place(server, drop=True)
    server.app.inject(Fault(status=500, count=20))
    report = orders_poll_channel(channel_id=channel.pk)
    assert report.outcome == "failed"
    channel.refresh_from_db()
    assert channel.orders_cursor is None
    assert channel.orders_polled_at is not None
    assert Order.objects.count() == 0


def test_polling_one_at_a_time_per_channel(shop):
    from channels_sync.services.run_lock import RunLock
    from webhooks.services.polling import POLL_LOCK_KEY

    _server, channel, _product = shop
    lock = RunLock(POLL_LOCK_KEY.format(channel_id=channel.pk), seconds=30)
    assert lock.acquire()
    try:
        assert orders_poll_channel(channel_id=channel.pk).outcome == "busy"
    finally:
        lock.release()


def test_webhook_and_poll_of_the_same_order_make_one_effect(shop):
    server, channel, product = shop
    order = place(server, quantity=2)
    orders_poll_channel(channel_id=channel.pk)
    server.app.order_update(order.order_id, status="IN_TRANSIT", faults=NotifyFaults(drop=True))
    orders_poll_channel(channel_id=channel.pk)
    # the shipped notification arrives after the poll applied it
    body, headers = server.app.notification(server.app.orders[order.order_id], bad_signature=False)
    server.app._deliver(order.order_id, "IN_TRANSIT", body, headers)
    assert Order.objects.count() == 1
    assert Reservation.objects.filter(level__product=product).count() == 1
    stock = level(product)
    assert (stock.on_hand, stock.reserved) == (Decimal(8), Decimal(0))


@contextmanager
def broker_down() -> Iterator[None]:
    """Publish tasks to a broker nobody listens on (not eagerly) for a block."""
    from config.celery import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    names = ("broker_url", "broker_write_url", "task_always_eager")
    saved = {name: app.conf[name] for name in names}
    app.conf.update(broker_url=url, broker_write_url=url, task_always_eager=False)
    app._pool = app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.update(saved)
        app._pool = app.amqp._producer_pool = None


def test_crash_after_storing_the_sweep_processes_the_event(shop):
    server, channel, product = shop
    # given an event stored whose processing could not be queued (the broker is down)
    with broker_down():
        place(server, quantity=2)
    assert [d.http_status for d in server.app.deliveries] == [200]
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert Order.objects.count() == 0
    # when the sweep runs within the grace, it leaves the event; past it, processes it
    assert webhook_events_sweep() == []
    five_minutes_ago = timezone.now() - timedelta(minutes=5)
    WebhookEvent.objects.update(received_at=five_minutes_ago, queued_at=five_minutes_ago)
    assert webhook_events_sweep() == [event.pk]
    # then
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Order.objects.get(channel=channel).status == "paid"
    assert active_reserved(product) == Decimal(2)


def detail_calls(server) -> int:
    return sum(1 for r in server.app.requests if r.path.endswith("/order/202309/orders"))


def make_due(event: WebhookEvent) -> None:
    """Let time pass until the event's next attempt is due."""
    WebhookEvent.objects.filter(pk=event.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )


def test_eager_processing_failure_never_retries_inside_the_request(shop, settings):
    settings.WEBHOOK_PROCESS_MAX_RETRIES = 2
    server, _channel, _product = shop
    order = place(server, quantity=2, drop=True)
    server.app.inject(Fault(status=503, count=3))
    body, headers = server.app.notification(order, bad_signature=False)
    # when the notification arrives (processed inside its request: eager mode)
    delivery = server.app._deliver(order.order_id, order.status, body, headers)
    # then it is acknowledged after one marketplace call, and the event waits for the sweep
    assert delivery.http_status == 200
    assert detail_calls(server) == 1
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.attempts == 1
    assert event.next_attempt_at > timezone.now()
    assert event.locked_until is None
    assert event.queued_at is None
    # and the sweep leaves it until its attempt is due
    assert webhook_events_sweep() == []
    make_due(event)
    assert webhook_events_sweep() == [event.pk]
    assert detail_calls(server) == 2


def test_processing_failure_retries_then_dead_letters_and_the_retry_reprocesses(shop, settings):
    settings.WEBHOOK_PROCESS_MAX_RETRIES = 2
    server, channel, product = shop
    # given the marketplace answering 5xx to every call for a while
    order = place(server, quantity=2, drop=True)
    server.app.inject(Fault(status=503, count=3))
    body, headers = server.app.notification(order, bad_signature=False)
    server.app._deliver(order.order_id, order.status, body, headers)
    event = WebhookEvent.objects.get()
    # when the sweep retries it each time its attempt is due (eager mode: the sweep retries)
    for _ in range(2):
        assert WebhookEvent.objects.get().status == WebhookEvent.Status.RECEIVED
        make_due(event)
        assert webhook_events_sweep() == [event.pk]
    # then the event was tried 1 + 2 times, failed, and its task is a dead letter
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert event.attempts == 3
    assert event.error
    letter = DeadLetter.objects.get(task_name="webhooks.process_event")
    assert letter.kwargs == {"event_id": event.pk}
    assert Order.objects.count() == 0
    # a failed event is not the sweep's
    make_due(event)
    assert webhook_events_sweep() == []
    # when the marketplace is back (the faults used up) and staff retry the dead letter
    dead_letter_retry(dead_letter=letter, actor="user:staff")
    # then the stored event is processed
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Order.objects.get(channel=channel).status == "paid"
    assert active_reserved(product) == Decimal(2)


def test_order_the_marketplace_does_not_return_retries_then_fails(shop, settings):
    settings.WEBHOOK_PROCESS_MAX_RETRIES = 1
    server, _channel, _product = shop
    order = place(server, drop=True)
    body, headers = server.app.notification(order, bad_signature=False)
    del server.app.orders[order.order_id]  # not (yet) in the marketplace's detail
    server.app._deliver(order.order_id, order.status, body, headers)
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    make_due(event)
    webhook_events_sweep()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert event.attempts == 2
    assert "did not return order" in event.error


def test_two_workers_processing_one_event_claim_it_once(shop):
    server, _channel, product = shop
    # given a stored event not processed yet
    with broker_down():
        place(server, quantity=1)
    event = WebhookEvent.objects.get()
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        barrier.wait()
        outcomes.append(webhook_event_process(event_id=event.pk))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["processed", "skipped"]
    event.refresh_from_db()
    assert event.attempts == 1
    assert Reservation.objects.filter(level__product=product).count() == 1


def test_reprocess_queues_events_whatever_their_status(shop):
    server, _channel, product = shop
    place(server, quantity=2)
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert webhook_events_reprocess(event_ids=[event.pk], actor="user:staff") == [event.pk]
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 2
    assert Reservation.objects.filter(level__product=product).count() == 1


def test_purge_keeps_recent_and_unprocessed_events(lazada, wire, settings):
    settings.WEBHOOK_EVENT_RETENTION_DAYS = 30
    channel = wire(lazada, "lazada")
    old = timezone.now() - timedelta(days=31)
    recent = timezone.now() - timedelta(days=29)

    def event(key: str, status: str, when) -> WebhookEvent:
        return WebhookEvent.objects.create(
            channel=channel, topic="order", event_key=key, body=b"{}", status=status,
            received_at=when,
        )  # fmt: skip

    gone = [event("a", "processed", old), event("b", "ignored", old)]
    kept = [
        event("c", "processed", recent),
        event("d", "received", old),
        event("e", "failed", old),
        event("f", "ignored", recent),
    ]
    assert webhook_events_purge() == 2
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {e.pk for e in kept}
    assert not WebhookEvent.objects.filter(pk__in=[e.pk for e in gone]).exists()


def test_processing_an_inactive_channels_event_then_again_is_skipped(shop):
    server, channel, _product = shop
    with broker_down():
        place(server)
    event = WebhookEvent.objects.get()
    Channel.objects.filter(pk=channel.pk).update(active=False)
    # an inactive channel's sale still counts
    assert webhook_event_process(event_id=event.pk) == "processed"
    assert webhook_event_process(event_id=event.pk) == "skipped"


PAID_STATUS = {
    "shopee": "READY_TO_SHIP",
    "lazada": "pending",
    "tiktok": "AWAITING_SHIPMENT",
    "tokopedia": "AWAITING_SHIPMENT",
}


@pytest.mark.parametrize("channel_type", sorted(PAID_STATUS))
def test_processing_each_marketplace_notification_reserves(
    channel_type, sandboxes, hooked, stocked, warehouse
):
    server = sandboxes[channel_type]
    product = stocked(10)
    channel = hooked(server, channel_type, warehouses=[warehouse], products=[product])
    order = server.app.order_create(
        lines=[{"keys": listing_keys(channel_type, 0), "sku": "SKU-0", "quantity": 4}],
        status=PAID_STATUS[channel_type],
    )
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.PROCESSED
    assert Order.objects.get(channel=channel, external_id=order.order_id).status == "paid"
    assert active_reserved(product) == Decimal(4)


SHIPPED_STATUS = {
    "shopee": "SHIPPED",
    "lazada": "shipped",
    "tiktok": "IN_TRANSIT",
    "tokopedia": "IN_TRANSIT",
}


@pytest.mark.parametrize("channel_type", sorted(PAID_STATUS))
def test_each_marketplace_dropped_then_polled_then_notified_makes_one_effect(
    channel_type, sandboxes, hooked, stocked, warehouse
):
    # given an order whose notification was dropped
    server = sandboxes[channel_type]
    product = stocked(10)
    channel = hooked(server, channel_type, warehouses=[warehouse], products=[product])
    order = server.app.order_create(
        lines=[{"keys": listing_keys(channel_type, 0), "sku": "SKU-0", "quantity": 3}],
        status=PAID_STATUS[channel_type],
        faults=NotifyFaults(drop=True),
    )
    assert WebhookEvent.objects.count() == 0
    # when a poll finds it, then it ships (notified twice) and a poll sees that too
    report = orders_poll_channel(channel_id=channel.pk)
    assert (report.outcome, report.applied) == ("ok", 1)
    assert active_reserved(product) == Decimal(3)
    server.app.order_update(
        order.order_id, status=SHIPPED_STATUS[channel_type], faults=NotifyFaults(copies=2)
    )
    Channel.objects.filter(pk=channel.pk).update(orders_cursor=None)  # look back again
    orders_poll_channel(channel_id=channel.pk)
    # then one order, one reservation, committed once
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "shipped"
    assert Reservation.objects.filter(level__product=product).count() == 1
    stock = level(product)
    assert (stock.on_hand, stock.reserved) == (Decimal(7), Decimal(0))
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).count() == 1


@contextmanager
def queued_not_consumed() -> Iterator[None]:
    """Publish tasks to the real broker (not eagerly) with no worker: a queue backlog."""
    from config.celery import app

    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = True
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("webhooks")


def test_sweep_never_queues_an_event_whose_task_still_waits_in_the_queue(shop):
    server, _channel, _product = shop
    with queued_not_consumed():
        # given an event whose task waits behind a backlog longer than the grace
        place(server, quantity=1)
        event = WebhookEvent.objects.get()
        assert event.status == WebhookEvent.Status.RECEIVED
        assert event.queued_at is not None
        old = timezone.now() - timedelta(minutes=5)
        WebhookEvent.objects.update(received_at=old)
        # when the sweep runs, then it leaves it to that task
        assert webhook_events_sweep() == []
        # once queued longer ago than the grace, the sweep queues it again, once
        WebhookEvent.objects.update(queued_at=old)
        assert webhook_events_sweep() == [event.pk]
        event.refresh_from_db()
        assert event.queued_at > timezone.now() - timedelta(seconds=30)
        assert webhook_events_sweep() == []
        # an old event reprocessed by staff is queued then, not by every sweep after
        WebhookEvent.objects.update(queued_at=old)
        assert webhook_events_reprocess(event_ids=[event.pk], actor="user:staff") == [event.pk]
        assert webhook_events_sweep() == []


def test_two_sweeps_at_once_queue_each_event_once(shop):
    server, _channel, _product = shop
    with broker_down():
        for _ in range(3):
            place(server, quantity=1)
    old = timezone.now() - timedelta(minutes=5)
    WebhookEvent.objects.update(received_at=old, queued_at=old)
    taken: list[list[int]] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        from django.db import connection

        barrier.wait()
        try:
            with queued_not_consumed():
                taken.append(webhook_events_sweep())
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = sorted(taken[0] + taken[1])
    assert ids == sorted(WebhookEvent.objects.values_list("pk", flat=True))


def test_processing_out_of_time_retries_instead_of_failing(shop, monkeypatch, settings):
    server, channel, product = shop

    def apply(**kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr("webhooks.services.events.order_apply_market", apply)
    # when the task's soft time limit strikes while the order is applied
    place(server, quantity=2)
    # then the event is not failed for good: it waits for a retry, no dead letter
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.next_attempt_at is not None
    assert event.locked_until is None
    assert "SoftTimeLimitExceeded" in event.error
    assert not DeadLetter.objects.exists()
    # and its retry applies the order
    monkeypatch.undo()
    make_due(event)
    assert webhook_events_sweep() == [event.pk]
    assert Order.objects.get(channel=channel).status == "paid"
    assert active_reserved(product) == Decimal(2)


def test_reprocess_reads_the_stored_body_again(lazada, hooked, stocked, warehouse):
    # given a Lazada notification kept as unreadable (as a parser with a gap would have)
    product = stocked(10)
    channel = hooked(lazada, "lazada", warehouses=[warehouse], products=[product])
    order = lazada.app.order_create(
        lines=[{"keys": listing_keys("lazada", 0), "sku": "SKU-0", "quantity": 2}],
        status="pending",
        faults=NotifyFaults(drop=True),
    )
    body, _headers = lazada.app.notification(order, bad_signature=False)
    event = WebhookEvent.objects.create(
        channel=channel,
        topic="unreadable",
        event_key="body:gap",
        body=body,
        status=WebhookEvent.Status.IGNORED,
        processed_at=timezone.now(),
    )
    # when staff reprocess it
    assert webhook_events_reprocess(event_ids=[event.pk], actor="user:staff") == [event.pk]
    # then the body is read again: an order event, processed, the order reserved
    event.refresh_from_db()
    assert (event.topic, event.order_id) == ("order", order.order_id)
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Order.objects.get(channel=channel, external_id=order.order_id).status == "paid"
    assert active_reserved(product) == Decimal(2)


def test_dead_letter_retry_reads_the_stored_body_again(shop):
    server, channel, product = shop
    # given an event failed for good with fields a parser got wrong (an order that is not)
    order = place(server, quantity=1, drop=True)
    body, _headers = server.app.notification(order, bad_signature=False)
    event = WebhookEvent.objects.create(
        channel=channel,
        topic="order",
        event_key="k-wrong",
        order_id="no-such-order",
        body=body,
        status=WebhookEvent.Status.FAILED,
        attempts=7,
    )
    letter = dead_letter_record(
        source="webhooks",
        task_name="webhooks.process_event",
        args=[],
        kwargs={"event_id": event.pk},
        error=RuntimeError("the marketplace did not return order no-such-order (yet)"),
        attempts=7,
        task_id="",
    )
    # when staff retry the dead letter
    dead_letter_retry(dead_letter=letter, actor="user:staff")
    # then the body's own order is processed
    event.refresh_from_db()
    assert event.order_id == order.order_id
    assert event.status == WebhookEvent.Status.PROCESSED
    assert active_reserved(product) == Decimal(1)
