import io
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from config.celery import app
from inventory.models import Reservation
from inventory.services import stock_reserve, stock_set
from tests.conftest import TEST_ORIGIN
from tests.inventory.factories import ProductFactory, WarehouseFactory, default_vendor


def ours():
    return PeriodicTask.objects.filter(name__startswith="syncstore: ")


@pytest.mark.django_db
def test_setup_schedules_writes_code_schedules_idempotently():
    out = io.StringIO()
    call_command("setup_schedules", stdout=out)
    assert "13 created" in out.getvalue()
    expire = ours().get(name="syncstore: expire reservations")
    assert expire.task == "inventory.expire_reservations"
    assert (expire.interval.every, expire.interval.period) == (60, IntervalSchedule.SECONDS)
    purge = ours().get(name="syncstore: purge idempotency keys")
    assert purge.crontab.minute == "17"

    again = io.StringIO()
    call_command("setup_schedules", stdout=again)
    assert "0 created, 0 updated, 13 unchanged" in again.getvalue()
    assert ours().count() == 13
    assert set(ours().values_list("task", flat=True)) == {
        "inventory.expire_reservations",
        "core.purge_idempotency_keys",
        "erp_mapping.pull_all",
        "erp_mapping.check_agents",
        "erp_mapping.purge_archives",
        "erp_mapping.reconcile_all",
        "erp_mapping.erp_sync_sweep",
        "channels_sync.sweep",
        "channels_sync.reconcile_channels",
        "webhooks.sweep",
        "webhooks.purge_events",
        "webhooks.poll_orders",
        "orders.reprocess_parked_all",
    }
    nightly = ours().get(task="erp_mapping.pull_all")
    assert (nightly.crontab.minute, nightly.crontab.hour) == ("0", "2")
    assert str(nightly.crontab.timezone) == "UTC"
    agents = ours().get(task="erp_mapping.check_agents")
    assert (agents.interval.every, agents.interval.period) == (300, IntervalSchedule.SECONDS)
    reconcile = ours().get(task="channels_sync.reconcile_channels")
    assert (reconcile.interval.every, reconcile.interval.period) == (
        14400,
        IntervalSchedule.SECONDS,
    )
    sweep = ours().get(task="channels_sync.sweep")
    assert (sweep.interval.every, sweep.interval.period) == (60, IntervalSchedule.SECONDS)
    parked = ours().get(task="orders.reprocess_parked_all")
    assert (parked.interval.every, parked.interval.period) == (300, IntervalSchedule.SECONDS)


@pytest.mark.django_db
def test_setup_schedules_restores_edits_and_disables_removed_ones():
    call_command("setup_schedules", stdout=io.StringIO())
    ours().filter(name="syncstore: expire reservations").update(enabled=False)
    PeriodicTask.objects.create(
        name="syncstore: retired job",
        task="core.nothing",
        interval=IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS),
    )
    PeriodicTask.objects.create(
        name="someone else's",
        task="core.nothing",
        interval=IntervalSchedule.objects.get(every=5),
    )

    out = io.StringIO()
    call_command("setup_schedules", stdout=out)

    assert "1 updated" in out.getvalue()
    assert "1 disabled" in out.getvalue()
    assert ours().get(name="syncstore: expire reservations").enabled is True
    assert ours().get(name="syncstore: retired job").enabled is False
    assert PeriodicTask.objects.get(name="someone else's").enabled is True


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_sends_a_due_schedule_and_a_worker_runs_it(celery_worker):
    # given: a reservation past its time, and the schedules in the beat database
    warehouse = WarehouseFactory(vendor=default_vendor(), code="MAIN", is_default=True)
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal(5), origin=TEST_ORIGIN)
    reservation = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=Decimal(2),
        ttl=timedelta(seconds=1),
        origin=TEST_ORIGIN,
    )
    Reservation.objects.filter(pk=reservation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    call_command("setup_schedules", stdout=io.StringIO())
    PeriodicTask.objects.filter(name="syncstore: expire reservations").update(
        last_run_at=timezone.now() - timedelta(minutes=5)
    )

    # when: beat's database scheduler ticks (it publishes due tasks to the Redis broker)
    scheduler = DatabaseScheduler(app=app)
    deadline = time.monotonic() + 20
    reservation.refresh_from_db()
    while reservation.status == Reservation.Status.ACTIVE and time.monotonic() < deadline:
        scheduler.tick()
        time.sleep(0.2)
        reservation.refresh_from_db()

    # then: the worker ran inventory.expire_reservations
    assert reservation.status == Reservation.Status.EXPIRED
    assert reservation.level.reserved == Decimal(0)
    task = PeriodicTask.objects.get(name="syncstore: expire reservations")
    assert task.total_run_count >= 1


@pytest.mark.django_db
@pytest.mark.parametrize("seconds", [0, -60])
def test_setup_schedules_refuses_an_interval_setting_of_zero_or_less(settings, seconds):
    from django.core.management.base import CommandError

    # given schedules written once, then the poll interval set to nothing
    call_command("setup_schedules", stdout=io.StringIO())
    before = set(ours().values_list("name", "enabled", "interval__every"))
    settings.ORDERS_POLL_INTERVAL_SECONDS = seconds
    # when the schedules are written again, then the setting is named and nothing changes
    with pytest.raises(CommandError, match="ORDERS_POLL_INTERVAL_SECONDS must be a positive"):
        call_command("setup_schedules", stdout=io.StringIO())
    assert set(ours().values_list("name", "enabled", "interval__every")) == before


def test_setup_schedules_prints_a_setting_interval_as_seconds(db, settings):
    settings.ORDERS_POLL_INTERVAL_SECONDS = 240
    out = io.StringIO()
    call_command("setup_schedules", stdout=out)
    line = next(row for row in out.getvalue().splitlines() if "webhooks.poll_orders" in row)
    assert line.endswith("every 240 s")
