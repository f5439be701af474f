"""Set-based stock sync: set many levels' on_hand at once (ERP pulls and agent batches).

The per-level services (`stock_set`, ...) cost a few queries per level; a nightly pull sets
tens of thousands of levels. These services do the same job in a handful of statements over
a staging table of targets, with the same guarantees: the changed levels are locked in
primary-key order (`inventory.locks`), each changed level gets exactly one ledger movement
in the same transaction, equal levels are not touched, and low-stock alerts are raised after
commit.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from core.correlation import get_correlation_id
from core.metrics import STOCK_MOVEMENTS
from core.services import alert_send
from inventory.hooks import StockChange, stock_changed
from inventory.locks import stock_levels_lock_staged
from inventory.models import StockLevel, StockMovement
from inventory.services.stock import MAX_QUANTITY, MAX_STOCK_VALUE, Origin

# Past this many levels falling below their minimum in one sync, one summary alert is sent
# instead of one alert per level.
LOW_STOCK_ALERTS_MAX = 20
_LOAD_CHUNK = 5000


@dataclass(frozen=True)
class LevelTarget:
    """The on_hand quantity a level must have."""

    product_id: int
    warehouse_id: int
    on_hand: Decimal


@dataclass
class LevelSyncResult:
    """What a sync changed."""

    changed: int = 0
    created: int = 0
    changed_pairs: set[tuple[int, int]] = field(default_factory=set)
    out_of_range: list[tuple[int, int]] = field(default_factory=list)


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def staging_table_create(columns: str) -> str:
    """Create a temporary table for this transaction and return its name.

    Must run inside a transaction; the table is dropped on commit (PostgreSQL) or by
    `staging_table_drop` (SQLite). `columns` is the column list in SQL.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("staging tables live inside transaction.atomic()")
    name = f"staging_{uuid.uuid4().hex[:12]}"
    suffix = " ON COMMIT DROP" if is_postgresql() else ""
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {name} ({columns}){suffix}")
    return name


