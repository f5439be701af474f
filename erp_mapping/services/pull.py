"""The nightly ERP pull: fetch the ERP's stock counts, archive them, apply them set-based.

Flow (one vendor): take the vendor's run lock -> GET `/inventory` with retries -> archive the
raw bytes -> stream-parse and validate -> one transaction: stage the rows (COPY), drop
superseded duplicates, resolve SKUs and warehouses in SQL, set the levels through
`inventory.services.bulk` (one `erp_sync` movement per changed level), set discontinued
flags -> record the run -> alerts.

Nothing is held per row in Python: a million-row answer is streamed from a temporary file
into a staging table.
"""

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, BinaryIO

import ijson
import structlog
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import ConflictError
from core.services import alert_send
from core.validators import sku_is_valid
from erp_mapping.clients.erp import ErpClient, ErpClientError
from erp_mapping.models import SyncRun
from erp_mapping.selectors import erp_source_for
from inventory.locks import vendors_lock
from inventory.models import Product, Vendor, Warehouse
from inventory.services import Origin
from inventory.services.bulk import (
    TARGET_COLUMNS,
    is_postgresql,
    staging_table_create,
    staging_table_drop,
    staging_table_load,
    stock_levels_sync_staged,
)
from inventory.services.stock import MAX_QUANTITY, QUANTUM

logger = structlog.get_logger(__name__)

ARCHIVE_PREFIX = "inventory-sync"
# Lists kept on the run record are capped; the counts are always complete.
LIST_CAP = 1000
SAMPLE_CAP = 100
SKU_MAX = Product._meta.get_field("sku").max_length
WAREHOUSE_MAX = Warehouse._meta.get_field("code").max_length
RAW_COLUMNS = (
    "seq bigint NOT NULL, sku varchar(100) NOT NULL, warehouse varchar(50) NOT NULL, "
    "qty numeric(14, 3) NOT NULL, discontinued boolean"
)


class ErpNotConfigured(ConflictError):
    code = "erp_not_configured"
    message = "This vendor has no enabled ERP connection."


