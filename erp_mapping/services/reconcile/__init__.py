"""ERP reconciliation: find where a vendor's stock drifted from its ERP's, cheaply, and fix it.

Flow (one vendor, through its agent): take the vendor's reconciliation lock (one `running`
event per vendor) -> cut the vendor's SKUs into `ERP_RECONCILE_RANGES` ranges at local
quantiles -> compare each range's checksum here (`local`) and at the agent
(`GET /stock/checksums`) -> split each differing range at its median local SKU and compare the
halves, level by level, until a differing range is small (`ERP_RECONCILE_LEAF_ROWS` rows on
either side) -> fetch only those ranges' rows (`GET /stock`) -> in one transaction, set the
levels that differ to the ERP's quantity (the ERP wins for physical stock), one
`reconciliation` movement each, and record the event.

A leaf is fetched whole when either side holds at most the leaf size: if the ERP has few
rows, few are fetched; if we have few, every ERP row beyond them is drift that must be
fetched to be fixed anyway. So the rows fetched stay within about `leaf size x differing
leaves + drift`.

Each leaf's local rows are read BEFORE its ERP rows are fetched, with each level's
`updated_at` and `source_updated_at`: an agent push or a nightly pull applied while the
fetch runs is newer than the fetched figure, and the correction (under the levels' locks)
leaves every level whose on_hand or marks moved since that read (`changed_meanwhile`) for
the next run, never putting the older figure back.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ConflictError
from core.services import alert_send
from erp_mapping.clients.agent import AgentClient, agent_client_for
from erp_mapping.models import ErpAgent, ReconciliationEvent
from erp_mapping.selectors import levels_awaiting_erp
from erp_mapping.services.reconcile.local import LocalRow, level_marker, local_stock
from erp_mapping.services.reconcile.protocol import (
    ErpRow,
    ReconcileFailed,
    SkuRange,
    agent_checksums,
    agent_rows,
    erp_row_read,
)
from inventory.locks import stock_levels_lock_by_id, vendors_lock
from inventory.models import Product, StockLevel, StockMovement, Vendor, Warehouse
from inventory.services import Origin
from inventory.services.bulk import (
    TARGET_COLUMNS,
    is_postgresql,
    staging_table_create,
    staging_table_drop,
    staging_table_load,
    stock_levels_sync_staged,
)
from inventory.services.stock import MAX_QUANTITY

logger = structlog.get_logger(__name__)

Status = ReconciliationEvent.Status
# Lists kept on the event are capped; the counts are always complete.
SAMPLE_CAP = 100
# A search deeper than this is not halving anything (each level at least halves the rows).
MAX_LEVELS = 40


class AgentNotRegistered(ConflictError):
    code = "erp_agent_missing"
    message = "This vendor has no ERP agent."


@dataclass
class _Target:
    row: LocalRow | None  # the level as read before the fetch (None: no non-zero level)
    erp: ErpRow | None
    product_id: int
    warehouse_id: int
    read_at: datetime  # when the local rows of its leaf were read

    @property
    def ours(self) -> Decimal:
        return self.row.on_hand if self.row else Decimal(0)

    @property
    def theirs(self) -> Decimal:
        return self.erp.quantity if self.erp else Decimal(0)


@dataclass
class _Search:
    """Figures gathered along the way (and the event's counters)."""

    calls: list[int] = field(default_factory=lambda: [0])
    skus_local: int = 0
    levels: list[dict] = field(default_factory=list)
    ranges_compared: int = 0
    ranges_differing: int = 0
    leaves: list[SkuRange] = field(default_factory=list)
    rows_fetched: int = 0
    erp_rows: dict[SkuRange, list[ErpRow]] = field(default_factory=dict)
    # Each leaf's local rows, read just before its ERP rows were fetched, and when.
    local_rows: dict[SkuRange, list[LocalRow]] = field(default_factory=dict)
    local_read_at: dict[SkuRange, datetime] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)
    invalid_samples: list[dict] = field(default_factory=list)
    # (sku, warehouse) pairs whose ERP row could not be read: left alone.
    unreadable: set[tuple[str, str]] = field(default_factory=set)
    # (sku, warehouse) pairs the ERP sent more than once, with each quantity sent: which one
    # is its count is unknown, so they are drift found, never fixed.
    duplicates: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    drift: list[dict] = field(default_factory=list)
    drift_found: int = 0
    unknown_skus: set[str] = field(default_factory=set)
    unknown_warehouses: set[str] = field(default_factory=set)
    inactive_warehouses: set[str] = field(default_factory=set)
    changed_meanwhile: list[dict] = field(default_factory=list)
    awaiting_erp: list[dict] = field(default_factory=list)
    unsent_orders: list[dict] = field(default_factory=list)
    out_of_range: int = 0
    drift_fixed: int = 0
    levels_created: int = 0

    def reject(self, reason: str, row: object) -> None:
        self.invalid[reason] = self.invalid.get(reason, 0) + 1
        if len(self.invalid_samples) < SAMPLE_CAP:
            self.invalid_samples.append({"reason": reason, "row": repr(row)[:200]})
        if isinstance(row, dict) and isinstance(row.get("sku"), str):
            self.unreadable.add((row["sku"], str(row.get("warehouse"))))


