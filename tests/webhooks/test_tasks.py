"""Webhook tasks: a real worker consuming the `webhooks` queue, the poll fan-out, schedules."""

import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from channels_sync.sandbox.base import NotifyFaults
from orders.models import Order
from tests.channels_sync.conftest import listing_keys
from tests.helpers import wait_for
from webhooks import tasks
from webhooks.models import WebhookEvent


@pytest.mark.worker
def test_worker_processes_a_webhook_from_the_webhooks_queue(
    tiktok, hooked, stocked, warehouse, celery_worker
):
    # given a channel whose notifications reach the live server, tasks going to the broker
    product = stocked(5)
    channel = hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product])
    # when the marketplace notifies a paid order
    order = tiktok.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "SKU-0", "quantity": 2}],
        status="AWAITING_SHIPMENT",
    )
    assert [d.http_status for d in tiktok.app.deliveries] == [200]
    # then the worker processes the event: the order exists with its stock reserved
    wait_for(lambda: WebhookEvent.objects.filter(status="processed").exists())
    row = Order.objects.get(channel=channel, external_id=order.order_id)
    assert row.status == "paid"
    assert product.stock_levels.get().reserved == Decimal(2)


@pytest.mark.worker
def test_worker_retries_a_failed_processing_through_the_broker_then_dead_letters(
    tiktok, hooked, stocked, warehouse, celery_worker, settings
):
    from core.models import DeadLetter
    from core.sandbox import Fault

    settings.WEBHOOK_PROCESS_MAX_RETRIES = 2
    settings.WEBHOOK_PROCESS_RETRY_BACKOFF_SECONDS = 0.2
    product = stocked(5)
    hooked(tiktok, "tiktok", warehouses=[warehouse], products=[product])
    # given the marketplace failing every detail call
    tiktok.app.inject(Fault(status=503, count=100))
    tiktok.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "SKU-0", "quantity": 1}],
        status="AWAITING_SHIPMENT",
    )
    # then with a broker the task retries itself (1 + 2 attempts), then dead-letters
    wait_for(lambda: WebhookEvent.objects.filter(status="failed").exists(), timeout=30)
    event = WebhookEvent.objects.get()
    assert event.attempts == 3
    # (the dead letter is written by the task's failure handler, just after the event)
    wait_for(lambda: DeadLetter.objects.filter(task_name="webhooks.process_event").exists())
    letter = DeadLetter.objects.get(task_name="webhooks.process_event")
    assert letter.kwargs == {"event_id": event.pk}


@pytest.mark.django_db(transaction=True)
def test_poll_orders_polls_every_active_channel(tiktok, lazada, wire, warehouse, stocked):
    product = stocked(5)
    active = wire(tiktok, "tiktok", warehouses=[warehouse], products=[product])
    inactive = wire(lazada, "lazada", warehouses=[warehouse], active=False)
    tiktok.app.order_create(
        lines=[{"keys": listing_keys("tiktok", 0), "sku": "SKU-0", "quantity": 1}],
        status="AWAITING_SHIPMENT",
        faults=NotifyFaults(drop=True),
    )

    assert tasks.poll_orders() == [active.pk]

    active.refresh_from_db()
    inactive.refresh_from_db()
    assert active.orders_cursor is not None
    assert inactive.orders_polled_at is None
    assert Order.objects.filter(channel=active).count() == 1


@pytest.mark.django_db
def test_schedules_include_the_webhook_sweep_purge_and_order_poll(settings):
    settings.ORDERS_POLL_INTERVAL_SECONDS = 120
    call_command("setup_schedules", stdout=io.StringIO())
    ours = PeriodicTask.objects.filter(name__startswith="syncstore: ")
    sweep = ours.get(task="webhooks.sweep")
    assert (sweep.interval.every, sweep.interval.period) == (60, IntervalSchedule.SECONDS)
    purge = ours.get(task="webhooks.purge_events")
    assert (purge.crontab.minute, purge.crontab.hour) == ("10", "4")
    poll = ours.get(task="webhooks.poll_orders")
    assert poll.interval.every == 120
    # a changed interval is written at the next setup
    settings.ORDERS_POLL_INTERVAL_SECONDS = 300
    call_command("setup_schedules", stdout=io.StringIO())
    assert ours.get(task="webhooks.poll_orders").interval.every == 300


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("webhooks.poll_orders", "orders"),
        ("webhooks.poll_channel", "orders"),
        ("webhooks.process_event", "webhooks"),
        ("webhooks.sweep", "webhooks"),
    ],
)
def test_polls_are_routed_to_the_orders_queue_notifications_to_webhooks(task, queue):
    from config.celery import app

    assert app.amqp.router.route({}, task)["queue"].name == queue
