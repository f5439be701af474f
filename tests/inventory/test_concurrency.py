"""Concurrency against real PostgreSQL: threads, each with its own connection."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection, connections

from core.errors import DomainError
from inventory.errors import InsufficientStock
from inventory.models import Reservation, StockLevel, StockMovement, Warehouse
from inventory.services import (
    MutationRequest,
    StockMutation,
    stock_mutate,
    stock_mutate_batch,
    stock_reserve,
    stock_set,
    stock_transfer,
    warehouse_create,
)
from tests.conftest import TEST_ORIGIN
from tests.inventory.factories import (
    ProductFactory,
    VendorFactory,
    WarehouseFactory,
    default_vendor,
)

pytestmark = pytest.mark.django_db(transaction=True)


def run_concurrently(count: int, work) -> list:
    """Start `count` threads together (a barrier) and collect what each returned or raised."""
    barrier = threading.Barrier(count)

    def runner(index: int):
        barrier.wait()
        try:
            return work(index)
        except Exception as exc:
            return exc
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(runner, range(count)))


@pytest.fixture
def warehouses():
    vendor = default_vendor()
    return (
        WarehouseFactory(vendor=vendor, code="A", is_default=True),
        WarehouseFactory(vendor=vendor, code="B"),
    )


def test_fifty_concurrent_reservations_of_twenty_available_never_oversell(warehouses):
    assert connection.vendor == "postgresql"
    main, _ = warehouses
    product = ProductFactory()
    stock_set(product=product, warehouse=main, quantity=Decimal(20), origin=TEST_ORIGIN)

    results = run_concurrently(
        50,
        lambda i: stock_reserve(
            product=product, warehouse=main, quantity=Decimal(1), origin=TEST_ORIGIN
        ),
    )

    succeeded = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, InsufficientStock)]
    assert len(succeeded) == 20
    assert len(refused) == 30, [
        r for r in results if not isinstance(r, Reservation | InsufficientStock)
    ]
    level = StockLevel.objects.get(product=product, warehouse=main)
    assert level.available == 0
    assert level.reserved == 20
    call_command("check_ledger")  # exits 1 on any mismatch


def test_opposite_concurrent_transfers_do_not_deadlock_and_conserve_stock(warehouses):
    a, b = warehouses
    products = [ProductFactory() for _ in range(3)]
    for product in products:
        stock_set(product=product, warehouse=a, quantity=Decimal(100), origin=TEST_ORIGIN)
        stock_set(product=product, warehouse=b, quantity=Decimal(100), origin=TEST_ORIGIN)

    def transfer(i: int):
        source, target = (a, b) if i % 2 else (b, a)
        outcomes = []
        for round_ in range(10):
            product = products[(i + round_) % len(products)]
            outcomes.append(
                stock_transfer(
                    product=product,
                    from_warehouse=source,
                    to_warehouse=target,
                    quantity=Decimal(1),
                    origin=TEST_ORIGIN,
                )
            )
        return outcomes

    results = run_concurrently(16, transfer)

    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == []  # a deadlock would surface here as an OperationalError
    for product in products:
        total = sum(StockLevel.objects.filter(product=product).values_list("on_hand", flat=True))
        assert total == Decimal(200)
    assert StockMovement.objects.filter(kind="transfer_out").count() == 160
    call_command("check_ledger")


def test_concurrent_batches_in_opposite_row_order_do_not_deadlock(warehouses):
    main, _ = warehouses
    products = [ProductFactory() for _ in range(20)]
    for product in products:
        stock_set(product=product, warehouse=main, quantity=Decimal(50), origin=TEST_ORIGIN)

    def batch(i: int):
        ordered = products if i % 2 else list(reversed(products))
        rows = [
            MutationRequest(
                kind="adjust",
                product=product,
                warehouse=main,
                quantity=Decimal(-1),
                origin=TEST_ORIGIN,
            )
            for product in ordered
        ]
        return stock_mutate_batch(rows=rows, atomic=False)

    results = run_concurrently(8, batch)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert not any(isinstance(row, DomainError) for result in results for row in result)
    assert set(StockLevel.objects.filter(warehouse=main).values_list("on_hand", flat=True)) == {
        Decimal(42)
    }
    call_command("check_ledger")


def test_concurrent_same_idempotency_key_applies_once(warehouses):
    main, _ = warehouses
    product = ProductFactory()
    stock_set(product=product, warehouse=main, quantity=Decimal(10), origin=TEST_ORIGIN)

    results = run_concurrently(
        10,
        lambda i: stock_reserve(
            product=product,
            warehouse=main,
            quantity=Decimal(2),
            origin=TEST_ORIGIN,
            idempotency_key="same-key",
        ),
    )

    assert all(isinstance(r, Reservation) for r in results), results
    assert len({r.pk for r in results}) == 1
    assert StockLevel.objects.get(product=product, warehouse=main).reserved == Decimal(2)


@pytest.mark.parametrize("kind", ["adjust", "set", "transfer"])
def test_concurrent_mutations_with_one_key_apply_once_and_replay(warehouses, kind):
    a, b = warehouses
    product = ProductFactory()
    stock_set(product=product, warehouse=a, quantity=Decimal(50), origin=TEST_ORIGIN)

    def mutate(i: int):
        return stock_mutate(
            MutationRequest(
                kind=kind,
                product=product,
                warehouse=a,
                to_warehouse=b if kind == "transfer" else None,
                quantity=Decimal(-5) if kind == "adjust" else Decimal(7),
                origin=TEST_ORIGIN,
                idempotency_key=f"one-{kind}",
            )
        )

    results = run_concurrently(8, mutate)

    assert all(isinstance(r, StockMutation) for r in results), results
    assert sum(not r.replayed for r in results) == 1
    expected_a = {"adjust": 45, "set": 7, "transfer": 43}[kind]
    assert StockLevel.objects.get(product=product, warehouse=a).on_hand == expected_a
    call_command("check_ledger")


def test_warehouse_create_concurrent_first_warehouses_give_exactly_one_default():
    # given: a vendor without warehouses, and four requests creating its first ones at once
    vendor = VendorFactory()

    # when
    results = run_concurrently(
        4, lambda i: warehouse_create(vendor=vendor, code=f"W{i}", name=f"W{i}")
    )

    # then: all four exist and exactly one is the default
    assert not [r for r in results if isinstance(r, Exception)], results
    assert Warehouse.objects.filter(vendor=vendor).count() == 4
    defaults = Warehouse.objects.filter(vendor=vendor, is_default=True)
    assert defaults.count() == 1
    assert [w.code for w in results if w.is_default] == [defaults.get().code]