def erp_reconcile(
    *, vendor: Vendor, trigger: str = ReconciliationEvent.Trigger.SCHEDULE
) -> ReconciliationEvent:
    """Compare the vendor's stock with its ERP's through its agent and correct the drift.

    Takes the vendor's reconciliation lock first: while another run of this vendor is
    `running`, this one is recorded as `skipped` (a run left `running` past
    `ERP_RECONCILE_TIME_LIMIT_SECONDS` is marked failed, `timed_out`). Agent calls happen
    outside any transaction; the corrections and the event's figures commit together in one
    transaction at the end, so a failure anywhere before applies nothing. A level whose
    on_hand changed here since its rows were read is left for the next run (never overwritten
    with a comparison made before the change). Failures (`agent_unreachable`,
    `agent_unauthorized`, `agent_error_status`, `agent_bad_answer`, `time_limit`,
    `internal_error`) are recorded on the event, not raised; two failures in a row alert.
    Raises `erp_agent_missing` when the vendor has no agent.
    """
    agent = ErpAgent.objects.filter(vendor=vendor).first()
    if agent is None:
        raise AgentNotRegistered(f"Vendor {vendor} has no ERP agent.")
    event = _event_begin(vendor=vendor, trigger=trigger)
    if event.status != Status.RUNNING:
        return event
    log = logger.bind(event_id=event.pk, vendor_id=str(vendor.pk))
    log.info("erp_reconcile.started", trigger=trigger)
    started = time.perf_counter()
    search = _Search()
    try:
        client = agent_client_for(agent)
        _search(vendor=vendor, client=client, search=search)
        _fetch(vendor=vendor, client=client, search=search)
        with transaction.atomic():
            targets = _compare(vendor=vendor, search=search)
            _correct(event=event, targets=targets, search=search)
            _event_complete(event, search, started=started, log=log)
    except ReconcileFailed as exc:
        return _event_fail(event, search, str(exc), code=exc.code, started=started, log=log)
    except SoftTimeLimitExceeded:
        limit = settings.ERP_RECONCILE_TIME_LIMIT_SECONDS - 60
        message = f"Stopped at the reconciliation task's soft time limit ({limit} s)."
        return _event_fail(event, search, message, code="time_limit", started=started, log=log)
    except Exception as exc:
        log.exception("erp_reconcile.crashed")
        message = f"{type(exc).__name__}: {exc}"
        return _event_fail(event, search, message, code="internal_error", started=started, log=log)
    return event


# --- The search ----------------------------------------------------------------------------


def _initial_ranges(cuts: list[str]) -> list[SkuRange]:
    bounds = ["", *cuts, ""]
    return [SkuRange(lo, hi) for lo, hi in pairwise(bounds)]