def staging_table_drop(name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def staging_table_load(name: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Load rows into a staging table (COPY on PostgreSQL, batched INSERTs elsewhere)."""
    count = 0
    with connection.cursor() as cursor:
        if is_postgresql():
            raw = cursor.cursor  # the psycopg cursor under Django's wrapper
            with raw.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    count += 1
            return count
        sql = (
            f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})"
        )
        chunk: list[Sequence] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= _LOAD_CHUNK:
                cursor.executemany(sql, chunk)
                count += len(chunk)
                chunk = []
        if chunk:
            cursor.executemany(sql, chunk)
            count += len(chunk)
    return count


TARGET_COLUMNS = (
    "product_id bigint NOT NULL, warehouse_id bigint NOT NULL, on_hand numeric(14, 3) NOT NULL"
)


def stock_levels_sync(
    *,
    targets: Sequence[LevelTarget],
    origin: Origin,
    kind: str = StockMovement.Kind.ERP_SYNC,
) -> LevelSyncResult:
    """Set each level's on_hand to its target, set-based.

    Creates missing levels, locks the levels that change in primary-key order, writes one
    `kind` movement per changed level, and leaves levels already at their target untouched.
    Runs in the caller's transaction when there is one (else its own). Targets must hold
    distinct (product, warehouse) pairs and quantities already cleaned (`quantity_clean`).
    A target whose stock value would overflow is left out and reported in `out_of_range`.
    """
    with transaction.atomic():
        table = staging_table_create(TARGET_COLUMNS)
        staging_table_load(
            table,
            ("product_id", "warehouse_id", "on_hand"),
            ((t.product_id, t.warehouse_id, t.on_hand) for t in targets),
        )
        result = stock_levels_sync_staged(table=table, origin=origin, kind=kind, pairs=True)
        if not is_postgresql():
            staging_table_drop(table)
    return result


def stock_levels_sync_staged(
    *,
    table: str,
    origin: Origin,
    kind: str = StockMovement.Kind.ERP_SYNC,
    pairs: bool = False,
    forget_content_hash: bool = False,
) -> LevelSyncResult:
    """Apply a staging table of targets (`product_id`, `warehouse_id`, `on_hand`).

    The set-based core of `stock_levels_sync`, for callers that stage their targets with
    SQL (a pull of a million rows never holds them in Python). Must run inside a
    transaction. With `pairs`, the changed (product, warehouse) pairs are returned too.
    `forget_content_hash` clears the changed levels' agent content hash, for a source other
    than the agent (the nightly pull): the agent's next row is then applied, not `unchanged`.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("stock_levels_sync_staged must run inside transaction.atomic()")
    now = timezone.now()
    level_table = StockLevel._meta.db_table
    movement_table = StockMovement._meta.db_table
    join = "s.product_id = t.product_id AND s.warehouse_id = t.warehouse_id"
    # SQLite would compare a bound Decimal as text: bind the limits as numbers there.
    number = "%s" if is_postgresql() else "CAST(%s AS REAL)"
    result = LevelSyncResult()
    locked = staging_table_create("id bigint PRIMARY KEY")
    changing = f"{level_table} s JOIN {table} t ON {join} JOIN {locked} l ON l.id = s.id"
    with connection.cursor() as cursor:
        # Existing levels first, then the missing ones are created and locked: the order of
        # `inventory.locks.stock_levels_lock`, so the two never wait on each other in a
        # cycle.
        stock_levels_lock_staged(table, locked)
        missing = staging_table_create(TARGET_COLUMNS)
        cursor.execute(
            f"INSERT INTO {missing} (product_id, warehouse_id, on_hand) "
            f"SELECT t.product_id, t.warehouse_id, t.on_hand FROM {table} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM {level_table} s WHERE {join})"
        )
        cursor.execute(
            f"INSERT INTO {level_table} (created_at, updated_at, product_id, warehouse_id, "
            f"on_hand, reserved, ordered_quantity, unit_cost, stock_value, content_hash) "
            f"SELECT %s, %s, t.product_id, t.warehouse_id, 0, 0, 0, 0, 0, '' FROM {missing} t "
            f"ORDER BY t.product_id, t.warehouse_id "
            f"ON CONFLICT (product_id, warehouse_id) DO NOTHING",
            [now, now],
        )
        result.created = max(cursor.rowcount, 0)
        # The new levels (ours, or made meanwhile by another transaction: locked all the same).
        stock_levels_lock_staged(missing, locked)
        if is_postgresql():
            cursor.execute(f"ANALYZE {locked}")  # temporary tables get no autovacuum stats
        # Under the lock, in one pass: targets whose change or stock value would not fit
        # their column (left out and reported, so one absurd quantity cannot fail the whole
        # sync), and levels about to fall below their minimum.
        too_big = (
            f"abs(t.on_hand * s.unit_cost) > {number} OR abs(t.on_hand - s.on_hand) > {number}"
        )
        falls = (
            "s.min_stock IS NOT NULL AND s.on_hand - s.reserved >= s.min_stock "
            "AND t.on_hand - s.reserved < s.min_stock"
        )
        cursor.execute(
            f"SELECT s.id, t.product_id, t.warehouse_id, CASE WHEN {too_big} THEN 1 ELSE 0 END, "
            f"s.min_stock, t.on_hand - s.reserved FROM {changing} "
            f"WHERE ({too_big}) OR ({falls}) ORDER BY s.id",
            [MAX_STOCK_VALUE, MAX_QUANTITY, MAX_STOCK_VALUE, MAX_QUANTITY],
        )
        flagged = cursor.fetchall()
        out_of_range = [row for row in flagged if row[3]]
        falling = [(row[0], row[4], row[5]) for row in flagged if not row[3]]
        if out_of_range:
            result.out_of_range = [(row[1], row[2]) for row in out_of_range]
            cursor.execute(
                f"DELETE FROM {locked} WHERE id IN ({', '.join('%s' for _ in out_of_range)})",
                [row[0] for row in out_of_range],
            )
        cursor.execute(
            f"INSERT INTO {movement_table} (level_id, kind, on_hand_delta, reserved_delta, "
            f"on_hand_after, reserved_after, unit_cost, source, reference, reason, actor, "
            f"correlation_id, idempotency_key, reservation_id, created_at) "
            f"SELECT s.id, %s, t.on_hand - s.on_hand, 0, t.on_hand, s.reserved, NULL, %s, %s, "
            f"%s, %s, %s, '', NULL, %s FROM {changing} "
            f"WHERE s.on_hand <> t.on_hand ORDER BY s.id",
            [
                kind,
                origin.source,
                origin.reference[:200],
                origin.reason[:500],
                origin.actor[:150],
                get_correlation_id() or "",
                now,
            ],
        )
        result.changed = max(cursor.rowcount, 0)
        forget = "content_hash = '', " if forget_content_hash else ""
        # SQLite's RETURNING names the updated table's columns unqualified (and cannot see
        # the FROM table); PostgreSQL needs them qualified (both tables have them).
        qualifier = "s." if is_postgresql() else ""
        returning = f" RETURNING {qualifier}product_id, {qualifier}warehouse_id" if pairs else ""
        cursor.execute(
            f"UPDATE {level_table} AS s SET on_hand = t.on_hand, {forget}"
            f"stock_value = round(t.on_hand * s.unit_cost, 4), last_synced_at = %s, "
            f"updated_at = %s FROM {table} t WHERE {join} AND s.on_hand <> t.on_hand "
            f"AND s.id IN (SELECT id FROM {locked}){returning}",
            [now, now],
        )
        if pairs:
            result.changed_pairs = {tuple(row) for row in cursor.fetchall()}
    if result.changed:
        # The locked set is exactly the levels just written (less the out-of-range ones).
        stock_changed(StockChange(level_table=locked))
    if not is_postgresql():
        staging_table_drop(locked)
        staging_table_drop(missing)
    if result.changed:
        changed = result.changed
        transaction.on_commit(lambda: STOCK_MOVEMENTS.labels(kind).inc(changed), robust=True)
    if falling:
        _alert_low_stock(falling)
    return result


def _alert_low_stock(falling: list[tuple]) -> None:
    ids = [row[0] for row in falling[:LOW_STOCK_ALERTS_MAX]]
    levels = StockLevel.objects.select_related("product", "warehouse").in_bulk(ids)
    for level_id, minimum, available in falling[:LOW_STOCK_ALERTS_MAX]:
        level = levels[level_id]
        sku, code = level.product.sku, level.warehouse.code
        alert_send(
            title="Low stock",
            text=f"{sku} in {code}: {available} available, below the minimum of {minimum}.",
            key=f"low_stock:{level_id}",
            fields={"SKU": sku, "Warehouse": code, "Available": available, "Min": minimum},
        )
    if len(falling) > LOW_STOCK_ALERTS_MAX:
        more = len(falling) - LOW_STOCK_ALERTS_MAX
        alert_send(
            title="Low stock",
            text=f"{more} more stock levels fell below their minimum in one sync.",
            fields={"Levels": len(falling)},
        )
