import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from inventory.models import StockLevel, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import LevelTarget, Origin, stock_levels_sync, stock_reserve, stock_set
from tests.conftest import TEST_ORIGIN
from tests.helpers import wait_for
from tests.inventory.factories import ProductFactory

ERP = Origin(source="erp", actor="test-erp", reference="run 1")


def level_of(product, warehouse) -> StockLevel:
    return StockLevel.objects.get(product=product, warehouse=warehouse)


@pytest.mark.django_db
def test_stock_levels_sync_writes_one_movement_per_changed_level(warehouse, store, stocked):
    # given: one level to raise, one to lower, one already right, one missing
    up = stocked(5)
    down = stocked(9)
    same = stocked(7)
    new = ProductFactory()
    same_level = level_of(same, warehouse)
    movements_before = StockMovement.objects.count()

    # when
    result = stock_levels_sync(
        targets=[
            LevelTarget(up.pk, warehouse.pk, Decimal("12")),
            LevelTarget(down.pk, warehouse.pk, Decimal("2.5")),
            LevelTarget(same.pk, warehouse.pk, Decimal("7")),
            LevelTarget(new.pk, store.pk, Decimal("3")),
        ],
        origin=ERP,
    )

    # then
    assert (result.changed, result.created) == (3, 1)
    assert result.changed_pairs == {
        (up.pk, warehouse.pk),
        (down.pk, warehouse.pk),
        (new.pk, store.pk),
    }
    assert level_of(up, warehouse).on_hand == Decimal("12")
    assert level_of(down, warehouse).on_hand == Decimal("2.5")
    assert level_of(new, store).on_hand == Decimal("3")
    untouched = level_of(same, warehouse)
    assert untouched.updated_at == same_level.updated_at
    assert untouched.last_synced_at is None

    written = list(StockMovement.objects.filter(kind="erp_sync").order_by("level_id"))
    assert len(written) == StockMovement.objects.count() - movements_before == 3
    by_level = {m.level_id: m for m in written}
    down_move = by_level[level_of(down, warehouse).pk]
    assert (down_move.on_hand_delta, down_move.on_hand_after) == (Decimal("-6.5"), Decimal("2.5"))
    assert (down_move.source, down_move.actor, down_move.reference) == ("erp", "test-erp", "run 1")
    assert ledger_mismatches() == []


@pytest.mark.django_db
def test_stock_levels_sync_keeps_reservations_and_stock_value(warehouse, stocked):
    product = stocked(10)
    stock_reserve(product=product, warehouse=warehouse, quantity=Decimal("4"), origin=TEST_ORIGIN)
    StockLevel.objects.filter(product=product).update(unit_cost=Decimal("2.5"))

    stock_levels_sync(targets=[LevelTarget(product.pk, warehouse.pk, Decimal("6"))], origin=ERP)

    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved, level.available) == (6, 4, 2)
    assert level.stock_value == Decimal("15.0000")
    movement = level.movements.filter(kind="erp_sync").get()
    assert (movement.reserved_after, movement.on_hand_delta) == (Decimal("4"), Decimal("-4"))
    assert ledger_mismatches() == []


@pytest.mark.django_db
def test_stock_levels_sync_leaves_out_values_that_overflow(warehouse, stocked):
    product = stocked(1)
    other = stocked(1)
    StockLevel.objects.filter(product=product).update(unit_cost=Decimal("9999999999"))

    result = stock_levels_sync(
        targets=[
            LevelTarget(product.pk, warehouse.pk, Decimal("99999999999")),
            LevelTarget(other.pk, warehouse.pk, Decimal("5")),
        ],
        origin=ERP,
    )

    assert result.out_of_range == [(product.pk, warehouse.pk)]
    assert level_of(product, warehouse).on_hand == 1
    assert level_of(other, warehouse).on_hand == 5