def _search(*, vendor: Vendor, client: AgentClient, search: _Search) -> None:
    """Narrow the differing ranges down to leaves (`search.leaves`)."""
    leaf = settings.ERP_RECONCILE_LEAF_ROWS
    local = local_stock(vendor)
    search.skus_local, cuts = local.first_cut(settings.ERP_RECONCILE_RANGES)
    ranges = _initial_ranges(cuts)
    while ranges:
        if len(search.levels) >= MAX_LEVELS:
            raise ReconcileFailed(
                f"The search went {MAX_LEVELS} levels deep.", code="search_too_deep"
            )
        theirs = agent_checksums(client, ranges, calls=search.calls)
        ours, points = local.compare(ranges)
        differing = [
            (rng, mine, other)
            for rng, mine, other in zip(ranges, ours, theirs, strict=True)
            if mine != other
        ]
        search.ranges_compared += len(ranges)
        search.ranges_differing += len(differing)
        following: list[SkuRange] = []
        leaves = 0
        for rng, mine, other in differing:
            # Split only where both sides hold more than a leaf (see the module), and where
            # there is a point to split at (two SKUs or more here).
            point = points.get(rng) if min(mine.count, other.count) > leaf else None
            if point is None:
                search.leaves.append(rng)
                leaves += 1
            else:
                following.extend([SkuRange(rng.lo, point), SkuRange(point, rng.hi)])
        search.levels.append(
            {"compared": len(ranges), "differing": len(differing), "leaves": leaves}
        )
        ranges = following


def _fetch(*, vendor: Vendor, client: AgentClient, search: _Search) -> None:
    """Fetch the ERP's rows of every leaf (checked: bad rows are counted, never applied),
    each leaf's local rows read just before (see the module)."""
    local = local_stock(vendor)
    for rng in search.leaves:
        search.local_read_at[rng] = timezone.now()
        search.local_rows[rng] = local.rows([rng])[rng]
        rows: dict[tuple[str, str], ErpRow] = {}
        doubled: set[tuple[str, str]] = set()
        for raw in agent_rows(client, rng, calls=search.calls):
            search.rows_fetched += 1
            row = erp_row_read(raw, rng, MAX_QUANTITY)
            if isinstance(row, str):
                search.reject(row, raw)
                continue
            key = (row.sku, row.warehouse)
            if key in rows:
                doubled.add(key)
                search.duplicates.setdefault(key, [str(rows[key].quantity)])
                search.duplicates[key].append(str(row.quantity))
            else:
                rows[key] = row
        search.erp_rows[rng] = [row for key, row in rows.items() if key not in doubled]


def _compare(*, vendor: Vendor, search: _Search) -> list[_Target]:
    """The levels to correct: ERP and local rows of each leaf that differ.

    The local rows are those read before the leaf's fetch; `_correct` checks under the lock
    that each level is still as read.
    """
    pairs: list[tuple[LocalRow | None, ErpRow | None, datetime]] = []
    for rng in search.leaves:
        ours = {(row.sku, row.warehouse): row for row in search.local_rows[rng]}
        theirs = {(row.sku, row.warehouse): row for row in search.erp_rows[rng]}
        for key in sorted(ours.keys() | theirs.keys()):
            if key in search.duplicates:
                continue  # counted below: the ERP's count is unknown
            if key in search.unreadable and key not in theirs:
                continue  # the ERP's row was unreadable: its quantity is unknown
            mine, other = ours.get(key), theirs.get(key)
            if (mine.on_hand if mine else 0) != (other.quantity if other else 0):
                pairs.append((mine, other, search.local_read_at[rng]))
    search.drift_found = len(pairs) + len(search.duplicates)
    if search.duplicates:
        logger.warning(
            "erp_reconcile.duplicate_rows",
            count=len(search.duplicates),
            sample=[f"{sku}@{code}" for sku, code in sorted(search.duplicates)[:10]],
        )
    wanted = {other.sku for mine, other, _ in pairs if mine is None and other is not None}
    products = dict(Product.objects.filter(vendor=vendor, sku__in=wanted).values_list("sku", "id"))
    warehouses = {w.code: w for w in Warehouse.objects.filter(vendor=vendor)}
    inactive = {w.pk for w in warehouses.values() if not w.active}
    targets = []
    for mine, other, read_at in pairs:
        if len(search.drift) < SAMPLE_CAP:
            row = mine or other
            search.drift.append(
                {
                    "sku": row.sku,
                    "warehouse": row.warehouse,
                    "ours": str(mine.on_hand if mine else Decimal(0)),
                    "erp": str(other.quantity if other else Decimal(0)),
                }
            )
        if mine is not None:
            product_id, warehouse_id = mine.product_id, mine.warehouse_id
        else:
            product_id = products.get(other.sku)
            warehouse = warehouses.get(other.warehouse)
            if product_id is None:
                search.unknown_skus.add(other.sku)
                continue
            if warehouse is None:
                search.unknown_warehouses.add(other.warehouse)
                continue
            warehouse_id = warehouse.pk
        if warehouse_id in inactive:
            search.inactive_warehouses.add((mine or other).warehouse)
            continue
        targets.append(_Target(mine, other, product_id, warehouse_id, read_at))
    return targets


