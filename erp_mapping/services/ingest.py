"""Agent ingest: items, warehouses and stock that a vendor's ERP agent pushes, one hop.

A batch is checked at the edge (`erp_mapping.serializers.ingest`), then each row goes
through: invalid -> duplicate key (the last row with a key wins) -> content hash equal to
the one held: `unchanged` -> `updated_at` older than the one held: `stale` -> codes that do
not resolve: `rejected` -> set-based upsert: `created` / `updated`. One answer per row, in
order. Each batch is one transaction: a handful of statements whatever its size (one read
of the rows held, one resolution per mapping type, upserts in chunks), never a query per row.

Batches of one vendor run one at a time: each takes a lock on its vendor's row first, so
two batches cannot both find a row missing, or both judge it against the same timestamp.
"""

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP
from typing import Any

import structlog
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.correlation import get_correlation_id
from erp_mapping.models import ErpCodeMapping
from erp_mapping.selectors import mapping_resolve_many
from inventory.locks import stock_levels_lock_by_id, vendors_lock
from inventory.models import ZERO, Product, StockLevel, Warehouse
from inventory.services import LevelTarget, Origin, stock_levels_sync, warehouse_default_ensure
from inventory.services.stock import MAX_STOCK_VALUE, MONEY_QUANTUM

logger = structlog.get_logger(__name__)

CREATED, UPDATED, UNCHANGED, STALE = "created", "updated", "unchanged", "stale"
REJECTED, INVALID = "rejected", "invalid"
STATUSES = (CREATED, UPDATED, UNCHANGED, STALE, REJECTED, INVALID)

_CHUNK = 1000
MappingType = ErpCodeMapping.Type


@dataclass(frozen=True)
class InvalidRow:
    """A row that failed validation at the edge (`message` names the field)."""

    key: str
    message: str
    code: str = "invalid_row"
    field: str = ""


@dataclass(frozen=True)
class RowResult:
    key: str
    status: str
    code: str = ""
    message: str = ""
    field: str = ""


@dataclass(frozen=True)
class IngestResult:
    """One result per row of the batch, in the batch's order."""

    kind: str
    results: list[RowResult]

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts


@dataclass(frozen=True)
class _Row:
    index: int
    key: str
    data: dict[str, Any]
    content_hash: str


# Rows as validated at the edge, or the edge's verdict on a bad one.
Rows = Sequence[dict[str, Any] | InvalidRow]


