import io
import signal
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from core.sandbox import SandboxServer
from erp_mapping import tasks
from erp_mapping.models import SyncRun
from erp_mapping.sandbox import ErpSandbox
from erp_mapping.services.connections import erp_connection_set
from erp_mapping.services.pull import archive_name, archives_purge, erp_pull_run
from inventory.models import Product, StockLevel, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import stock_set
from tests.conftest import TEST_ORIGIN
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory

TOKEN = "pull-test-token"


def serve(erp: ErpSandbox, rows: list[dict]) -> None:
    erp.configure(rows=rows)


def products(*skus: str) -> list[Product]:
    return [ProductFactory(sku=sku) for sku in skus]


def on_hand(sku: str, code: str = "MAIN") -> Decimal | None:
    level = StockLevel.objects.filter(product__sku=sku, warehouse__code=code).first()
    return None if level is None else level.on_hand


def pull(vendor, **kwargs) -> SyncRun:
    run = erp_pull_run(vendor=vendor, **kwargs)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_erp_pull_applies_changed_levels_and_records_the_run(vendor, warehouse, store, erp):
    # given: three known products, one unchanged, one missing its level
    same, up, _ = products("SAME", "UP", "NEWLVL")
    stock_set(product=same, warehouse=warehouse, quantity=Decimal("4"), origin=TEST_ORIGIN)
    stock_set(product=up, warehouse=warehouse, quantity=Decimal("1"), origin=TEST_ORIGIN)
    untouched = StockLevel.objects.get(product=same)
    serve(
        erp,
        [
            {"sku": "SAME", "qty": 4},
            {"sku": "UP", "qty": 7.5},
            {"sku": "NEWLVL", "qty": 3, "warehouse": "STORE"},
        ],
    )

    # when
    run = pull(vendor)

    # then
    assert run.status == SyncRun.Status.COMPLETED
    assert (run.skus_processed, run.items_changed, run.invalid_rows, run.unknown_skus) == (
        3,
        2,
        0,
        0,
    )
    assert run.attempts == 1
    assert run.api_latency_ms is not None
    assert run.duration_ms is not None
    assert run.completed_at is not None
    assert run.details["levels_created"] == 1
    assert on_hand("UP") == Decimal("7.5")
    assert on_hand("NEWLVL", "STORE") == 3
    assert StockLevel.objects.get(product=same).updated_at == untouched.updated_at
    movements = StockMovement.objects.filter(kind="erp_sync")
    assert movements.count() == 2
    assert set(movements.values_list("reference", flat=True)) == {f"sync-run:{run.pk}"}
    assert ledger_mismatches() == []
    # the raw bytes were archived under the dated path before processing
    assert run.archive_path == archive_name(run.started_at)
    assert run.archive_path.startswith(f"inventory-sync/{run.started_at:%Y-%m-%d}/inventory_")
    archived = storages["erp_archive"].open(run.archive_path).read()
    assert archived.startswith(b'[{"sku":"SAME"')
    assert len(archived) == run.bytes_received

    # a second pull of the same answer changes nothing
    again = pull(vendor)
    assert (again.status, again.items_changed) == (SyncRun.Status.COMPLETED, 0)
    assert StockMovement.objects.filter(kind="erp_sync").count() == 2


@pytest.mark.django_db
def test_erp_pull_retries_server_errors_then_succeeds(vendor, erp):
    products("A")
    serve(erp, [{"sku": "A", "qty": 5}])
    erp.configure(fail_first=2, fail_status=503)

    run = pull(vendor)

    assert run.status == SyncRun.Status.COMPLETED
    assert run.attempts == 3
    assert on_hand("A") == 5
    assert [r.path for r in erp.requests].count("/inventory") == 3


@pytest.mark.django_db
def test_erp_pull_gives_up_after_three_retries_applies_nothing_and_alerts(
    vendor, erp, slack, django_capture_on_commit_callbacks
):
    products("A")
    serve(erp, [{"sku": "A", "qty": 5}])
    erp.configure(fail_first=10)

    with django_capture_on_commit_callbacks(execute=True):
        run = pull(vendor)

    assert run.status == SyncRun.Status.FAILED
    assert run.attempts == 4
    assert run.error_code == "erp_error_status"
    assert "500" in run.error_message
    assert on_hand("A") is None
    assert not StockMovement.objects.filter(kind="erp_sync").exists()
    wait_for(lambda: slack.messages)
    assert "ERP pull failed" in str(slack.messages[0])