def _correct(*, event: ReconciliationEvent, targets: list[_Target], search: _Search) -> None:
    """Set each target level to the ERP's quantity (inside the caller's transaction).

    The levels are locked (primary-key order) and a level no longer as read before the
    fetch is left out (`changed_meanwhile`): an ingest, a pull, a sale or a count changed it
    here since, perhaps to a figure newer than the fetched one; the next run compares again.
    A level read as such compares its on_hand and marks (`LocalRow.marker`); one that had no
    non-zero row must still have none, unwritten since the read.
    """
    if not targets:
        return
    # A shipped order on its way to the ERP took stock here that the ERP still counts: its
    # levels wait until the order reaches the ERP (the next run compares again). One that
    # is not on its way (no create job, or a dead one) would hold its levels forever: the
    # ERP's count wins there, and the order is reported.
    awaiting = levels_awaiting_erp({(t.product_id, t.warehouse_id) for t in targets})
    waiting = awaiting.levels
    search.unsent_orders.extend(awaiting.unsent)
    if awaiting.unsent:
        logger.warning(
            "erp_reconcile.orders_not_sent",
            event_id=event.pk,
            count=len(awaiting.unsent),
            sample=[order["order_number"] for order in awaiting.unsent[:10]],
        )
    if waiting:
        for target in targets:
            if (target.product_id, target.warehouse_id) in waiting:
                row = target.row or target.erp
                search.awaiting_erp.append(
                    {"sku": row.sku, "warehouse": row.warehouse, "ours": str(target.ours)}
                )
        targets = [t for t in targets if (t.product_id, t.warehouse_id) not in waiting]
    if not targets:
        return
    pairs = {(t.product_id, t.warehouse_id) for t in targets}
    ids = [
        pk
        for pk, product_id, warehouse_id in StockLevel.objects.filter(
            product_id__in={p for p, _ in pairs}, warehouse_id__in={w for _, w in pairs}
        ).values_list("pk", "product_id", "warehouse_id")
        if (product_id, warehouse_id) in pairs
    ]
    current = {
        (level.product_id, level.warehouse_id): level for level in stock_levels_lock_by_id(ids)
    }
    kept = []
    for target in targets:
        level = current.get((target.product_id, target.warehouse_id))
        if target.row is not None:
            moved = level is None or level_marker(level) != target.row.marker
        else:
            moved = level is not None and (
                level.on_hand != 0 or level.updated_at is None or level.updated_at >= target.read_at
            )
        if moved:
            row = target.row or target.erp
            search.changed_meanwhile.append(
                {"sku": row.sku, "warehouse": row.warehouse, "compared": str(target.ours)}
            )
            continue
        kept.append(target)
    if not kept:
        return
    origin = Origin(
        source="erp",
        actor="erp-reconcile",
        reason="ERP reconciliation: the ERP's count wins",
        reference=f"reconciliation:{event.pk}",
    )
    table = staging_table_create(TARGET_COLUMNS)
    staging_table_load(
        table,
        ("product_id", "warehouse_id", "on_hand"),
        ((t.product_id, t.warehouse_id, t.theirs) for t in kept),
    )
    # The agent's next push of a row must be applied even if its content hash matches the
    # one it last pushed: forget the hash of the levels set here.
    synced = stock_levels_sync_staged(
        table=table,
        origin=origin,
        kind=StockMovement.Kind.RECONCILIATION,
        forget_content_hash=True,
    )
    if not is_postgresql():
        staging_table_drop(table)
    search.drift_fixed = synced.changed
    search.levels_created = synced.created
    search.out_of_range = len(synced.out_of_range)


