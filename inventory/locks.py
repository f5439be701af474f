"""The one place that locks stock rows (and the vendor rows that serialize per-vendor work).

Every service that changes stock locks the levels it touches here, with
`SELECT ... FOR UPDATE` ordered by primary key, so two transactions always take their
locks in the same order and cannot deadlock on them; quantities are then read and checked
under the lock. Missing levels are created first (sorted, `ON CONFLICT DO NOTHING`), so a
first receipt into a warehouse needs no special path.
"""

import uuid
from collections.abc import Iterable
from functools import reduce
from operator import or_

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from inventory.models import Product, StockLevel, Vendor, Warehouse

# Past this many pairs the lock is taken in id chunks (an OR of thousands of pairs makes a
# poor query plan, and SQLite limits expression depth).
_PAIR_QUERY_LIMIT = 200
_ID_CHUNK = 1000


def _pairs_q(pairs: list[tuple[int, int]]) -> Q:
    return reduce(or_, (Q(product_id=p, warehouse_id=w) for p, w in pairs))


def _locking() -> QuerySet[StockLevel]:
    return StockLevel.objects.select_for_update(of=("self",)).order_by("pk")


def _lock_ids(ids: list[int], *, related: bool = False) -> list[StockLevel]:
    locking = _locking().select_related("product", "warehouse") if related else _locking()
    levels: list[StockLevel] = []
    ids = sorted(ids)
    for start in range(0, len(ids), _ID_CHUNK):
        levels.extend(locking.filter(pk__in=ids[start : start + _ID_CHUNK]))
    return levels


def _select_locked(pairs: list[tuple[int, int]]) -> list[StockLevel]:
    if len(pairs) == 1:
        [(product_id, warehouse_id)] = pairs
        return list(_locking().filter(product_id=product_id, warehouse_id=warehouse_id))
    if len(pairs) <= _PAIR_QUERY_LIMIT:
        return list(_locking().filter(_pairs_q(pairs)))
    wanted = set(pairs)
    product_ids = sorted({p for p, _ in pairs})
    warehouse_ids = sorted({w for _, w in pairs})
    ids = [
        pk
        for pk, product_id, warehouse_id in StockLevel.objects.filter(
            product_id__in=product_ids, warehouse_id__in=warehouse_ids
        ).values_list("pk", "product_id", "warehouse_id")
        if (product_id, warehouse_id) in wanted
    ]
    return _lock_ids(ids)


def stock_levels_lock(
    pairs: Iterable[tuple[Product, Warehouse]],
) -> dict[tuple[int, int], StockLevel]:
    """Lock (creating when missing) the levels of these (product, warehouse) pairs.

    Must run inside a transaction. Returns the locked levels by (product id, warehouse id),
    with their `product` and `warehouse` set from the objects given (no extra queries).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock_levels_lock must run inside transaction.atomic()")
    objects = {(product.pk, warehouse.pk): (product, warehouse) for product, warehouse in pairs}
    keys = sorted(objects)
    levels = _select_locked(keys)
    if len(levels) < len(keys):
        found = {(level.product_id, level.warehouse_id) for level in levels}
        StockLevel.objects.bulk_create(
            [StockLevel(product_id=p, warehouse_id=w) for p, w in keys if (p, w) not in found],
            ignore_conflicts=True,
        )
        levels = _select_locked(keys)
    by_key = {}
    for level in levels:
        product, warehouse = objects[(level.product_id, level.warehouse_id)]
        level.product = product
        level.warehouse = warehouse
        by_key[(level.product_id, level.warehouse_id)] = level
    return by_key


def vendors_lock(vendor_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Lock vendor rows, in primary-key order, to serialize per-vendor work; return the ids.

    The one vendor lock: ERP pull starts, agent ingest batches, mapping seeds and the choice
    of a default warehouse each run one at a time per vendor under it. `FOR NO KEY UPDATE`
    lets other transactions still insert the vendor's products, warehouses and levels (their
    foreign-key checks take `KEY SHARE` locks, which it does not block). Must run inside a
    transaction; the lock is held until it ends.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("vendors_lock must run inside transaction.atomic()")
    return list(
        Vendor.objects.select_for_update(no_key=True)
        .filter(pk__in=set(vendor_ids))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def stock_levels_lock_by_id(ids: Iterable[int]) -> list[StockLevel]:
    """Lock existing levels by id, in primary-key order (inside a transaction), with their
    product and warehouse read in the same query (only the level rows are locked)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock_levels_lock_by_id must run inside transaction.atomic()")
    return _lock_ids(list(set(ids)), related=True)


def stock_levels_lock_staged(table: str, locked: str) -> int:
    """Lock, in primary-key order, the levels a staging table of targets will change.

    `table` has `product_id`, `warehouse_id` and `on_hand` columns (see
    `inventory.services.bulk`). Levels whose on_hand differs from their target and that are
    not yet in `locked` (a staging table with an `id` column) are locked and their ids added
    to it; the caller then changes only those levels, so a level that was equal when this
    ran (and so not locked) is never written. PostgreSQL re-checks the condition on each row
    once its lock is granted. SQLite has no row locks: its transactions take the database
    write lock up front (`transaction_mode = IMMEDIATE` in the settings). Returns how many
    levels were locked.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock_levels_lock_staged must run inside transaction.atomic()")
    level_table = StockLevel._meta.db_table
    lock = " FOR UPDATE OF s" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {locked} (id) SELECT s.id FROM {level_table} s JOIN {table} t "
            f"ON s.product_id = t.product_id AND s.warehouse_id = t.warehouse_id "
            f"WHERE s.on_hand <> t.on_hand "
            f"AND NOT EXISTS (SELECT 1 FROM {locked} l WHERE l.id = s.id) "
            f"ORDER BY s.id{lock}"
        )
        return max(cursor.rowcount, 0)