@pytest.mark.django_db
def test_erp_pull_wrong_token_is_not_retried(vendor, erp):
    erp.configure(token="another-token", rows=[])

    run = pull(vendor)

    assert run.status == SyncRun.Status.FAILED
    assert run.attempts == 1
    assert run.error_code == "erp_unauthorized"
    assert "401" in run.error_message
    assert len(erp.requests) == 1


@pytest.mark.django_db
def test_erp_pull_times_out_connections_and_retries(vendor, erp, settings):
    settings.ERP_PULL_HTTP_TIMEOUT_SECONDS = 0.2
    erp.configure(rows=[], latency=0.5)

    run = pull(vendor)

    assert run.status == SyncRun.Status.FAILED
    assert run.attempts == 4
    assert run.error_code == "erp_unreachable"
    assert "timeout" in run.error_message.lower()


@pytest.mark.django_db
def test_erp_pull_reports_invalid_rows_and_applies_the_valid_ones(vendor, erp):
    products("OK1", "OK2", "DUP")
    serve(
        erp,
        [
            {"sku": "OK1", "qty": 1},
            {"qty": 3},
            {"sku": "", "qty": 3},
            {"sku": "OK2", "qty": "12"},
            {"sku": "OK2", "qty": -1},
            {"sku": "OK2", "qty": 1.2345},
            {"sku": "DUP", "qty": 5},
            {"sku": "OK2", "qty": 2, "warehouse": "NOWHERE"},
            {"sku": "DUP", "qty": 6},
            "not an object",
            {"sku": "OK2", "qty": 2, "discontinued": "yes"},
        ],
    )

    run = pull(vendor)

    assert run.status == SyncRun.Status.COMPLETED
    assert run.invalid_rows == 9
    assert run.details["invalid_by_code"] == {
        "missing_sku": 2,
        "invalid_quantity": 2,
        "negative_quantity": 1,
        "not_an_object": 1,
        "invalid_discontinued": 1,
        "duplicate": 1,
        "unknown_warehouse": 1,
    }
    assert run.details["duplicates"] == [{"sku": "DUP", "warehouse": "MAIN", "count": 2}]
    assert {s["index"] for s in run.details["invalid_samples"] if "index" in s} == {
        1,
        2,
        3,
        4,
        5,
        9,
        10,
    }
    # the last duplicate wins; valid rows applied; OK2 only had invalid rows
    assert on_hand("DUP") == 6
    assert on_hand("OK1") == 1
    assert on_hand("OK2") is None
    assert run.skus_processed == 2


@pytest.mark.django_db
def test_erp_pull_counts_unknown_skus_without_creating_them(vendor, erp):
    products("KNOWN")
    serve(erp, [{"sku": "KNOWN", "qty": 1}, {"sku": "NEW-1", "qty": 2}, {"sku": "NEW-2", "qty": 0}])

    run = pull(vendor)

    assert run.unknown_skus == 2
    assert run.details["unknown_sku_list"] == ["NEW-1", "NEW-2"]
    assert not Product.objects.filter(sku__startswith="NEW-").exists()
    assert on_hand("KNOWN") == 1


@pytest.mark.django_db
def test_erp_pull_creates_unknown_skus_when_asked(vendor, erp, settings):
    settings.ERP_PULL_CREATE_UNKNOWN = True
    serve(erp, [{"sku": "NEW-1", "qty": 2}])

    run = pull(vendor)

    assert run.details["products_created"] == 1
    assert Product.objects.get(sku="NEW-1").vendor == vendor
    assert on_hand("NEW-1") == 2


@pytest.mark.django_db
def test_erp_pull_sets_and_clears_discontinued(vendor, erp):
    gone, back = products("GONE", "BACK")
    Product.objects.filter(pk=back.pk).update(
        is_discontinued=True, discontinued_at=timezone.now() - timedelta(days=3)
    )
    serve(
        erp,
        [
            {"sku": "GONE", "qty": 0, "discontinued": True},
            {"sku": "BACK", "qty": 4, "discontinued": False},
        ],
    )

    run = pull(vendor)

    gone.refresh_from_db()
    back.refresh_from_db()
    assert gone.is_discontinued
    assert gone.discontinued_at is not None
    assert not back.is_discontinued
    assert back.discontinued_at is None
    assert run.details["discontinued_changed"] == 2
    # the flag alone, unchanged, is not a change the second time
    assert pull(vendor).details["discontinued_changed"] == 0