# --- The event -----------------------------------------------------------------------------


def _event_begin(*, vendor: Vendor, trigger: str) -> ReconciliationEvent:
    """Record a new event as `running`, or as `skipped` when another one of the vendor runs.

    The vendor row is locked so concurrent starts take turns; the partial unique constraint
    (one running event per vendor) backs it where the lock is not enforced.
    """
    now = timezone.now()
    limit = timedelta(seconds=settings.ERP_RECONCILE_TIME_LIMIT_SECONDS)
    try:
        with transaction.atomic():
            vendors_lock([vendor.pk])
            for stale in ReconciliationEvent.objects.filter(
                vendor=vendor, status=Status.RUNNING, started_at__lt=now - limit
            ):
                _event_time_out(stale, now=now)
            running = ReconciliationEvent.objects.filter(
                vendor=vendor, status=Status.RUNNING
            ).first()
            if running is None:
                return ReconciliationEvent.objects.create(
                    vendor=vendor, trigger=trigger, started_at=now
                )
    except IntegrityError:
        # Another process started one between our check and insert: the constraint said no.
        running = ReconciliationEvent.objects.filter(vendor=vendor, status=Status.RUNNING).first()
    since = (
        f" (event {running.pk}, started {running.started_at:%Y-%m-%d %H:%M:%S} UTC)"
        if running
        else ""
    )
    event = ReconciliationEvent.objects.create(
        vendor=vendor,
        trigger=trigger,
        status=Status.SKIPPED,
        started_at=now,
        completed_at=now,
        duration_ms=0,
        error_code="reconcile_running",
        error_message=f"Another reconciliation of this vendor is running{since}.",
    )
    logger.info(
        "erp_reconcile.skipped",
        event_id=event.pk,
        vendor_id=str(vendor.pk),
        holder=running and running.pk,
    )
    return event


def _event_time_out(event: ReconciliationEvent, *, now: datetime) -> None:
    event.status = Status.FAILED
    event.completed_at = now
    event.duration_ms = round((now - event.started_at).total_seconds() * 1000)
    event.error_code = "timed_out"
    event.error_message = (
        f"Timed out: still running after {settings.ERP_RECONCILE_TIME_LIMIT_SECONDS} s "
        "(the worker died?)."
    )
    event.save(
        update_fields=["status", "completed_at", "duration_ms", "error_code", "error_message"]
    )
    logger.warning("erp_reconcile.timed_out", event_id=event.pk, vendor_id=str(event.vendor_id))