class PullFailed(Exception):
    """The pull cannot go on; the code and message are recorded on the run."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _RowStats:
    """Validation figures gathered while the rows stream by."""

    read: int = 0
    invalid: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)

    def reject(self, index: int, code: str, row: Any) -> None:
        self.invalid[code] += 1
        if len(self.samples) < SAMPLE_CAP:
            excerpt = row if isinstance(row, dict) else repr(row)[:200]
            self.samples.append({"index": index, "code": code, "row": _jsonable(excerpt)})
            logger.warning("erp_pull.invalid_row", index=index, code=code)


@dataclass
class _Outcome:
    skus_processed: int = 0
    levels_changed: int = 0
    levels_created: int = 0
    discontinued_changed: int = 0
    products_created: int = 0
    unknown_skus: int = 0
    unknown_sku_list: list[str] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    out_of_range: int = 0


class _DryRunRollback(Exception):
    """Raised at the end of a dry run to roll its transaction back."""


def erp_pull_run(
    *, vendor: Vendor, trigger: str = SyncRun.Trigger.SCHEDULE, dry_run: bool = False
) -> SyncRun:
    """Pull the vendor's stock counts from its ERP and apply them; return the run record.

    Takes the vendor's run lock first (a `running` run younger than
    `ERP_PULL_RUN_TIMEOUT_MINUTES` makes this run `skipped`; an older one is marked failed).
    The download is retried (`ERP_PULL_RETRY_DELAYS`) on connection errors, timeouts, a
    body cut short and 5xx; 401/403 fail at once. Each try counts in `attempts`; a cut body
    is discarded, never archived or parsed. The raw bytes of a whole answer are archived
    before they are parsed. All stock changes commit in one transaction or not at all. A dry
    run fetches, parses and counts what would change, then rolls back: only the run record is
    written (no archive, no run lock). Failures are recorded on the run (`error_code`,
    `error_message`) and alerted, not raised. Raises `erp_not_configured` when the vendor has
    no (enabled) ERP connection.
    """
    source = erp_source_for(vendor)
    if source is None:
        raise ErpNotConfigured(f"Vendor {vendor} has no enabled ERP connection.")
    run = _run_begin(vendor=vendor, trigger=trigger, dry_run=dry_run)
    if run.status != SyncRun.Status.RUNNING:
        return run
    log = logger.bind(run_id=run.pk, vendor_id=str(vendor.pk), dry_run=dry_run)
    log.info("erp_pull.started", trigger=trigger)
    started = time.perf_counter()
    client = ErpClient(
        base_url=source.base_url, token=source.token, timeout=settings.ERP_PULL_HTTP_TIMEOUT_SECONDS
    )
    try:
        with tempfile.TemporaryFile(prefix="erp-inventory-") as body:
            download = _download(client, body, run)
            run.api_latency_ms = download.latency_ms
            run.bytes_received = download.bytes
            # A dry run writes nothing but its run record: no archive either.
            run.archive_path = "" if dry_run else _archive(body, run.started_at)
            SyncRun.objects.filter(pk=run.pk).update(
                api_latency_ms=run.api_latency_ms,
                bytes_received=run.bytes_received,
                archive_path=run.archive_path,
                attempts=run.attempts,
            )
            body.seek(0)
            stats = _RowStats()
            apply_started = time.perf_counter()
            outcome = _apply(vendor=vendor, run=run, body=body, stats=stats, dry_run=dry_run)
    except (PullFailed, ErpClientError) as exc:
        return _run_fail(run, str(exc), code=exc.code, started=started, log=log)
    except SoftTimeLimitExceeded:
        # The task's soft limit, a margin before the hard one that kills the process: stop
        # here (the apply transaction, if open, is rolled back) and give the lock back.
        limit = settings.ERP_PULL_SOFT_TIME_LIMIT_SECONDS
        message = f"Stopped at the pull task's soft time limit ({limit} s)."
        return _run_fail(run, message, code="time_limit", started=started, log=log)
    except Exception as exc:
        log.exception("erp_pull.crashed")
        return _run_fail(
            run, f"{type(exc).__name__}: {exc}", code="internal_error", started=started, log=log
        )
    return _run_complete(
        run,
        outcome,
        stats,
        started=started,
        details_extra={
            "download_ms": download.latency_ms + download.transfer_ms,
            "apply_ms": round((time.perf_counter() - apply_started) * 1000),
        },
        log=log,
    )


# --- The run lock -------------------------------------------------------------------------


def _run_begin(*, vendor: Vendor, trigger: str, dry_run: bool) -> SyncRun:
    """Record a new run as `running`, or as `skipped` when another one holds the lock.

    The vendor row is locked (`inventory.locks.vendors_lock`) so concurrent starts in any
    process take turns; the partial unique constraint (one running run per vendor) backs it.
    """
    now = timezone.now()
    timeout = timedelta(minutes=settings.ERP_PULL_RUN_TIMEOUT_MINUTES)
    try:
        with transaction.atomic():
            vendors_lock([vendor.pk])
            for stale in SyncRun.objects.filter(
                vendor=vendor, status=SyncRun.Status.RUNNING, started_at__lt=now - timeout
            ):
                _run_time_out(stale, now=now)
            # A dry run writes no stock: it neither waits for nor holds the lock.
            running = (
                SyncRun.objects.filter(vendor=vendor, status=SyncRun.Status.RUNNING, dry_run=False)
                .order_by("started_at")
                .first()
            )
            if dry_run or running is None:
                return SyncRun.objects.create(
                    vendor=vendor, trigger=trigger, dry_run=dry_run, started_at=now
                )
            return _run_skip(vendor=vendor, trigger=trigger, dry_run=dry_run, holder=running)
    except IntegrityError:
        # Another process started a run between our check and insert (possible where the
        # row lock is not enforced): the constraint turned us away.
        holder = SyncRun.objects.filter(
            vendor=vendor, status=SyncRun.Status.RUNNING, dry_run=False
        ).first()
        with transaction.atomic():
            return _run_skip(vendor=vendor, trigger=trigger, dry_run=dry_run, holder=holder)


def _run_time_out(run: SyncRun, *, now: datetime) -> None:
    minutes = settings.ERP_PULL_RUN_TIMEOUT_MINUTES
    run.status = SyncRun.Status.FAILED
    run.completed_at = now
    run.duration_ms = round((now - run.started_at).total_seconds() * 1000)
    run.error_code = "timed_out"
    run.error_message = f"Timed out: still running after {minutes} minutes (the worker died?)."
    run.save(update_fields=["status", "completed_at", "duration_ms", "error_code", "error_message"])
    logger.warning("erp_pull.timed_out", run_id=run.pk, vendor_id=str(run.vendor_id))
    alert_send(
        title="ERP pull timed out",
        text=f"Pull {run.pk} of vendor {run.vendor_id} ran over {minutes} minutes; marked failed.",
        key=f"erp_pull_timeout:{run.pk}",
        severity="error",
    )


def _run_skip(*, vendor: Vendor, trigger: str, dry_run: bool, holder: SyncRun | None) -> SyncRun:
    now = timezone.now()
    since = (
        f" (run {holder.pk}, started {holder.started_at:%Y-%m-%d %H:%M:%S} UTC)" if holder else ""
    )
    run = SyncRun.objects.create(
        vendor=vendor,
        trigger=trigger,
        dry_run=dry_run,
        status=SyncRun.Status.SKIPPED,
        started_at=now,
        completed_at=now,
        duration_ms=0,
        error_code="pull_running",
        error_message=f"Another pull of this vendor is running{since}.",
    )
    logger.warning(
        "erp_pull.skipped", run_id=run.pk, vendor_id=str(vendor.pk), holder=holder and holder.pk
    )
    alert_send(
        title="ERP pull skipped",
        text=f"Pull {run.pk} of vendor {vendor} skipped: another pull is running{since}.",
        key=f"erp_pull_skipped:{vendor.pk}",
    )
    return run


def _run_fail(run: SyncRun, message: str, *, code: str, started: float, log) -> SyncRun:
    run.status = SyncRun.Status.FAILED
    run.completed_at = timezone.now()
    run.duration_ms = round((time.perf_counter() - started) * 1000)
    run.error_code = code
    run.error_message = message[:2000]
    _run_finish_save(run)
    log.error("erp_pull.failed", code=code, error=run.error_message, attempts=run.attempts)
    alert_send(
        title="ERP pull failed",
        text=f"Pull {run.pk} of vendor {run.vendor} failed after {run.attempts} attempt(s): "
        f"{run.error_message}",
        key=f"erp_pull_failed:{run.pk}",
        severity="error",
        fields={"Run": run.pk, "Attempts": run.attempts},
    )
    return run


def _run_complete(
    run: SyncRun,
    outcome: _Outcome,
    stats: _RowStats,
    *,
    started: float,
    details_extra: dict,
    log,
) -> SyncRun:
    duplicates = stats.invalid.get("duplicate", 0)
    run.status = SyncRun.Status.COMPLETED
    run.completed_at = timezone.now()
    run.duration_ms = round((time.perf_counter() - started) * 1000)
    run.skus_processed = outcome.skus_processed
    run.items_changed = outcome.levels_changed + outcome.discontinued_changed
    run.invalid_rows = sum(stats.invalid.values())
    run.unknown_skus = outcome.unknown_skus
    run.details = {
        "rows_read": stats.read,
        "levels_changed": outcome.levels_changed,
        "levels_created": outcome.levels_created,
        "discontinued_changed": outcome.discontinued_changed,
        "products_created": outcome.products_created,
        "invalid_by_code": dict(stats.invalid),
        "invalid_samples": stats.samples,
        "duplicates": outcome.duplicates[:SAMPLE_CAP],
        "duplicate_rows_superseded": duplicates,
        "unknown_sku_list": outcome.unknown_sku_list,
        "out_of_range": outcome.out_of_range,
        **details_extra,
    }
    _run_finish_save(run)
    log.info(
        "erp_pull.finished",
        status=run.status,
        skus=run.skus_processed,
        changed=run.items_changed,
        invalid=run.invalid_rows,
        unknown=run.unknown_skus,
        duration_ms=run.duration_ms,
        latency_ms=run.api_latency_ms,
    )
    if outcome.unknown_sku_list:
        log.warning(
            "erp_pull.unknown_skus", count=outcome.unknown_skus, skus=outcome.unknown_sku_list
        )
    if not run.dry_run and run.items_changed > settings.ERP_PULL_ALERT_CHANGES:
        alert_send(
            title="ERP pull changed many items",
            text=f"Pull {run.pk} of vendor {run.vendor} changed {run.items_changed} items "
            f"(threshold {settings.ERP_PULL_ALERT_CHANGES}).",
            key=f"erp_pull_changes:{run.pk}",
            fields={"Run": run.pk, "Changed": run.items_changed, "SKUs": run.skus_processed},
        )
    if run.duration_ms > settings.ERP_PULL_ALERT_SLOW_SECONDS * 1000:
        alert_send(
            title="ERP pull was slow",
            text=f"Pull {run.pk} of vendor {run.vendor} took {run.duration_ms / 1000:.0f} s "
            f"(threshold {settings.ERP_PULL_ALERT_SLOW_SECONDS} s).",
            key=f"erp_pull_slow:{run.pk}",
        )
    return run


def _run_finish_save(run: SyncRun) -> None:
    fields = [
        "status",
        "completed_at",
        "duration_ms",
        "error_code",
        "error_message",
        "attempts",
        "skus_processed",
        "items_changed",
        "invalid_rows",
        "unknown_skus",
        "api_latency_ms",
        "bytes_received",
        "archive_path",
        "details",
        "updated_at",
    ]
    values = {name: getattr(run, name) for name in fields if name != "updated_at"}
    # Only a run still `running` is finished here: one that a later start timed out keeps
    # its failed status (its figures are still recorded).
    if not SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.RUNNING).update(**values):
        timed_out = SyncRun.objects.get(pk=run.pk)
        logger.warning("erp_pull.finished_after_timeout", run_id=run.pk, status=run.status)
        values.pop("status")
        values.pop("error_code")
        values.pop("error_message")
        values.pop("completed_at")
        SyncRun.objects.filter(pk=run.pk).update(**values)
        run.status, run.error_message = timed_out.status, timed_out.error_message


# --- Fetch and archive --------------------------------------------------------------------


def _download(client: ErpClient, body: BinaryIO, run: SyncRun):
    delays = list(settings.ERP_PULL_RETRY_DELAYS)
    while True:
        run.attempts += 1
        body.seek(0)
        body.truncate()
        try:
            return client.inventory_download(body)
        except ErpClientError as exc:
            retrying = exc.retryable and delays
            logger.warning(
                "erp_pull.attempt_failed",
                run_id=run.pk,
                attempt=run.attempts,
                code=exc.code,
                status=exc.status,
                error=str(exc),
                retrying=bool(retrying),
            )
            if not retrying:
                raise
            time.sleep(delays.pop(0))


def archive_name(when: datetime) -> str:
    """`inventory-sync/YYYY-MM-DD/inventory_YYYYMMDD_HHMMSS.json` for a run's start (UTC)."""
    when = when.astimezone(UTC)
    return f"{ARCHIVE_PREFIX}/{when:%Y-%m-%d}/inventory_{when:%Y%m%d_%H%M%S}.json"