@pytest.mark.django_db
def test_erp_pull_dry_run_writes_only_the_run(vendor, warehouse, erp, archive_dir):
    (product,) = products("A")
    stock_set(product=product, warehouse=warehouse, quantity=Decimal("1"), origin=TEST_ORIGIN)
    serve(erp, [{"sku": "A", "qty": 9, "discontinued": True}, {"sku": "B", "qty": 1}])
    movements = StockMovement.objects.count()

    run = pull(vendor, dry_run=True)

    assert run.status == SyncRun.Status.COMPLETED
    assert run.dry_run
    assert run.items_changed == 2
    assert run.unknown_skus == 1
    assert on_hand("A") == 1
    assert StockMovement.objects.count() == movements
    product.refresh_from_db()
    assert not product.is_discontinued
    assert run.archive_path == ""
    assert not archive_dir.exists() or not any(archive_dir.rglob("*.json"))


@pytest.mark.django_db
def test_erp_pull_dry_run_neither_waits_for_nor_holds_the_run_lock(vendor, erp):
    SyncRun.objects.create(vendor=vendor, started_at=timezone.now())  # a real run, running
    serve(erp, [])

    dry = pull(vendor, dry_run=True)

    assert dry.status == SyncRun.Status.COMPLETED
    SyncRun.objects.filter(status=SyncRun.Status.RUNNING).update(status=SyncRun.Status.FAILED)
    SyncRun.objects.create(vendor=vendor, started_at=timezone.now(), dry_run=True)
    assert pull(vendor).status == SyncRun.Status.COMPLETED


@pytest.mark.django_db
def test_erp_pull_refuses_unstorable_text_and_inactive_warehouses(vendor, erp):
    products("GOOD", "IDLE")
    WarehouseFactory(vendor=vendor, code="OLD", active=False)
    serve(
        erp,
        [
            {"sku": "A\u0000B", "qty": 1},
            {"sku": "GOOD", "qty": 2, "warehouse": "MA\u0000IN"},
            {"sku": "IDLE", "qty": 3, "warehouse": "OLD"},
            {"sku": "GOOD", "qty": 4},
        ],
    )

    run = pull(vendor)

    assert run.status == SyncRun.Status.COMPLETED
    assert run.details["invalid_by_code"] == {
        "invalid_sku": 1,
        "invalid_warehouse": 1,
        "inactive_warehouse": 1,
    }
    assert on_hand("GOOD") == 4
    assert on_hand("IDLE", "OLD") is None


@pytest.mark.django_db
def test_erp_pull_truncated_answer_fails_and_applies_nothing(vendor, erp):
    products(*(f"T{i}" for i in range(50)))
    serve(erp, [{"sku": f"T{i}", "qty": i + 1} for i in range(50)])
    erp.configure(truncate=0.8)

    run = pull(vendor)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_code == "invalid_json"
    assert "not valid JSON" in run.error_message
    assert run.attempts == 1  # a complete answer that is malformed: trying again won't help
    assert not StockLevel.objects.filter(product__sku__startswith="T").exists()
    assert run.archive_path  # what came is kept for inspection


@pytest.mark.django_db
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_erp_pull_retries_a_cut_off_download_then_completes(vendor, erp, framing):
    # given: the first answer breaks off mid-body, the second is whole
    products(*(f"C{i}" for i in range(50)))
    serve(erp, [{"sku": f"C{i}", "qty": i + 1} for i in range(50)])
    erp.configure(chunk_rows=20, cut_first=1, framing=framing)

    # when
    run = pull(vendor)

    # then: the cut attempt counted, the whole answer applied and archived
    assert run.status == SyncRun.Status.COMPLETED
    assert (run.attempts, run.error_code, run.invalid_rows) == (2, "", 0)
    assert run.skus_processed == 50
    assert on_hand("C49") == 50
    archived = storages["erp_archive"].open(run.archive_path).read()
    assert archived.endswith(b"]")
    assert len(archived) == run.bytes_received
    assert [r.path for r in erp.requests].count("/inventory") == 2


@pytest.mark.django_db
def test_erp_pull_always_cut_off_fails_after_the_retries_and_archives_nothing(
    vendor, erp, archive_dir
):
    products(*(f"C{i}" for i in range(50)))
    serve(erp, [{"sku": f"C{i}", "qty": i + 1} for i in range(50)])
    erp.configure(chunk_rows=20, cut_first=10)

    run = pull(vendor)

    assert run.status == SyncRun.Status.FAILED
    assert run.error_code == "erp_download_incomplete"
    assert "broke off" in run.error_message
    assert run.attempts == 4  # the first try and the three configured retries
    assert (run.archive_path, run.bytes_received) == ("", 0)
    assert not list(archive_dir.rglob("*.json"))
    assert not StockLevel.objects.filter(product__sku__startswith="C").exists()


