"""ERP reconciliation against the agent served over HTTP, on PostgreSQL."""

import json
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.sandbox import Fault
from erp_mapping.models import ErpSyncJob, ReconciliationEvent
from erp_mapping.services.reconcile import AgentNotRegistered, erp_reconcile
from inventory.models import StockLevel, StockMovement
from inventory.selectors import ledger_mismatches
from tests.erp_mapping.reconcile_helpers import catalogue, erp_from_local, on_hand, stock
from tests.helpers import wait_for
from tests.inventory.factories import VendorFactory, WarehouseFactory

Status = ReconciliationEvent.Status


def reconcile(vendor) -> ReconciliationEvent:
    event = erp_reconcile(vendor=vendor, trigger=ReconciliationEvent.Trigger.COMMAND)
    event.refresh_from_db()
    return event


@pytest.fixture
def big(vendor, warehouse):
    """10,000 SKUs with stock here (one row each), the ERP holding the same."""

    def make(count: int = 10_000) -> list[str]:
        skus = [f"BIG-{i:06d}" for i in range(count)]
        products = catalogue(vendor, skus)
        stock((products[sku], warehouse, i % 97 + Decimal("0.250")) for i, sku in enumerate(skus))
        return skus

    return make


@pytest.mark.django_db
def test_erp_reconcile_without_drift_compares_ranges_and_fetches_nothing(
    vendor, big, agent_erp, settings
):
    # given
    big(2000)
    erp_from_local(agent_erp, vendor)
    before = StockMovement.objects.count()

    # when
    event = reconcile(vendor)

    # then only the first cut was compared, in one call, and nothing was fetched
    assert event.status == Status.COMPLETED
    assert event.skus_local == 2000
    assert event.ranges_compared == settings.ERP_RECONCILE_RANGES
    assert (event.ranges_differing, event.rows_fetched, event.drift_found) == (0, 0, 0)
    assert event.requests == 1
    assert agent_erp.stock_rows_served == 0
    assert StockMovement.objects.count() == before


@pytest.mark.django_db
def test_erp_reconcile_finds_ten_drifted_skus_in_ten_thousand_fetching_few_rows(
    vendor, warehouse, store, big, agent_erp, settings
):
    # given 10,000 SKUs, the ERP differing on 10: quantities changed, rows gone, a new row
    skus = big()
    erp_from_local(agent_erp, vendor)
    changed = skus[17], skus[1003], skus[2500], skus[4999], skus[5000], skus[7777], skus[9999]
    for sku in changed:
        agent_erp.stock_set(sku, "MAIN", Decimal("500.125"))
    gone = skus[0], skus[6000]
    for sku in gone:
        agent_erp.stock_set(sku, "MAIN", 0)
    agent_erp.stock_set(skus[3333], "STORE", 12)  # no level here yet

    # when
    event = reconcile(vendor)

    # then every drifted row was found and fixed, with a reconciliation movement each
    assert event.status == Status.COMPLETED, event.error_message
    assert (event.drift_found, event.drift_fixed) == (10, 10)
    assert all(on_hand(vendor, sku, "MAIN") == Decimal("500.125") for sku in changed)
    assert all(on_hand(vendor, sku, "MAIN") == 0 for sku in gone)
    assert on_hand(vendor, skus[3333], "STORE") == 12
    movements = StockMovement.objects.filter(kind=StockMovement.Kind.RECONCILIATION)
    assert movements.count() == 10
    assert set(movements.values_list("reference", flat=True)) == {f"reconciliation:{event.pk}"}
    assert ledger_mismatches() == []
    # and the binary search fetched a small share of the catalogue
    leaf = settings.ERP_RECONCILE_LEAF_ROWS
    assert event.rows_fetched == agent_erp.stock_rows_served
    assert 10 <= event.rows_fetched <= 10 * leaf
    assert event.rows_fetched < 10_000 / 20
    assert event.details["leaf_count"] <= 10
    assert event.ranges_compared < 200

    # and a second run finds nothing left
    again = reconcile(vendor)
    assert (again.drift_found, again.rows_fetched, again.ranges_differing) == (0, 0, 0)