def _event_figures(event: ReconciliationEvent, search: _Search, *, started: float) -> None:
    event.completed_at = timezone.now()
    event.duration_ms = round((time.perf_counter() - started) * 1000)
    event.skus_local = search.skus_local
    event.ranges_compared = search.ranges_compared
    event.ranges_differing = search.ranges_differing
    event.requests = search.calls[0]
    event.rows_fetched = search.rows_fetched
    event.drift_found = search.drift_found
    event.drift_fixed = search.drift_fixed
    event.details = {
        "levels": search.levels,
        "leaves": [str(rng) for rng in search.leaves[:SAMPLE_CAP]],
        "leaf_count": len(search.leaves),
        "drift": search.drift,
        "levels_created": search.levels_created,
        "changed_meanwhile": search.changed_meanwhile[:SAMPLE_CAP],
        "awaiting_erp": search.awaiting_erp[:SAMPLE_CAP],
        "awaiting_erp_count": len(search.awaiting_erp),
        "orders_not_sent": search.unsent_orders[:SAMPLE_CAP],
        "orders_not_sent_count": len(search.unsent_orders),
        "unknown_skus": sorted(search.unknown_skus)[:SAMPLE_CAP],
        "unknown_sku_count": len(search.unknown_skus),
        "unknown_warehouses": sorted(search.unknown_warehouses)[:SAMPLE_CAP],
        "inactive_warehouses": sorted(search.inactive_warehouses)[:SAMPLE_CAP],
        "duplicates": [
            {"sku": sku, "warehouse": code, "erp": quantities}
            for (sku, code), quantities in sorted(search.duplicates.items())[:SAMPLE_CAP]
        ],
        "duplicate_count": len(search.duplicates),
        "invalid_rows": search.invalid,
        "invalid_samples": search.invalid_samples,
        "out_of_range": search.out_of_range,
    }


_FINISH_FIELDS = [
    "status",
    "completed_at",
    "duration_ms",
    "skus_local",
    "ranges_compared",
    "ranges_differing",
    "requests",
    "rows_fetched",
    "drift_found",
    "drift_fixed",
    "error_code",
    "error_message",
    "details",
]


def _event_save(event: ReconciliationEvent) -> bool:
    """Save a finishing event if it is still `running`; return whether it was.

    An event that a later start timed out keeps its failed status.
    """
    values = {name: getattr(event, name) for name in _FINISH_FIELDS}
    values["updated_at"] = timezone.now()
    return bool(
        ReconciliationEvent.objects.filter(pk=event.pk, status=Status.RUNNING).update(**values)
    )


def _event_complete(event: ReconciliationEvent, search: _Search, *, started: float, log) -> None:
    """Record the figures (inside the correcting transaction: they commit together)."""
    event.status = Status.COMPLETED
    _event_figures(event, search, started=started)
    if not _event_save(event):
        # Timed out by a later start: its corrections must not apply after the fact.
        raise ReconcileFailed(
            "The event was marked timed out while it ran; nothing was applied.",
            code="timed_out",
        )
    log.info(
        "erp_reconcile.finished",
        skus_local=event.skus_local,
        ranges_compared=event.ranges_compared,
        requests=event.requests,
        rows_fetched=event.rows_fetched,
        drift_found=event.drift_found,
        drift_fixed=event.drift_fixed,
        duration_ms=event.duration_ms,
    )
    if event.drift_found:
        log.warning(
            "erp_reconcile.drift",
            found=event.drift_found,
            fixed=event.drift_fixed,
            unknown_skus=len(search.unknown_skus),
            changed_meanwhile=len(search.changed_meanwhile),
        )


def _event_fail(
    event: ReconciliationEvent, search: _Search, message: str, *, code: str, started: float, log
) -> ReconciliationEvent:
    event.status = Status.FAILED
    event.error_code = code
    event.error_message = message[:2000]
    # Nothing was applied: the figures of the search so far, no fixes.
    search.drift_fixed = search.levels_created = 0
    _event_figures(event, search, started=started)
    if not _event_save(event):
        event.refresh_from_db()
        return event
    log.error("erp_reconcile.failed", code=code, error=event.error_message)
    previous = (
        ReconciliationEvent.objects.filter(
            vendor_id=event.vendor_id, started_at__lt=event.started_at
        )
        .exclude(status__in=[Status.SKIPPED, Status.RUNNING])
        .order_by("-started_at")
        .values_list("status", flat=True)
        .first()
    )
    if previous == Status.FAILED:
        alert_send(
            title="ERP reconciliation failing",
            text=f"The reconciliation of vendor {event.vendor} failed twice in a row: "
            f"{event.error_message}",
            key=f"erp_reconcile_failed:{event.vendor_id}",
            severity="error",
            fields={"Event": event.pk, "Code": code},
        )
    return event
