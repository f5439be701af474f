"""The local side of the reconciliation: a vendor's stock rows, by SKU range (reads only).

The vendor's rows are its stock levels with a non-zero `on_hand`, of its products (all of
them: discontinued ones and those that do not manage stock still hold physical stock the ERP
counts) in its warehouses, as `(sku, warehouse code, on_hand)`. Only `on_hand` is compared:
reservations are ours alone.

On PostgreSQL every read is one statement, whatever the number of ranges: each row's range
is found with `width_bucket` over the sorted range bounds (a binary search per row, under the
C collation), and the checksums are `string_agg` + `sha256` in the database. Elsewhere
(SQLite, the embedded default) the rows are read and the same figures computed in Python.
"""

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection

from erp_mapping.services.reconcile.protocol import EMPTY, Checksum, SkuRange, checksums_of
from inventory.models import Product, StockLevel, Vendor, Warehouse


@dataclass(frozen=True)
class LocalRow:
    sku: str
    warehouse: str
    on_hand: Decimal
    product_id: int
    warehouse_id: int
    # What the correction checks under the lock (see `LocalRow.marker`): any write to the
    # level moves `updated_at`; an agent re-sending the same content moves `source_updated_at`.
    updated_at: datetime | None = None
    source_updated_at: datetime | None = None

    @property
    def marker(self) -> tuple:
        """The level as read: it changed since when this differs from the level's now."""
        return (self.on_hand, self.updated_at, self.source_updated_at)


def level_marker(level: StockLevel) -> tuple:
    """A locked level's `LocalRow.marker`."""
    return (level.on_hand, level.updated_at, level.source_updated_at)


def local_stock(vendor: Vendor) -> "LocalStock":
    """The reader for this database (SQL on PostgreSQL, Python elsewhere)."""
    if connection.vendor == "postgresql":
        return PostgresLocalStock(vendor)
    return LocalStock(vendor)


def _disjoint_groups(ranges: list[SkuRange]) -> list[list[SkuRange]]:
    """The distinct non-empty ranges in groups of disjoint ones (first fit by lower bound).

    The search only ever asks about disjoint ranges (one group); overlapping ones cost one
    statement per group.
    """
    groups: list[list[SkuRange]] = []
    for rng in sorted({r for r in ranges if not r.hi or r.lo < r.hi}):
        for group in groups:
            if group[-1].hi and group[-1].hi <= rng.lo:
                group.append(rng)
                break
        else:
            groups.append([rng])
    return groups


def _buckets(ranges: list[SkuRange]) -> tuple[list[str], list[int]]:
    """The sorted finite bounds of disjoint ranges, and each range's `width_bucket` number.

    For disjoint ranges, a range's bounds are neighbours among all the bounds, so the bucket
    `[bounds[i - 1], bounds[i])` that starts at its lower bound is exactly the range.
    """
    bounds = sorted({b for rng in ranges for b in (rng.lo, rng.hi) if b})
    numbers = [bisect_left(bounds, rng.lo) + 1 if rng.lo else 0 for rng in ranges]
    return bounds, numbers