@pytest.mark.django_db
def test_stock_levels_sync_alerts_levels_falling_below_minimum(
    warehouse, stocked, slack, django_capture_on_commit_callbacks
):
    product = stocked(10, sku="LOW-1")
    StockLevel.objects.filter(product=product).update(min_stock=Decimal("5"))
    already_low = stocked(2)
    StockLevel.objects.filter(product=already_low).update(min_stock=Decimal("5"))

    with django_capture_on_commit_callbacks(execute=True):
        stock_levels_sync(
            targets=[
                LevelTarget(product.pk, warehouse.pk, Decimal("3")),
                LevelTarget(already_low.pk, warehouse.pk, Decimal("1")),
            ],
            origin=ERP,
        )

    wait_for(lambda: len(slack.messages) >= 1)
    assert len(slack.messages) == 1
    assert "LOW-1 in MAIN: 3.000 available, below the minimum of 5.000" in str(slack.messages[0])


@pytest.mark.django_db
def test_stock_levels_sync_rolls_back_with_the_callers_transaction(warehouse, stocked):
    product = stocked(5)

    def sync_then_fail() -> None:
        with transaction.atomic():
            stock_levels_sync(
                targets=[LevelTarget(product.pk, warehouse.pk, Decimal("50"))], origin=ERP
            )
            raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError):
        sync_then_fail()

    assert level_of(product, warehouse).on_hand == 5
    assert not StockMovement.objects.filter(kind="erp_sync").exists()


@pytest.mark.django_db(transaction=True)
def test_stock_levels_sync_waits_for_a_concurrent_reservation(warehouse):
    # given: a reservation holds the level's lock in another transaction
    product = ProductFactory()
    stock_set(product=product, warehouse=warehouse, quantity=Decimal("10"), origin=TEST_ORIGIN)
    reserved = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def reserve() -> None:
        try:
            with transaction.atomic():
                stock_reserve(
                    product=product,
                    warehouse=warehouse,
                    quantity=Decimal("3"),
                    origin=TEST_ORIGIN,
                )
                reserved.set()
                release.wait(10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=reserve)
    holder.start()
    assert reserved.wait(10)
    done = threading.Event()

    def sync() -> None:
        try:
            stock_levels_sync(
                targets=[LevelTarget(product.pk, warehouse.pk, Decimal("8"))], origin=ERP
            )
            done.set()
        finally:
            connection.close()

    syncer = threading.Thread(target=sync)
    syncer.start()

    # then: the sync waits for the lock, and records the reservation it waited for
    time.sleep(0.3)
    assert not done.is_set()
    release.set()
    holder.join(10)
    syncer.join(10)
    assert done.is_set()
    assert not errors
    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved) == (8, 3)
    movement = level.movements.get(kind="erp_sync")
    assert (movement.on_hand_delta, movement.reserved_after) == (Decimal("-2"), Decimal("3"))
    assert ledger_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_stock_levels_sync_never_writes_a_level_it_did_not_lock(warehouse, monkeypatch):
    # given: one level at its target (not locked by the sync), one to change
    from inventory.services import bulk, stock_adjust

    same = ProductFactory()
    other = ProductFactory()
    stock_set(product=same, warehouse=warehouse, quantity=Decimal("5"), origin=TEST_ORIGIN)
    stock_set(product=other, warehouse=warehouse, quantity=Decimal("1"), origin=TEST_ORIGIN)
    real_lock = bulk.stock_levels_lock_staged
    calls = []

    def adjust_elsewhere() -> None:
        try:
            stock_adjust(product=same, warehouse=warehouse, delta=Decimal("1"), origin=TEST_ORIGIN)
        finally:
            connection.close()

    def lock_then_commit_a_concurrent_change(table, locked):
        count = real_lock(table, locked)
        calls.append(count)
        if len(calls) == 2:
            # a change committed by another transaction after the sync took its locks
            thread = threading.Thread(target=adjust_elsewhere)
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), "the unlocked level was blocked"
        return count

    monkeypatch.setattr(bulk, "stock_levels_lock_staged", lock_then_commit_a_concurrent_change)

    # when
    result = stock_levels_sync(
        targets=[
            LevelTarget(same.pk, warehouse.pk, Decimal("5")),
            LevelTarget(other.pk, warehouse.pk, Decimal("3")),
        ],
        origin=ERP,
    )

    # then: the concurrent change stands, only the locked level was synced, the ledger adds up
    assert calls == [1, 0]
    assert result.changed == 1
    assert level_of(same, warehouse).on_hand == 6
    assert level_of(other, warehouse).on_hand == 3
    assert ledger_mismatches() == []