@pytest.mark.django_db
def test_erp_pull_skips_while_another_run_is_running(
    vendor, erp, slack, django_capture_on_commit_callbacks
):
    holder = SyncRun.objects.create(vendor=vendor, started_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        run = pull(vendor)

    assert run.status == SyncRun.Status.SKIPPED
    assert f"run {holder.pk}" in run.error_message
    assert erp.requests == []
    wait_for(lambda: slack.messages)
    assert "ERP pull skipped" in str(slack.messages[0])


@pytest.mark.django_db
def test_erp_pull_marks_a_stale_running_run_failed_then_runs(vendor, erp):
    stale = SyncRun.objects.create(vendor=vendor, started_at=timezone.now() - timedelta(minutes=31))
    serve(erp, [])

    run = pull(vendor)

    stale.refresh_from_db()
    assert stale.status == SyncRun.Status.FAILED
    assert "Timed out" in stale.error_message
    assert run.status == SyncRun.Status.COMPLETED


def test_erp_pull_task_time_limits_match_the_run_lock(settings):
    from config.celery import app

    pull_task = app.tasks["erp_mapping.pull_vendor"]
    sent = pull_task._get_exec_options()  # what a queued pull carries

    lock_seconds = settings.ERP_PULL_RUN_TIMEOUT_MINUTES * 60
    assert pull_task.time_limit == sent["time_limit"] == lock_seconds
    assert 0 < pull_task.soft_time_limit == sent["soft_time_limit"] < lock_seconds
    # the other ERP tasks are bounded too
    for name in ("erp_mapping.pull_all", "erp_mapping.purge_archives", "erp_mapping.check_agents"):
        assert 0 < app.tasks[name].soft_time_limit < app.tasks[name].time_limit


@pytest.mark.django_db
def test_erp_pull_killed_at_its_hard_time_limit_leaves_a_lock_the_next_start_takes_over(
    vendor, erp, settings
):
    # given: a run whose task was killed at the hard limit (its row still says running)
    killed_at = timezone.now() - timedelta(seconds=settings.ERP_PULL_TIME_LIMIT_SECONDS + 1)
    dead = SyncRun.objects.create(vendor=vendor, started_at=killed_at)
    serve(erp, [])

    # when
    run = pull(vendor)

    # then
    dead.refresh_from_db()
    assert (dead.status, dead.error_code) == (SyncRun.Status.FAILED, "timed_out")
    assert run.status == SyncRun.Status.COMPLETED


@pytest.mark.django_db
def test_erp_pull_stops_at_the_soft_time_limit_and_gives_the_lock_back(vendor, erp):
    # given: a slow ERP, and the soft limit arriving mid-download as billiard delivers it (a
    # signal whose handler raises SoftTimeLimitExceeded in the running code)
    products("A")
    serve(erp, [{"sku": "A", "qty": 5}])
    erp.configure(latency=2)

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        # when
        run = pull(vendor)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    # then: the run failed with its own code, nothing applied, and the lock is free again
    assert (run.status, run.error_code) == (SyncRun.Status.FAILED, "time_limit")
    assert on_hand("A") is None
    erp.configure(latency=0)
    assert pull(vendor).status == SyncRun.Status.COMPLETED
    assert on_hand("A") == 5


@pytest.mark.django_db(transaction=True)
def test_erp_pull_concurrent_starts_run_once(vendor, warehouse, archive_dir, settings):
    # given: a slow ERP, and two pulls of one vendor started together
    app = ErpSandbox(token=TOKEN, rows=[], latency=0.5)
    results: list[str] = []
    with SandboxServer(app) as server:
        erp_connection_set(vendor=vendor, base_url=server.url, token=TOKEN, actor="test")
        barrier = threading.Barrier(2)

        def start() -> None:
            try:
                barrier.wait(5)
                results.append(erp_pull_run(vendor=vendor).status)
            finally:
                connection.close()

        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)

    assert sorted(results) == [SyncRun.Status.COMPLETED, SyncRun.Status.SKIPPED]
    assert len(app.requests) == 1


@pytest.mark.django_db
def test_erp_pull_alerts_when_many_items_change(
    vendor, erp, slack, settings, django_capture_on_commit_callbacks
):
    settings.ERP_PULL_ALERT_CHANGES = 2
    products("A", "B", "C")
    serve(erp, [{"sku": s, "qty": 1} for s in "ABC"])

    with django_capture_on_commit_callbacks(execute=True):
        run = pull(vendor)

    assert run.items_changed == 3
    wait_for(lambda: slack.messages)
    assert "changed 3 items" in str(slack.messages[0])


