"""Range checksums: the same figures in Python (the SQLite path), in PostgreSQL's SQL and at
the agent, checked against hashes written out here."""

from decimal import Decimal

import pytest

from erp_mapping.agent_server.stock import generated_stock
from erp_mapping.services.reconcile import agent_client_for
from erp_mapping.services.reconcile.local import LocalStock, PostgresLocalStock
from erp_mapping.services.reconcile.protocol import (
    EMPTY_SHA256,
    Checksum,
    SkuRange,
    agent_checksums,
    bound_encode,
    checksums_of,
)
from tests.erp_mapping.reconcile_helpers import catalogue, erp_from_local, stock
from tests.inventory.factories import WarehouseFactory

# Sorted by (sku, warehouse) in byte order: "B.2" < "Zeta" < "alpha" < "Éclair" < "日本-1".
ROWS = [
    ("A-1", "MAIN", Decimal("12")),
    ("A-1", "STORE", Decimal("0.5")),
    ("B.2", "MAIN", Decimal("3.250")),
    ("Zeta", "MAIN", Decimal("2")),
    ("alpha", "STORE", Decimal("40.001")),
    ("Éclair", "MAIN", Decimal("1")),
    ("日本-1", "MAIN", Decimal("7.125")),
]
# sha256 of the lines, written out by hand:
# "A-1|MAIN|12.000\nA-1|STORE|0.500\n"
SHA_A = "c6581bb24781370468bb31264cc51e73a59ae90632825428eba666b71c05bcd8"
# "B.2|MAIN|3.250\n"
SHA_B = "73f13d6e963b36d7a5d2da31f21701fe78a4daed47f51b9cdff8b44681f9cf73"
# "Éclair|MAIN|1.000\n日本-1|MAIN|7.125\n"
SHA_UNICODE = "a48aed9ca39159ee61a16c1eb643afa8ffdcfd9cc7eabca4aaf38704bc421250"
EXPECTED = [
    (SkuRange("", "B"), Checksum(2, SHA_A)),
    (SkuRange("B", "B.3"), Checksum(1, SHA_B)),
    (SkuRange("É", ""), Checksum(2, SHA_UNICODE)),
    (SkuRange("C", "D"), Checksum(0, EMPTY_SHA256)),
]


def test_checksums_of_matches_the_hashes_written_out():
    # the Python computation, used where the database is not PostgreSQL (SQLite)
    answer = checksums_of(ROWS, [rng for rng, _ in EXPECTED])

    assert answer == [checksum for _, checksum in EXPECTED]
    assert EMPTY_SHA256 == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_checksums_of_uses_byte_order_not_the_locale():
    # "Zeta" < "alpha" in byte order: a range up to "a" holds Zeta, not alpha
    [upper, lower] = checksums_of(ROWS, [SkuRange("Z", "a"), SkuRange("a", "b")])

    assert upper == checksums_of([ROWS[3]], [SkuRange()])[0]
    assert lower == checksums_of([ROWS[4]], [SkuRange()])[0]


def test_bound_encode_keeps_dots_and_commas_out_of_the_syntax():
    assert SkuRange("a.b,c", "").param == "a%2Eb%2Cc.."
    assert bound_encode("日本 1") == "%E6%97%A5%E6%9C%AC%201"
    assert SkuRange("", "ERP-0001").param == "..ERP-0001"


@pytest.fixture
def local_rows(vendor, warehouse, store):
    """ROWS held here, plus a zero level (left out on both sides)."""
    products = catalogue(vendor, {sku for sku, _, _ in ROWS} | {"ZERO"})
    codes = {"MAIN": warehouse, "STORE": store}
    stock((products[sku], codes[code], qty) for sku, code, qty in ROWS)
    stock([(products["ZERO"], warehouse, 5)])
    stock([(products["ZERO"], warehouse, 0)])
    return products


@pytest.mark.parametrize("reader", [LocalStock, PostgresLocalStock])
@pytest.mark.django_db
def test_local_checksums_match_the_hashes_written_out(vendor, local_rows, reader):
    local = reader(vendor)

    assert local.checksums([rng for rng, _ in EXPECTED]) == [c for _, c in EXPECTED]
    assert local.row_count() == len(ROWS)


@pytest.mark.django_db
def test_local_checksums_leave_out_other_vendors_stock(vendor, local_rows):
    other = WarehouseFactory(vendor=vendor, code="ELSEWHERE")
    from tests.inventory.factories import ProductFactory, VendorFactory

    stranger = VendorFactory()
    stock([(ProductFactory(vendor=stranger, sku="A-1"), WarehouseFactory(vendor=stranger), 9)])

    assert PostgresLocalStock(vendor).checksums([SkuRange("", "B")]) == [Checksum(2, SHA_A)]
    assert other.stock_levels.count() == 0


@pytest.mark.django_db
def test_checksums_equal_here_in_sql_and_at_the_agent(vendor, local_rows, agent_erp):
    # given the ERP holds the same stock
    erp_from_local(agent_erp, vendor)
    ranges = [
        SkuRange(),
        SkuRange("", "A-1"),
        SkuRange("A-1", "A-2"),
        SkuRange("B.2", "Zeta"),
        SkuRange("a", "Éclair"),
        SkuRange("日本", ""),
        SkuRange("a.b,c", "a.b,d"),
        *(rng for rng, _ in EXPECTED),
    ]

    # when
    theirs = agent_checksums(agent_client_for(agent_erp.agent), ranges, calls=[0])

    # then
    assert theirs == PostgresLocalStock(vendor).checksums(ranges)
    assert theirs == LocalStock(vendor).checksums(ranges)
    assert theirs[0].count == len(ROWS)


@pytest.mark.django_db
def test_agent_checksums_split_a_long_list_into_calls_the_agent_takes(vendor, agent_erp):
    # given 600 ranges over a generated catalogue (the agent takes 256 a call)
    agent_erp.stock_generate(3000, warehouses=("MAIN", "STORE"))
    rows = list(generated_stock(3000, warehouses=("MAIN", "STORE")))
    cuts = [rows[i][0] for i in range(5, 3000, 5)]
    ranges = [SkuRange(lo, hi) for lo, hi in zip(["", *cuts], [*cuts, ""], strict=True)]
    calls = [0]

    # when
    theirs = agent_checksums(agent_client_for(agent_erp.agent), ranges, calls=calls)

    # then
    assert len(ranges) == 600
    assert calls == [3]
    assert theirs == checksums_of(rows, ranges)
    assert sum(c.count for c in theirs) == 3000


@pytest.mark.django_db
def test_sql_search_reads_match_the_python_ones(vendor, warehouse, store):
    # given 300 SKUs, some in two warehouses
    products = catalogue(vendor, [f"Q-{i:04d}" for i in range(300)])
    stock((p, warehouse, i % 7 + 1) for i, p in enumerate(products.values()))
    stock((p, store, "0.125") for i, p in enumerate(products.values()) if i % 3 == 0)
    sql, python = PostgresLocalStock(vendor), LocalStock(vendor)

    # when / then: the first cut
    count, cuts = sql.first_cut(8)
    assert count == python.row_count() == 400
    assert len(cuts) == 7
    assert cuts == sorted(cuts)
    # and one level's checksums and split points, on disjoint ranges
    ranges = [SkuRange(lo, hi) for lo, hi in zip(["", *cuts], [*cuts, ""], strict=True)]
    checksums, points = sql.compare(ranges)
    assert (checksums, points) == python.compare(ranges)
    assert set(points) == set(ranges)
    assert all(rng.lo < points[rng] and points[rng] in rng for rng in ranges)
    assert sum(c.count for c in checksums) == 400