@pytest.mark.django_db
def test_erp_reconcile_fixes_rows_missing_on_either_side(vendor, warehouse, store, agent_erp):
    # given
    products = catalogue(vendor, ["ONLY-HERE", "ONLY-ERP", "BOTH", "ZERO-ERP"])
    stock(
        [
            (products["ONLY-HERE"], warehouse, 4),
            (products["BOTH"], warehouse, 1),
            (products["ZERO-ERP"], store, 3),
        ]
    )
    agent_erp.stock_load(
        [
            ("ONLY-ERP", "STORE", Decimal("2.500")),
            ("BOTH", "MAIN", 1),
            ("ZERO-ERP", "STORE", 0),  # a zero row: the same as no row
        ]
    )

    # when
    event = reconcile(vendor)

    # then
    assert (event.drift_found, event.drift_fixed) == (3, 3)
    assert on_hand(vendor, "ONLY-HERE", "MAIN") == 0
    assert on_hand(vendor, "ONLY-ERP", "STORE") == Decimal("2.5")
    assert on_hand(vendor, "ZERO-ERP", "STORE") == 0
    assert on_hand(vendor, "BOTH", "MAIN") == 1
    assert event.details["levels_created"] == 1
    assert ledger_mismatches() == []


@pytest.mark.django_db
def test_erp_reconcile_reports_unknown_skus_and_warehouses_without_creating_them(
    vendor, warehouse, agent_erp
):
    # given
    products = catalogue(vendor, ["KNOWN"])
    stock([(products["KNOWN"], warehouse, 5)])
    WarehouseFactory(vendor=vendor, code="SHUT", active=False)
    agent_erp.stock_load(
        [
            ("KNOWN", "MAIN", 6),
            ("NOBODY", "MAIN", 1),
            ("KNOWN", "NOWHERE", 1),
            ("KNOWN", "SHUT", 1),
        ]
    )

    # when
    event = reconcile(vendor)

    # then the known row is fixed; the others are reported, not created
    assert event.status == Status.COMPLETED
    assert (event.drift_found, event.drift_fixed) == (4, 1)
    assert on_hand(vendor, "KNOWN", "MAIN") == 6
    assert event.details["unknown_skus"] == ["NOBODY"]
    assert event.details["unknown_warehouses"] == ["NOWHERE"]
    assert event.details["inactive_warehouses"] == ["SHUT"]
    assert not StockLevel.objects.filter(warehouse__code="SHUT").exists()
    assert StockLevel.objects.filter(product__vendor=vendor).count() == 1


@pytest.mark.django_db
def test_erp_reconcile_leaves_stock_of_unreadable_erp_rows_alone(vendor, warehouse, agent_erp):
    # given the agent lists a row with a quantity that cannot be read
    products = catalogue(vendor, ["ODD", "FINE"])
    stock([(products["ODD"], warehouse, 5), (products["FINE"], warehouse, 5)])
    agent_erp.stock_load([("ODD", "MAIN", 7), ("FINE", "MAIN", 8)])
    original = agent_erp.handle_stock

    def garbled(request):
        answer = original(request)
        answer.body = answer.body.replace('"quantity": "7.000"', '"quantity": "seven"')
        return answer

    agent_erp.handle_stock = garbled

    # when
    event = reconcile(vendor)

    # then the unreadable row is reported and its level untouched (never read as 0)
    assert event.status == Status.COMPLETED
    assert event.details["invalid_rows"] == {"invalid_quantity": 1}
    assert on_hand(vendor, "ODD", "MAIN") == 5
    assert on_hand(vendor, "FINE", "MAIN") == 8


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault(status=503, count=5), "agent_error_status"),
        (Fault(status=200, count=5, body='{"nothing": 1}'), "agent_bad_answer"),
    ],
)
@pytest.mark.django_db
def test_erp_reconcile_failing_agent_fails_the_event_and_changes_nothing(
    vendor, big, agent_erp, fault, code
):
    # given drift the run would fix
    skus = big(500)
    erp_from_local(agent_erp, vendor)
    agent_erp.stock_set(skus[10], "MAIN", 999)
    agent_erp.inject(fault)
    before = StockMovement.objects.count()

    # when
    event = reconcile(vendor)

    # then
    assert event.status == Status.FAILED
    assert event.error_code == code
    assert event.completed_at is not None
    assert event.drift_fixed == 0
    assert StockMovement.objects.count() == before