@pytest.mark.django_db
def test_erp_pull_needs_a_connection(vendor):
    other = VendorFactory()
    WarehouseFactory(vendor=other, code="MAIN", is_default=True)

    with pytest.raises(CommandError, match="erp_not_configured"):
        call_command("erp_pull", "--vendor", str(other.pk), stdout=io.StringIO())


@pytest.mark.django_db
def test_erp_pull_command_prints_figures_and_exit_codes(vendor, erp):
    products("A")
    serve(erp, [{"sku": "A", "qty": 2}])
    out = io.StringIO()

    call_command("erp_pull", stdout=out)

    assert "completed" in out.getvalue()
    assert "items changed    1" in out.getvalue()
    erp.configure(fail_first=10)
    with pytest.raises(CommandError) as failed:
        call_command("erp_pull", stdout=io.StringIO())
    assert failed.value.returncode == 1


@pytest.mark.django_db
def test_erp_pull_uses_the_environment_for_the_default_vendor(vendor, warehouse, archive_dir):
    app = ErpSandbox(token=TOKEN, rows=[{"sku": "ENV", "qty": 3}])
    products("ENV")
    with (
        SandboxServer(app) as server,
        override_settings(ERP_BASE_URL=server.url, ERP_API_TOKEN=TOKEN),
    ):
        assert tasks.pull.pull_all() == 1

    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.COMPLETED
    assert on_hand("ENV") == 3


@pytest.mark.django_db
def test_archives_purge_removes_folders_past_retention(archive_dir):
    storage = storages["erp_archive"]
    now = datetime(2026, 11, 21, 3, 30, tzinfo=timezone.get_current_timezone())
    old = storage.save(archive_name(now - timedelta(days=31)), ContentFile(b"[]"))
    edge = storage.save(archive_name(now - timedelta(days=30)), ContentFile(b"[]"))
    recent = storage.save(archive_name(now - timedelta(days=1)), ContentFile(b"[]"))

    assert archives_purge(now=now, retention_days=30) == 1

    assert not storage.exists(old)
    assert not (archive_dir / old).parent.exists()
    assert storage.exists(edge)
    assert storage.exists(recent)
    assert archives_purge(now=now, retention_days=30) == 0


@pytest.mark.worker
def test_beat_fan_out_pulls_each_vendor_on_a_real_worker(
    celery_worker, vendor, warehouse, archive_dir, settings
):
    # given: two vendors with ERP connections, served by two sandboxes
    settings.ERP_PULL_RETRY_DELAYS = [0.01]
    other = VendorFactory()
    WarehouseFactory(vendor=other, code="MAIN", is_default=True)
    ProductFactory(vendor=vendor, sku="W-1")
    ProductFactory(vendor=other, sku="W-1")
    first = ErpSandbox(token=TOKEN, rows=[{"sku": "W-1", "qty": 4}])
    second = ErpSandbox(token=TOKEN, rows=[{"sku": "W-1", "qty": 9}])
    with SandboxServer(first) as one, SandboxServer(second) as two:
        erp_connection_set(vendor=vendor, base_url=one.url, token=TOKEN, actor="test")
        erp_connection_set(vendor=other, base_url=two.url, token=TOKEN, actor="test")

        # when: the nightly task is sent to the broker, as beat does
        tasks.pull.pull_all.delay()

        # then: the worker fans out on the erp queue and each vendor's pull completes
        wait_for(lambda: SyncRun.objects.filter(status=SyncRun.Status.COMPLETED).count() == 2)
    assert StockLevel.objects.get(product__vendor=vendor).on_hand == 4
    assert StockLevel.objects.get(product__vendor=other).on_hand == 9
    assert set(SyncRun.objects.values_list("trigger", flat=True)) == {"schedule"}


@pytest.mark.django_db
def test_erp_pull_refuses_unreachable_skus_and_counts_them(vendor, erp, settings):
    settings.ERP_PULL_CREATE_UNKNOWN = True
    serve(
        erp,
        [
            {"sku": "A/B", "qty": 1},
            {"sku": "A\u200bB", "qty": 1},
            {"sku": "A\u202eB", "qty": 1},
            {"sku": "A\u0001B", "qty": 1},
            {"sku": "NEW", "qty": 2},
        ],
    )

    run = pull(vendor)

    assert run.status == SyncRun.Status.COMPLETED
    assert run.details["invalid_by_code"] == {"invalid_sku": 4}
    assert run.invalid_rows == 4
    assert list(Product.objects.values_list("sku", flat=True)) == ["NEW"]
    assert on_hand("NEW") == 2