def _archive(body: BinaryIO, when: datetime) -> str:
    """Store the raw bytes in the archive storage; return the stored name."""
    body.seek(0)
    return storages["erp_archive"].save(archive_name(when), File(body))


def archives_purge(*, now: datetime | None = None, retention_days: int | None = None) -> int:
    """Delete archived payloads older than the retention period; return how many.

    Goes by the date folder (`inventory-sync/YYYY-MM-DD/`), which works the same on a
    local folder and on S3. Idempotent.
    """
    now = now or timezone.now()
    days = settings.ERP_ARCHIVE_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = (now - timedelta(days=days)).date()
    storage = storages["erp_archive"]
    deleted = 0
    # No `exists` check first: on S3 a prefix is not an object, so it never "exists".
    try:
        folders, _ = storage.listdir(ARCHIVE_PREFIX)
    except FileNotFoundError:
        return 0
    for folder in sorted(folders):
        try:
            day = datetime.strptime(folder, "%Y-%m-%d").date()  # noqa: DTZ007 - a date only
        except ValueError:
            continue
        if day >= cutoff:
            continue
        _, files = storage.listdir(f"{ARCHIVE_PREFIX}/{folder}")
        for name in files:
            storage.delete(f"{ARCHIVE_PREFIX}/{folder}/{name}")
            deleted += 1
        if hasattr(storage, "path"):  # a local folder: remove the emptied directory too
            storage.delete(f"{ARCHIVE_PREFIX}/{folder}")
    logger.info("erp_archive.purged", deleted=deleted, cutoff=str(cutoff))
    return deleted