def content_hash(data: dict[str, Any]) -> str:
    """SHA-256 of the row's canonical JSON, without `updated_at` (a re-send of the same
    content with a newer timestamp is still unchanged)."""
    fields = {name: value for name, value in data.items() if name != "updated_at"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _rows_prepare(
    rows: Rows, key_of: Callable[[dict], str], identity_of: Callable[[dict], Any]
) -> tuple[list[RowResult | None], list[_Row]]:
    """Report invalid rows and all but the last row of each identity; return the rest.

    The identity is the natural key's parts (a stock row's SKU and warehouse code as a
    pair), not its display string: `A@B` + `C` and `A` + `B@C` are different rows.
    """
    results: list[RowResult | None] = [None] * len(rows)
    last: dict[Any, int] = {}
    for index, row in enumerate(rows):
        if isinstance(row, InvalidRow):
            results[index] = RowResult(row.key, INVALID, row.code, row.message, row.field)
        else:
            last[identity_of(row)] = index
    kept = []
    for index, row in enumerate(rows):
        if isinstance(row, InvalidRow):
            continue
        key = key_of(row)
        if last[identity_of(row)] != index:
            results[index] = RowResult(
                key, INVALID, "duplicate", f"A later row of this batch has the key {key}."
            )
        else:
            kept.append(_Row(index, key, row, content_hash(row)))
    return results, kept


def _held_verdict(row: _Row, held_hash: str, held_at: datetime | None) -> RowResult | None:
    """`unchanged` or `stale` against what we hold, or None when the row must be applied."""
    if held_hash and held_hash == row.content_hash:
        return RowResult(row.key, UNCHANGED)
    if held_at is not None and row.data["updated_at"] < held_at:
        return RowResult(
            row.key,
            STALE,
            "",
            f"updated_at {row.data['updated_at'].isoformat()} is older than the "
            f"{held_at.isoformat()} already applied.",
        )
    return None


def _source_time_advance(queryset_for: Callable[[list], Any], unchanged: list) -> None:
    """Move `source_updated_at` forward for rows found unchanged with a newer timestamp.

    Without it, a delayed older row (other content, a timestamp between the applied one and
    the unchanged re-send) would not be seen as stale. One UPDATE per distinct timestamp
    (a batch usually has one); a replay with the same timestamps writes nothing.
    """
    by_time: dict[datetime, list] = {}
    for key, held_at, updated_at in unchanged:
        if held_at is None or updated_at > held_at:
            by_time.setdefault(updated_at, []).append(key)
    for updated_at, keys in by_time.items():
        queryset_for(keys).filter(
            Q(source_updated_at__isnull=True) | Q(source_updated_at__lt=updated_at)
        ).update(source_updated_at=updated_at)


def _rows_against_held(
    rows: list[_Row], results: list, queryset: Any, *, key_field: str
) -> tuple[list[_Row], set[str]]:
    """Judge rows against what we hold under their keys (one query).

    Records the `unchanged` and `stale` verdicts (moving the source time of unchanged rows
    forward); returns the rows to apply and the keys already held.
    """
    held = {
        key: (held_hash, held_at)
        for key, held_hash, held_at in queryset.filter(
            **{f"{key_field}__in": [row.key for row in rows]}
        ).values_list(key_field, "content_hash", "source_updated_at")
    }
    fresh, unchanged = [], []
    for row in rows:
        verdict = _held_verdict(row, *held[row.key]) if row.key in held else None
        if verdict is None:
            fresh.append(row)
            continue
        results[row.index] = verdict
        if verdict.status == UNCHANGED:
            unchanged.append((row.key, held[row.key][1], row.data["updated_at"]))
    _source_time_advance(lambda keys: queryset.filter(**{f"{key_field}__in": keys}), unchanged)
    return fresh, set(held)


def _ingest(
    *,
    kind: str,
    vendor_id: uuid.UUID,
    rows: Rows,
    key_of: Callable[[dict], str],
    apply: Callable[[uuid.UUID, list[_Row], list], None],
    identity_of: Callable[[dict], Any] | None = None,
    prepare: Callable[[list[_Row], list], list[_Row]] | None = None,
) -> IngestResult:
    started = time.monotonic()
    results, kept = _rows_prepare(rows, key_of, identity_of or key_of)
    if prepare is not None:
        kept = prepare(kept, results)
    if kept:
        with transaction.atomic():
            vendors_lock([vendor_id])
            apply(vendor_id, kept, results)
    result = IngestResult(kind=kind, results=results)
    logger.info(
        "erp_ingest.batch",
        kind=kind,
        vendor_id=str(vendor_id),
        rows=len(rows),
        counts=result.counts,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    return result


# --- Items ---------------------------------------------------------------------------------

ITEM_FIELDS = [
    "erp_id",
    "name",
    "barcode",
    "unit_code",
    "vat_code",
    "family",
    "subfamily",
    "price_excl_vat",
    "price_incl_vat",
    "vat_amount",
    "manage_stock",
    "allow_negative_stock",
    "content_hash",
    "source_updated_at",
    "updated_at",
]


def erp_items_ingest(*, vendor_id: uuid.UUID, rows: Rows) -> IngestResult:
    """Create or update the vendor's products from ERP item rows (validated at the edge).

    The unit and VAT codes must resolve through the vendor's mappings (an empty unit takes
    the vendor's fallback unit): otherwise `rejected` with `unmapped_unit` / `unmapped_vat`.
    Family and subfamily are optional: unmapped ones are stored empty. The internal codes
    are stored; the VAT amount is derived from the two prices. Idempotent: a replayed batch
    is all `unchanged` and writes nothing.
    """
    return _ingest(
        kind="items", vendor_id=vendor_id, rows=rows, key_of=lambda d: d["sku"], apply=_items_apply
    )


def _items_apply(vendor_id: uuid.UUID, rows: list[_Row], results: list) -> None:
    # One resolution per mapping type for the whole batch (the resolver caches them).
    units = mapping_resolve_many(vendor_id, MappingType.UNIT, {r.data["unit_code"] for r in rows})
    vats = mapping_resolve_many(vendor_id, MappingType.VAT, {r.data["vat_code"] for r in rows})
    families = mapping_resolve_many(
        vendor_id, MappingType.FAMILY, {r.data["family_code"] for r in rows} - {""}
    )
    subfamilies = mapping_resolve_many(
        vendor_id, MappingType.SUBFAMILY, {r.data["subfamily_code"] for r in rows} - {""}
    )
    # The stored hash covers what the codes resolved to as well: a row re-sent after its
    # family (or unit, VAT) mapping changed is applied again, not `unchanged`.
    rows = [
        dataclasses.replace(
            row,
            content_hash=content_hash(
                {
                    **row.data,
                    "_resolved": [
                        units.get(row.data["unit_code"]),
                        vats.get(row.data["vat_code"]),
                        families.get(row.data["family_code"]),
                        subfamilies.get(row.data["subfamily_code"]),
                    ],
                }
            ),
        )
        for row in rows
    ]
    fresh, held = _rows_against_held(
        rows, results, Product.objects.filter(vendor_id=vendor_id), key_field="sku"
    )
    if not fresh:
        return
    products = []
    for row in fresh:
        data = row.data
        unit, vat = units.get(data["unit_code"]), vats.get(data["vat_code"])
        if unit is None:
            message = (
                f"Unit {data['unit_code']!r} has no mapping."
                if data["unit_code"]
                else "No unit given, and the vendor has no fallback unit."
            )
            results[row.index] = RowResult(row.key, REJECTED, "unmapped_unit", message)
            continue
        if vat is None:
            message = f"VAT code {data['vat_code']!r} has no mapping."
            results[row.index] = RowResult(row.key, REJECTED, "unmapped_vat", message)
            continue
        products.append(
            Product(
                vendor_id=vendor_id,
                sku=data["sku"],
                erp_id=data["erp_id"],
                name=data["name"],
                barcode=data["barcode"],
                unit_code=unit,
                vat_code=vat,
                family=families.get(data["family_code"], ""),
                subfamily=subfamilies.get(data["subfamily_code"], ""),
                price_excl_vat=data["price_excl_vat"],
                price_incl_vat=data["price_incl_vat"],
                vat_amount=data["price_incl_vat"] - data["price_excl_vat"],
                manage_stock=data["manage_stock"],
                allow_negative_stock=data["allow_negative_stock"],
                content_hash=row.content_hash,
                source_updated_at=data["updated_at"],
            )
        )
        results[row.index] = RowResult(row.key, UPDATED if row.key in held else CREATED)
    # In SKU order, as every other writer of a vendor's products (no lock-order deadlock).
    products.sort(key=lambda product: product.sku)
    _upsert(Product, products, unique_fields=["vendor", "sku"], update_fields=ITEM_FIELDS)


def _upsert(model: type, objects: list, *, unique_fields: list[str], update_fields: list[str]):
    # INSERT ... ON CONFLICT DO UPDATE: one statement per chunk for new and held rows alike
    # (Django's bulk_update builds a CASE per field and row, ~30 times slower at 5,000 rows).
    # Rows held are locked by their unique key, in the order given: callers sort.
    if objects:
        model.objects.bulk_create(
            objects,
            batch_size=_CHUNK,
            update_conflicts=True,
            unique_fields=unique_fields,
            update_fields=update_fields,
        )


# --- Warehouses ----------------------------------------------------------------------------

WAREHOUSE_FIELDS = [
    "erp_id",
    "name",
    "is_main",
    "is_default",
    "type",
    "content_hash",
    "source_updated_at",
    "updated_at",
]


def erp_warehouses_ingest(*, vendor_id: uuid.UUID, rows: Rows) -> IngestResult:
    """Create or update the vendor's warehouses from ERP warehouse rows.

    A row with `is_default` makes its warehouse the vendor's default: the previous default
    is cleared first (one default per vendor), and its content hash with it, so a later
    re-send of its old row is applied again. Of several default rows in one batch the last
    wins; the earlier ones are `invalid`. A vendor left without a default (no row names one)
    gets its first active warehouse as the default, as on every other path. Warehouses made
    here are active; ingest never changes `active`. Idempotent like the items.
    """
    return _ingest(
        kind="warehouses",
        vendor_id=vendor_id,
        rows=rows,
        key_of=lambda d: d["code"],
        apply=_warehouses_apply,
        prepare=_one_default,
    )


def _one_default(rows: list[_Row], results: list) -> list[_Row]:
    defaults = [row for row in rows if row.data["is_default"]]
    losers = {row.index for row in defaults[:-1]}
    for row in defaults[:-1]:
        results[row.index] = RowResult(
            row.key,
            INVALID,
            "invalid_row",
            f"is_default: a later row of this batch ({defaults[-1].key}) is the default.",
        )
    return [row for row in rows if row.index not in losers]


def _warehouses_apply(vendor_id: uuid.UUID, rows: list[_Row], results: list) -> None:
    fresh, held = _rows_against_held(
        rows, results, Warehouse.objects.filter(vendor_id=vendor_id), key_field="code"
    )
    warehouses = []
    for row in fresh:
        data = row.data
        warehouses.append(
            Warehouse(
                vendor_id=vendor_id,
                code=data["code"],
                erp_id=data["erp_id"],
                name=data["name"],
                is_main=data["is_main"],
                is_default=data["is_default"],
                type=data["type"],
                content_hash=row.content_hash,
                source_updated_at=data["updated_at"],
            )
        )
        results[row.index] = RowResult(row.key, UPDATED if row.key in held else CREATED)
    new_default = next((w.code for w in warehouses if w.is_default), None)
    if new_default is not None:
        # A partial unique constraint allows one default per vendor, checked row by row:
        # the old default must be cleared before the upsert sets the new one.
        Warehouse.objects.filter(vendor_id=vendor_id, is_default=True).exclude(
            code=new_default
        ).update(is_default=False, content_hash="", updated_at=timezone.now())
    warehouses.sort(key=lambda w: w.code)
    _upsert(Warehouse, warehouses, unique_fields=["vendor", "code"], update_fields=WAREHOUSE_FIELDS)
    # Under the vendor lock `_ingest` holds.
    warehouse_default_ensure(vendor_id=vendor_id)


# --- Stock ---------------------------------------------------------------------------------

LEVEL_FIELDS = [
    "ordered_quantity",
    "unit_cost",
    "stock_value",
    "min_stock",
    "max_stock",
    "last_synced_at",
    "content_hash",
    "source_updated_at",
    "updated_at",
]


def erp_stock_ingest(*, vendor_id: uuid.UUID, rows: Rows) -> IngestResult:
    """Set the vendor's stock levels from ERP stock rows.

    Rows name a SKU and a warehouse code of the vendor (else `rejected` with `unknown_sku`,
    `unknown_warehouse`, or `warehouse_inactive`). `on_hand` changes go through one
    `inventory.services.stock_levels_sync` call: one `erp_sync` ledger movement per level
    that changes, none for a level already at its quantity. The other fields (ordered
    quantity, unit cost, limits) are not ledger quantities and are upserted set-based; an
    optional field left out keeps its current value (a null `min_stock` / `max_stock`
    clears it). The levels applied are locked first, in primary-key order, in one pass.
    Idempotent like the items.
    """
    return _ingest(
        kind="stock",
        vendor_id=vendor_id,
        rows=rows,
        key_of=lambda d: f"{d['sku']}@{d['warehouse_code']}",
        identity_of=lambda d: (d["sku"], d["warehouse_code"]),
        apply=_stock_apply,
    )


def _stock_apply(vendor_id: uuid.UUID, rows: list[_Row], results: list) -> None:
    products = {
        product.sku: product
        for product in Product.objects.filter(
            vendor_id=vendor_id, sku__in={row.data["sku"] for row in rows}
        ).only("id", "sku", "vendor_id")
    }
    warehouses = {
        warehouse.code: warehouse
        for warehouse in Warehouse.objects.filter(
            vendor_id=vendor_id, code__in={row.data["warehouse_code"] for row in rows}
        ).only("id", "code", "vendor_id", "active")
    }
    known: list[tuple[_Row, int, int]] = []
    for row in rows:
        product = products.get(row.data["sku"])
        warehouse = warehouses.get(row.data["warehouse_code"])
        if product is None:
            message = f"No product with SKU {row.data['sku']}."
            results[row.index] = RowResult(row.key, REJECTED, "unknown_sku", message)
        elif warehouse is None:
            message = f"No warehouse {row.data['warehouse_code']}."
            results[row.index] = RowResult(row.key, REJECTED, "unknown_warehouse", message)
        elif not warehouse.active:
            message = f"Warehouse {warehouse.code} is inactive."
            results[row.index] = RowResult(row.key, REJECTED, "warehouse_inactive", message)
        else:
            known.append((row, product.pk, warehouse.pk))
    if not known:
        return
    held = {
        (product_id, warehouse_id): (level_id, held_hash, held_at)
        for level_id, product_id, warehouse_id, held_hash, held_at in StockLevel.objects.filter(
            product_id__in={p for _, p, _ in known}, warehouse_id__in={w for _, _, w in known}
        ).values_list("id", "product_id", "warehouse_id", "content_hash", "source_updated_at")
    }
    fresh, unchanged = [], []
    for row, product_id, warehouse_id in known:
        level = held.get((product_id, warehouse_id))
        verdict = _held_verdict(row, level[1], level[2]) if level else None
        if verdict is not None:
            results[row.index] = verdict
            if verdict.status == UNCHANGED:
                unchanged.append((level[0], level[2], row.data["updated_at"]))
        else:
            fresh.append((row, product_id, warehouse_id))
    _source_time_advance(lambda ids: StockLevel.objects.filter(pk__in=ids), unchanged)
    if not fresh:
        return
    # Lock every level about to change in one primary-key-ordered pass, so the upsert and
    # the sync below lock nothing new (no deadlock with other pk-ordered lockers), and the
    # values kept for fields a row leaves out are read under the lock.
    locked = {
        (level.product_id, level.warehouse_id): level
        for level in stock_levels_lock_by_id(
            [held[(p, w)][0] for _, p, w in fresh if (p, w) in held]
        )
    }
    now = timezone.now()
    levels, targets = [], []
    for row, product_id, warehouse_id in fresh:
        level = locked.get((product_id, warehouse_id))
        data = row.data
        unit_cost = data.get("unit_cost", level.unit_cost if level else ZERO)
        stock_value = (data["quantity"] * unit_cost).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
        if abs(stock_value) > MAX_STOCK_VALUE:
            message = f"The stock value of {data['quantity']} at {unit_cost} is out of range."
            results[row.index] = RowResult(row.key, REJECTED, "quantity_out_of_range", message)
            continue
        levels.append(
            StockLevel(
                product_id=product_id,
                warehouse_id=warehouse_id,
                # A level made here starts empty; the sync below brings on_hand to the
                # quantity with its ledger movement.
                on_hand=ZERO,
                ordered_quantity=data.get(
                    "ordered_quantity", level.ordered_quantity if level else ZERO
                ),
                unit_cost=unit_cost,
                # What on_hand * unit_cost will be once the sync has set on_hand.
                stock_value=stock_value,
                min_stock=data["min_stock"] if "min_stock" in data else _kept(level, "min_stock"),
                max_stock=data["max_stock"] if "max_stock" in data else _kept(level, "max_stock"),
                last_synced_at=now,
                content_hash=row.content_hash,
                source_updated_at=data["updated_at"],
            )
        )
        targets.append(LevelTarget(product_id, warehouse_id, data["quantity"]))
        results[row.index] = RowResult(row.key, UPDATED if level else CREATED)
    levels.sort(key=lambda level: (level.product_id, level.warehouse_id))
    _upsert(StockLevel, levels, unique_fields=["product", "warehouse"], update_fields=LEVEL_FIELDS)
    origin = Origin(
        source="erp",
        actor=f"agent:{vendor_id}",
        reason="ERP agent stock batch",
        reference=f"erp_ingest:{get_correlation_id() or uuid.uuid4().hex}",
    )
    synced = stock_levels_sync(targets=targets, origin=origin)
    if synced.out_of_range:
        # Cannot happen (the stock value was checked above with the unit cost the sync
        # sees); reported rather than trusted.
        logger.error("erp_ingest.out_of_range", pairs=synced.out_of_range)
        raise RuntimeError(f"stock_levels_sync left out {len(synced.out_of_range)} levels")


def _kept(level: StockLevel | None, name: str) -> Any:
    return getattr(level, name) if level is not None else None