@pytest.mark.django_db
def test_erp_reconcile_agent_down_fails_then_alerts_on_the_second_failure(
    vendor, big, agent_erp, slack, django_capture_on_commit_callbacks
):
    # given drift to fix, and the agent's server gone
    skus = big(500)
    erp_from_local(agent_erp, vendor)
    agent_erp.stock_set(skus[3], "MAIN", 999)
    before = StockMovement.objects.count()
    agent_erp.server.stop()

    # when
    with django_capture_on_commit_callbacks(execute=True):
        first = reconcile(vendor)
        second = reconcile(vendor)

    # then
    assert (first.status, first.error_code) == (Status.FAILED, "agent_unreachable")
    assert second.status == Status.FAILED
    assert StockMovement.objects.count() == before
    assert on_hand(vendor, skus[3], "MAIN") != 999
    wait_for(lambda: any("failed twice" in m["text"] for m in slack.messages))
    assert sum("ERP reconciliation" in m["text"] for m in slack.messages) == 1


@pytest.mark.django_db
def test_erp_reconcile_refused_signature_fails_unauthorized(vendor, big, agent_erp):
    big(10)
    agent_erp.agent.outbound_secret = "not-the-agents-secret"
    agent_erp.agent.save()

    event = reconcile(vendor)

    assert (event.status, event.error_code) == (Status.FAILED, "agent_unauthorized")
    assert agent_erp.requests[0].headers["X-Syncstore-Signature"].startswith("t=")


@pytest.mark.django_db
def test_erp_reconcile_without_an_agent_raises(vendor):
    with pytest.raises(AgentNotRegistered):
        erp_reconcile(vendor=VendorFactory())


@pytest.mark.django_db
def test_erp_reconcile_while_another_runs_is_skipped(vendor, agent_erp):
    # given a running event of the vendor
    holder = ReconciliationEvent.objects.create(vendor=vendor, started_at=timezone.now())

    # when
    event = reconcile(vendor)

    # then
    assert (event.status, event.error_code) == (Status.SKIPPED, "reconcile_running")
    assert f"event {holder.pk}" in event.error_message
    assert agent_erp.requests == []


@pytest.mark.django_db
def test_erp_reconcile_takes_over_from_a_run_past_its_time_limit(vendor, big, agent_erp, settings):
    big(10)
    erp_from_local(agent_erp, vendor)
    started = timezone.now() - timedelta(seconds=settings.ERP_RECONCILE_TIME_LIMIT_SECONDS + 5)
    stale = ReconciliationEvent.objects.create(vendor=vendor, started_at=started)

    event = reconcile(vendor)

    stale.refresh_from_db()
    assert (stale.status, stale.error_code) == (Status.FAILED, "timed_out")
    assert event.status == Status.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_erp_reconcile_two_concurrent_runs_one_is_skipped(warehouse, big, agent_erp):
    # given a slow agent: the first run holds the lock while it waits for its checksums
    vendor = warehouse.vendor
    big(200)
    erp_from_local(agent_erp, vendor)
    entered, release = threading.Event(), threading.Event()
    original = agent_erp.handle_checksums

    def slow(request):
        entered.set()
        release.wait(10)
        return original(request)

    agent_erp.handle_checksums = slow
    results = {}

    def first():
        try:
            results["first"] = erp_reconcile(vendor=vendor)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(10)

    # when a second run starts meanwhile
    second = erp_reconcile(vendor=vendor)
    release.set()
    thread.join(20)

    # then
    assert (second.status, second.error_code) == (Status.SKIPPED, "reconcile_running")
    assert results["first"].status == Status.COMPLETED
    assert ReconciliationEvent.objects.filter(status=Status.RUNNING).count() == 0


@pytest.mark.django_db
def test_erp_reconcile_leaves_a_level_changed_here_since_it_was_compared(
    vendor, warehouse, agent_erp
):
    # given: the agent serves the rows, and meanwhile a local count changes one level
    products = catalogue(vendor, ["MOVED", "STILL"])
    stock([(products["MOVED"], warehouse, 5), (products["STILL"], warehouse, 5)])
    agent_erp.stock_load([("MOVED", "MAIN", 9), ("STILL", "MAIN", 9)])
    original = agent_erp.handle_stock
    from erp_mapping.services import reconcile as service

    compare = service._compare

    def compare_then_change(**kwargs):
        targets = compare(**kwargs)
        # another transaction's change, committed between the comparison and the lock
        stock([(products["MOVED"], warehouse, 6)])
        return targets

    service._compare = compare_then_change
    try:
        event = reconcile(vendor)
    finally:
        service._compare = compare
        agent_erp.handle_stock = original

    # then the changed level keeps its new count; the other takes the ERP's
    assert (event.drift_found, event.drift_fixed) == (2, 1)
    assert event.details["changed_meanwhile"] == [
        {"sku": "MOVED", "warehouse": "MAIN", "compared": "5.000"}
    ]
    assert on_hand(vendor, "MOVED", "MAIN") == 6
    assert on_hand(vendor, "STILL", "MAIN") == 9