# --- Parse, validate, apply ---------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {_text_sample(str(k), 50): _jsonable(v) for k, v in list(value.items())[:10]}
    if isinstance(value, list):
        return [_jsonable(v) for v in value[:10]]
    if isinstance(value, str):
        return _text_sample(value, 200)
    return value


def _text_sample(text: str, limit: int) -> str:
    """A string a JSON column can hold: NUL and lone surrogates shown escaped."""
    text = text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\u0000")


def _storable(text: str) -> bool:
    """Whether a text column can hold this string (no NUL, valid UTF-8: no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _clean_rows(items, stats: _RowStats, default_warehouse: str | None):
    """Yield valid rows as (seq, sku, warehouse, qty, discontinued); count the others."""
    for index, row in enumerate(items):
        stats.read += 1
        if type(row) is not dict:
            stats.reject(index, "not_an_object", row)
            continue
        sku = row.get("sku")
        if not isinstance(sku, str) or not sku.strip():
            stats.reject(index, "missing_sku", row)
            continue
        sku = sku.strip()
        if len(sku) > SKU_MAX:
            stats.reject(index, "sku_too_long", row)
            continue
        if not _storable(sku) or not sku_is_valid(sku):
            stats.reject(index, "invalid_sku", row)
            continue
        qty = row.get("qty")
        if isinstance(qty, bool) or not isinstance(qty, int | Decimal):
            stats.reject(index, "invalid_quantity", row)
            continue
        if qty < 0:
            stats.reject(index, "negative_quantity", row)
            continue
        if qty > MAX_QUANTITY or (
            isinstance(qty, Decimal) and (not qty.is_finite() or qty != qty.quantize(QUANTUM))
        ):
            stats.reject(index, "invalid_quantity", row)
            continue
        warehouse = row.get("warehouse")
        if warehouse is None:
            if default_warehouse is None:
                stats.reject(index, "no_warehouse", row)
                continue
            warehouse = default_warehouse
        elif (
            not isinstance(warehouse, str)
            or not 0 < len(warehouse.strip()) <= WAREHOUSE_MAX
            or not _storable(warehouse)
        ):
            stats.reject(index, "invalid_warehouse", row)
            continue
        discontinued = row.get("discontinued")
        if discontinued is not None and not isinstance(discontinued, bool):
            stats.reject(index, "invalid_discontinued", row)
            continue
        yield (index, sku, warehouse.strip(), qty, discontinued)


def _check_array(body: BinaryIO) -> None:
    body.seek(0)
    head = body.read(4096).lstrip()
    body.seek(0)
    if not head.startswith(b"["):
        raise PullFailed("The ERP answer is not a JSON array.", code="not_a_json_array")


def _apply(
    *, vendor: Vendor, run: SyncRun, body: BinaryIO, stats: _RowStats, dry_run: bool
) -> _Outcome:
    """Parse the archived body and apply it in one transaction (rolled back on a dry run)."""
    _check_array(body)
    default = Warehouse.objects.filter(vendor=vendor, is_default=True).values_list(
        "code", flat=True
    )
    default_code = default.first()
    origin = Origin(
        source="erp",
        actor="erp-pull",
        reason="nightly ERP stock count" if run.trigger == SyncRun.Trigger.SCHEDULE else "ERP pull",
        reference=f"sync-run:{run.pk}",
    )
    outcome = _Outcome()
    try:
        with transaction.atomic():
            raw = staging_table_create(RAW_COLUMNS)
            items = ijson.items(body, "item", use_float=False)
            try:
                staging_table_load(
                    raw,
                    ("seq", "sku", "warehouse", "qty", "discontinued"),
                    _clean_rows(items, stats, default_code),
                )
            except ijson.JSONError as exc:
                raise PullFailed(
                    f"The ERP answer is not valid JSON: {exc}", code="invalid_json"
                ) from None
            _resolve_and_apply(vendor=vendor, raw=raw, stats=stats, origin=origin, out=outcome)
            if dry_run:
                raise _DryRunRollback
            if not is_postgresql():
                staging_table_drop(raw)
    except _DryRunRollback:
        logger.info("erp_pull.dry_run_rolled_back", run_id=run.pk)
    return outcome


def _vendor_param(vendor: Vendor):
    """The vendor id as raw SQL compares it (SQLite stores UUIDs as 32 hex characters)."""
    return vendor.pk if is_postgresql() else vendor.pk.hex


def _resolve_and_apply(
    *, vendor: Vendor, raw: str, stats: _RowStats, origin: Origin, out: _Outcome
) -> None:
    product_table = Product._meta.db_table
    warehouse_table = Warehouse._meta.db_table
    vendor_id = _vendor_param(vendor)
    postgres = is_postgresql()
    with connection.cursor() as cursor:
        if postgres:
            cursor.execute(f"ANALYZE {raw}")
        # Duplicates: the last row of a (sku, warehouse) wins; the earlier ones are invalid.
        cursor.execute(
            f"SELECT sku, warehouse, count(*) FROM {raw} GROUP BY sku, warehouse "
            f"HAVING count(*) > 1 ORDER BY sku, warehouse LIMIT {SAMPLE_CAP}"
        )
        out.duplicates = [
            {"sku": sku, "warehouse": code, "count": count} for sku, code, count in cursor
        ]
        if out.duplicates:
            cursor.execute(
                f"DELETE FROM {raw} WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() "
                f"OVER (PARTITION BY sku, warehouse ORDER BY seq DESC) AS rank FROM {raw}) "
                f"AS ranked WHERE rank > 1)"
            )
            stats.invalid["duplicate"] += max(cursor.rowcount, 0)
            for dup in out.duplicates[:10]:
                logger.warning("erp_pull.duplicate_sku", sku=dup["sku"], count=dup["count"])
        # Rows naming a warehouse the vendor does not have, or an inactive one (the stock
        # services refuse those too), are invalid.
        cursor.execute(
            f"SELECT r.warehouse, max(CASE WHEN w.id IS NULL THEN 1 ELSE 0 END), count(*) "
            f"FROM {raw} r LEFT JOIN {warehouse_table} w ON w.vendor_id = %s "
            f"AND w.code = r.warehouse WHERE w.id IS NULL OR NOT w.active "
            f"GROUP BY r.warehouse ORDER BY r.warehouse",
            [vendor_id],
        )
        refused = cursor.fetchall()
        if refused:
            cursor.execute(
                f"DELETE FROM {raw} WHERE NOT EXISTS (SELECT 1 FROM {warehouse_table} w "
                f"WHERE w.vendor_id = %s AND w.code = {raw}.warehouse AND w.active)",
                [vendor_id],
            )
            for code, unknown, count in refused:
                reason = "unknown_warehouse" if unknown else "inactive_warehouse"
                stats.invalid[reason] += count
                if len(stats.samples) < SAMPLE_CAP:
                    stats.samples.append({"code": reason, "warehouse": code, "rows": count})
        cursor.execute(f"SELECT count(*) FROM {raw}")
        out.skus_processed = cursor.fetchone()[0]
        # Unknown SKUs: counted and listed; created only when ERP_PULL_CREATE_UNKNOWN is on.
        unknown_sql = (
            f"SELECT DISTINCT r.sku FROM {raw} r WHERE NOT EXISTS (SELECT 1 FROM "
            f"{product_table} p WHERE p.vendor_id = %s AND p.sku = r.sku) ORDER BY r.sku"
        )
        cursor.execute(f"SELECT count(*) FROM ({unknown_sql}) AS unknown", [vendor_id])
        out.unknown_skus = cursor.fetchone()[0]
        if out.unknown_skus:
            cursor.execute(f"{unknown_sql} LIMIT {LIST_CAP}", [vendor_id])
            out.unknown_sku_list = [sku for (sku,) in cursor]
            if settings.ERP_PULL_CREATE_UNKNOWN:
                out.products_created = _products_create_unknown(vendor, cursor, unknown_sql)
        # Resolve to (product, warehouse) targets, then set the levels set-based.
        targets = staging_table_create(TARGET_COLUMNS)
        cursor.execute(
            f"INSERT INTO {targets} (product_id, warehouse_id, on_hand) "
            f"SELECT p.id, w.id, r.qty FROM {raw} r "
            f"JOIN {product_table} p ON p.vendor_id = %s AND p.sku = r.sku "
            f"JOIN {warehouse_table} w ON w.vendor_id = %s AND w.code = r.warehouse",
            [vendor_id, vendor_id],
        )
        if postgres:
            cursor.execute(f"ANALYZE {targets}")
    synced = stock_levels_sync_staged(table=targets, origin=origin, forget_content_hash=True)
    out.levels_changed, out.levels_created = synced.changed, synced.created
    out.out_of_range = len(synced.out_of_range)
    if synced.out_of_range:
        stats.invalid["quantity_out_of_range"] += len(synced.out_of_range)
    out.discontinued_changed = _discontinued_apply(vendor_id=vendor_id, raw=raw)
    if not postgres:
        staging_table_drop(targets)


def _products_create_unknown(vendor: Vendor, cursor, unknown_sql: str) -> int:
    cursor.execute(unknown_sql, [_vendor_param(vendor)])
    created = 0
    while batch := cursor.fetchmany(5000):
        made = Product.objects.bulk_create(
            [Product(vendor=vendor, sku=sku, name=sku) for (sku,) in batch],
            ignore_conflicts=True,
        )
        created += len(made)
    logger.info("erp_pull.products_created", count=created, vendor_id=str(vendor.pk))
    return created


def _discontinued_apply(*, vendor_id, raw: str) -> int:
    """Set the discontinued flag (and its timestamp) of products whose flag changed."""
    now = timezone.now()
    product_table = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {product_table} AS p SET is_discontinued = (d.flag = 1), "
            f"discontinued_at = CASE WHEN d.flag = 1 THEN %s ELSE NULL END, updated_at = %s "
            f"FROM (SELECT sku, max(CASE WHEN discontinued THEN 1 ELSE 0 END) AS flag "
            f"FROM {raw} WHERE discontinued IS NOT NULL GROUP BY sku) AS d "
            f"WHERE p.vendor_id = %s AND p.sku = d.sku AND p.is_discontinued <> (d.flag = 1)",
            [now, now, vendor_id],
        )
        return max(cursor.rowcount, 0)