class LocalStock:
    """The vendor's rows, computed in Python (any database)."""

    def __init__(self, vendor: Vendor) -> None:
        self.vendor = vendor

    def _rows(self) -> list[LocalRow]:
        rows = [
            LocalRow(sku, code, on_hand, product_id, warehouse_id, *marks)
            for sku, code, on_hand, product_id, warehouse_id, *marks in StockLevel.objects.filter(
                product__vendor=self.vendor, warehouse__vendor=self.vendor
            )
            .exclude(on_hand=0)
            .values_list(
                "product__sku",
                "warehouse__code",
                "on_hand",
                "product_id",
                "warehouse_id",
                "updated_at",
                "source_updated_at",
            )
        ]
        rows.sort(key=lambda row: (row.sku, row.warehouse))
        return rows

    def row_count(self) -> int:
        return (
            StockLevel.objects.filter(product__vendor=self.vendor, warehouse__vendor=self.vendor)
            .exclude(on_hand=0)
            .count()
        )

    def cuts(self, pieces: int) -> list[str]:
        """SKUs that cut the rows' distinct SKUs into `pieces` about equal ranges."""
        skus = sorted({row.sku for row in self._rows()})
        if pieces < 2 or len(skus) < 2:
            return []
        size = len(skus) / min(pieces, len(skus))
        return sorted({skus[int(i * size)] for i in range(1, min(pieces, len(skus)))})

    def checksums(self, ranges: list[SkuRange]) -> list[Checksum]:
        rows = [(row.sku, row.warehouse, row.on_hand) for row in self._rows()]
        return checksums_of(rows, ranges)

    def split_points(self, ranges: list[SkuRange]) -> dict[SkuRange, str]:
        """Per range, its median distinct SKU when it holds two or more (always above the
        lowest one, so both halves hold rows)."""
        skus = sorted({row.sku for row in self._rows()})
        points = {}
        for rng in ranges:
            start = bisect_left(skus, rng.lo) if rng.lo else 0
            end = bisect_left(skus, rng.hi) if rng.hi else len(skus)
            if end - start >= 2:
                points[rng] = skus[start + (end - start) // 2]
        return points

    def first_cut(self, pieces: int) -> tuple[int, list[str]]:
        """The number of rows, and the SKUs that cut them into `pieces` ranges."""
        return self.row_count(), self.cuts(pieces)

    def compare(self, ranges: list[SkuRange]) -> tuple[list[Checksum], dict[SkuRange, str]]:
        """The ranges' checksums and their split points (what one level of the search needs)."""
        return self.checksums(ranges), self.split_points(ranges)

    def rows(self, ranges: list[SkuRange]) -> dict[SkuRange, list[LocalRow]]:
        """The rows of each range."""
        found: dict[SkuRange, list[LocalRow]] = {rng: [] for rng in ranges}
        for group in _disjoint_groups(ranges):
            los = [rng.lo for rng in group]
            for row in self._rows():
                index = bisect_right(los, row.sku) - 1  # the last range starting at or below
                if index >= 0 and row.sku in group[index]:
                    found[group[index]].append(row)
        return found


class PostgresLocalStock(LocalStock):
    """The same reads in SQL (see the module)."""

    def _source(self) -> tuple[str, list]:
        """The vendor's non-zero rows as SQL (columns sku, code, on_hand, product_id,
        warehouse_id, updated_at, source_updated_at; sku and code under the C collation) and
        its parameters."""
        sql = (
            f'SELECT p.sku COLLATE "C" AS sku, w.code COLLATE "C" AS code, s.on_hand, '
            f"s.product_id, s.warehouse_id, s.updated_at, s.source_updated_at "
            f"FROM {StockLevel._meta.db_table} s "
            f"JOIN {Product._meta.db_table} p ON p.id = s.product_id "
            f"JOIN {Warehouse._meta.db_table} w ON w.id = s.warehouse_id "
            f"WHERE p.vendor_id = %s AND w.vendor_id = %s AND s.on_hand <> 0"
        )
        return sql, [self.vendor.pk, self.vendor.pk]

    def _bucketed(self, ranges: list[SkuRange]) -> tuple[str, list, list[int]]:
        """The rows of these ranges with their bucket number `b` (SQL, parameters, numbers)."""
        source, params = self._source()
        bounds, numbers = _buckets(ranges)
        sql = (
            f"SELECT * FROM (SELECT width_bucket(r.sku, %s::text[]) AS b, r.* "
            f"FROM ({source}) AS r) AS rb WHERE b = ANY(%s::int[])"
        )
        return sql, [bounds, *params, numbers], numbers

    def row_count(self) -> int:
        source, params = self._source()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM ({source}) AS r", params)
            return cursor.fetchone()[0]

    def first_cut(self, pieces: int) -> tuple[int, list[str]]:
        # One pass: rows per SKU, the SKUs in tiles, each tile's first SKU and its rows.
        source, params = self._source()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT min(sku), sum(n) FROM (SELECT sku, n, ntile(%s) OVER (ORDER BY sku) "
                f"AS t FROM (SELECT sku, count(*) AS n FROM ({source}) AS r GROUP BY sku) AS d) "
                f"AS x GROUP BY t ORDER BY 1",
                [max(1, pieces), *params],
            )
            tiles = cursor.fetchall()
        return sum(int(rows) for _, rows in tiles), [sku for sku, _ in tiles[1:]]

    def checksums(self, ranges: list[SkuRange]) -> list[Checksum]:
        return self.compare(ranges)[0]

    def compare(self, ranges: list[SkuRange]) -> tuple[list[Checksum], dict[SkuRange, str]]:
        # One pass over the rows per group of disjoint ranges: each range's count and hash,
        # and its median distinct SKU (the split point should it need splitting).
        found: dict[SkuRange, Checksum] = {}
        points: dict[SkuRange, str] = {}
        for group in _disjoint_groups(ranges):
            sql, params, numbers = self._bucketed(group)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"WITH q AS MATERIALIZED ({sql}), "
                    f"sums AS (SELECT b, count(*) AS n, encode(sha256(convert_to(string_agg("
                    f"sku || '|' || code || '|' || on_hand::text || E'\\n', '' "
                    f"ORDER BY sku, code), 'UTF8')), 'hex') AS digest FROM q GROUP BY b), "
                    f"medians AS (SELECT b, sku FROM (SELECT b, sku, row_number() OVER w AS k, "
                    f"count(*) OVER (PARTITION BY b) AS total FROM (SELECT DISTINCT b, sku "
                    f"FROM q) AS d WINDOW w AS (PARTITION BY b ORDER BY sku)) AS m "
                    f"WHERE total >= 2 AND k = total / 2 + 1) "
                    f"SELECT s.b, s.n, s.digest, m.sku FROM sums s "
                    f"LEFT JOIN medians m ON m.b = s.b",
                    params,
                )
                by_number = {b: (Checksum(n, digest), point) for b, n, digest, point in cursor}
            for rng, number in zip(group, numbers, strict=True):
                checksum, point = by_number.get(number, (EMPTY, None))
                found[rng] = checksum
                if point is not None:
                    points[rng] = point
        return [found.get(rng, EMPTY) for rng in ranges], points

    def rows(self, ranges: list[SkuRange]) -> dict[SkuRange, list[LocalRow]]:
        found: dict[SkuRange, list[LocalRow]] = {rng: [] for rng in ranges}
        for group in _disjoint_groups(ranges):
            sql, params, numbers = self._bucketed(group)
            by_number = dict(zip(numbers, group, strict=True))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT b, sku, code, on_hand, product_id, warehouse_id, updated_at, "
                    f"source_updated_at FROM ({sql}) AS q "
                    f"ORDER BY sku, code",
                    params,
                )
                for b, *row in cursor:
                    found[by_number[b]].append(LocalRow(*row))
        return found