@pytest.mark.django_db
def test_erp_reconcile_spares_levels_of_shipped_orders_not_yet_in_the_erp(
    vendor, warehouse, agent_erp
):
    # given a shipped order that took 3 units here, not yet sent to the ERP (which still
    # counts them), and an unrelated drifted SKU
    from orders.services import Actor, OrderLineInput, order_create, order_ship

    products = catalogue(vendor, ["SOLD", "DRIFT"])
    stock([(products["SOLD"], warehouse, 10), (products["DRIFT"], warehouse, 5)])
    erp_from_local(agent_erp, vendor)
    agent_erp.stock_set("DRIFT", "MAIN", 8)
    staff = Actor(source="api", actor="test")
    order = order_create(
        vendor=vendor,
        order_number="R-1",
        lines=[OrderLineInput(sku="SOLD", quantity=Decimal(3), warehouse="MAIN")],
        actor=staff,
    )
    order_ship(order=order, actor=staff)
    job(order, ErpSyncJob.Status.PENDING)
    assert on_hand(vendor, "SOLD", "MAIN") == 7

    # when
    event = reconcile(vendor)

    # then the sale is not undone; the other drift is fixed
    assert event.status == Status.COMPLETED
    assert on_hand(vendor, "SOLD", "MAIN") == 7
    assert on_hand(vendor, "DRIFT", "MAIN") == 8
    assert (event.drift_found, event.drift_fixed) == (2, 1)
    assert event.details["awaiting_erp_count"] == 1

    # once the order is in the ERP (which then counts 7), nothing is left to fix
    order.erp_synced_at = timezone.now()
    order.save(update_fields=["erp_synced_at"])
    agent_erp.stock_set("SOLD", "MAIN", 7)
    again = reconcile(vendor)
    assert (again.drift_found, again.drift_fixed) == (0, 0)


def job(order, status: str) -> ErpSyncJob:
    return ErpSyncJob.objects.create(
        order=order,
        vendor=order.vendor,
        operation=ErpSyncJob.Operation.ORDER_CREATE,
        status=status,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "spared"),
    [
        (None, False),
        ("dead", True),  # its dead letter waits for staff: still on its way
        ("pending", True),
        ("processing", True),
        ("awaiting_callback", True),
        ("failed", True),
    ],
)
def test_erp_reconcile_spares_a_shipped_order_only_while_its_create_job_lives(
    vendor, warehouse, agent_erp, status, spared
):
    # given a shipped order not in the ERP, its create job in `status` (or none at all: an
    # order shipped before the ERP sync, or whose hook failed long ago)
    from orders.services import Actor, OrderLineInput, order_create, order_ship

    products = catalogue(vendor, ["SOLD"])
    stock([(products["SOLD"], warehouse, 10)])
    erp_from_local(agent_erp, vendor)
    staff = Actor(source="api", actor="test")
    order = order_create(
        vendor=vendor,
        order_number="OLD-1",
        lines=[OrderLineInput(sku="SOLD", quantity=Decimal(3), warehouse="MAIN")],
        actor=staff,
    )
    order_ship(order=order, actor=staff)
    if status is not None:
        job(order, status)

    # when
    event = reconcile(vendor)

    # then the level waits only while the job can still bring the order to the ERP
    assert event.status == Status.COMPLETED
    assert event.drift_found == 1
    if spared:
        assert on_hand(vendor, "SOLD", "MAIN") == 7
        assert (event.drift_fixed, event.details["awaiting_erp_count"]) == (0, 1)
        # a dead job is spared and reported (it waits for staff)
        assert event.details["orders_not_sent_count"] == (1 if status == "dead" else 0)
    else:
        assert on_hand(vendor, "SOLD", "MAIN") == 10  # the ERP's count wins
        assert (event.drift_fixed, event.details["awaiting_erp_count"]) == (1, 0)
        assert event.details["orders_not_sent_count"] == 1
        assert event.details["orders_not_sent"] == [
            {"order_id": order.pk, "order_number": "OLD-1", "job": status or "none"}
        ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("pushed", "kept"),
    [
        (Decimal(7), Decimal(7)),  # the ERP counted 7 meanwhile: newer than the fetched 9
        (Decimal(5), Decimal(5)),  # it counted 5 again (our figure): same on_hand, newer mark
    ],
)
def test_erp_reconcile_never_puts_back_an_older_erp_figure_than_one_ingested_meanwhile(
    warehouse, agent_erp, pushed, kept
):
    # given a level at 5 here and the ERP at 9, and the agent pushing the ERP's newer count
    # while the reconciliation fetches the rows (applied by its own transaction)
    from erp_mapping.services.ingest import erp_stock_ingest

    vendor = warehouse.vendor
    products = catalogue(vendor, ["COUNTED", "OTHER"])
    stock([(products["COUNTED"], warehouse, 5), (products["OTHER"], warehouse, 5)])
    erp_stock_ingest(
        vendor_id=vendor.pk,
        rows=[
            {
                "sku": "COUNTED",
                "warehouse_code": "MAIN",
                "quantity": Decimal(5),
                "updated_at": timezone.now() - timedelta(hours=1),
            }
        ],
    )
    agent_erp.stock_load([("COUNTED", "MAIN", 9), ("OTHER", "MAIN", 8)])
    original = agent_erp.handle_stock

    def serve_then_push(request):
        answer = original(request)  # the rows as the ERP had them
        try:
            erp_stock_ingest(
                vendor_id=vendor.pk,
                rows=[
                    {
                        "sku": "COUNTED",
                        "warehouse_code": "MAIN",
                        "quantity": pushed,
                        "updated_at": timezone.now(),
                    }
                ],
            )
        finally:
            connection.close()
        return answer

    agent_erp.handle_stock = serve_then_push

    # when
    event = reconcile(vendor)

    # then the newer count stays; the other level takes the ERP's figure
    assert event.status == Status.COMPLETED, event.error_message
    assert on_hand(vendor, "COUNTED", "MAIN") == kept
    assert on_hand(vendor, "OTHER", "MAIN") == 8
    assert (event.drift_found, event.drift_fixed) == (2, 1)
    assert event.details["changed_meanwhile"] == [
        {"sku": "COUNTED", "warehouse": "MAIN", "compared": "5.000"}
    ]
    assert ledger_mismatches() == []


@pytest.mark.django_db
def test_erp_reconcile_applies_negative_erp_counts_and_leaves_duplicated_rows_alone(
    vendor, warehouse, agent_erp
):
    # given the ERP counts one SKU below zero, and lists another one twice (4 and 6)
    products = catalogue(vendor, ["NEG", "TWICE", "FINE"])
    stock([(products[sku], warehouse, 5) for sku in ("NEG", "TWICE", "FINE")])
    agent_erp.stock_load([("NEG", "MAIN", "-2.5"), ("TWICE", "MAIN", 4), ("FINE", "MAIN", 8)])
    original = agent_erp.handle_stock

    def doubled(request):
        answer = original(request)
        data = json.loads(answer.body)
        data["rows"] += [
            dict(row, quantity="6.000") for row in data["rows"] if row["sku"] == "TWICE"
        ]
        answer.body = json.dumps(data)
        return answer

    agent_erp.handle_stock = doubled

    # when
    event = reconcile(vendor)

    # then the negative count is applied as the ERP's; the doubled key is drift found, not
    # fixed, and reported
    assert event.status == Status.COMPLETED, event.error_message
    assert on_hand(vendor, "NEG", "MAIN") == Decimal("-2.5")
    assert on_hand(vendor, "TWICE", "MAIN") == 5
    assert on_hand(vendor, "FINE", "MAIN") == 8
    assert (event.drift_found, event.drift_fixed) == (3, 2)
    assert event.details["duplicates"] == [
        {"sku": "TWICE", "warehouse": "MAIN", "erp": ["4.000", "6.000"]}
    ]
    assert event.details["duplicate_count"] == 1
    assert event.details["invalid_rows"] == {}
    assert ledger_mismatches() == []

    # and once the ERP lists it once, the next run fixes it; the negative count agrees
    agent_erp.handle_stock = original
    again = reconcile(vendor)
    assert (again.drift_found, again.drift_fixed) == (1, 1)
    assert on_hand(vendor, "TWICE", "MAIN") == 4
