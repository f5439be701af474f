from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.errors import DomainError
from inventory.errors import (
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidQuantity,
    ReservationNotActive,
    ReservationOwnedByOrder,
    WarehouseInactive,
)
from inventory.locks import stock_levels_lock
from inventory.models import Reservation, StockLevel, StockMovement
from inventory.selectors import ledger_mismatches
from inventory.services import (
    Origin,
    reservations_expire,
    stock_adjust,
    stock_commit,
    stock_release,
    stock_reserve,
    stock_set,
    stock_transfer,
)
from tests.conftest import TEST_ORIGIN
from tests.inventory.factories import ProductFactory, VendorFactory, WarehouseFactory

pytestmark = pytest.mark.django_db

D = Decimal


def level_of(product, warehouse) -> StockLevel:
    return StockLevel.objects.get(product=product, warehouse=warehouse)


def test_stock_adjust_receives_and_writes_one_movement(warehouse):
    product = ProductFactory()

    result = stock_adjust(product=product, warehouse=warehouse, delta=D("5.5"), origin=TEST_ORIGIN)

    level = level_of(product, warehouse)
    assert level.on_hand == D("5.5")
    [movement] = result.movements
    assert movement.kind == StockMovement.Kind.ADJUST
    assert movement.on_hand_delta == D("5.5")
    assert movement.on_hand_after == D("5.5")
    assert movement.actor == "test"
    assert ledger_mismatches() == []


def test_stock_adjust_refuses_to_go_below_available(stocked, warehouse):
    product = stocked(3)
    stock_reserve(product=product, warehouse=warehouse, quantity=D(2), origin=TEST_ORIGIN)

    with pytest.raises(InsufficientStock) as caught:
        stock_adjust(product=product, warehouse=warehouse, delta=D(-2), origin=TEST_ORIGIN)

    assert caught.value.details["available"] == "1.000"
    assert caught.value.status_code == 409
    assert level_of(product, warehouse).on_hand == D(3)


def test_stock_adjust_allows_negative_when_product_allows_it(warehouse):
    product = ProductFactory(allow_negative_stock=True)

    stock_adjust(product=product, warehouse=warehouse, delta=D(-4), origin=TEST_ORIGIN)

    assert level_of(product, warehouse).on_hand == D(-4)
    assert ledger_mismatches() == []


def test_stock_adjust_rejects_zero_and_excess_precision(warehouse):
    product = ProductFactory()
    with pytest.raises(InvalidQuantity):
        stock_adjust(product=product, warehouse=warehouse, delta=D(0), origin=TEST_ORIGIN)
    with pytest.raises(InvalidQuantity):
        stock_adjust(product=product, warehouse=warehouse, delta=D("1.0001"), origin=TEST_ORIGIN)


def test_stock_adjust_is_idempotent_by_key(warehouse):
    product = ProductFactory()

    first = stock_adjust(
        product=product, warehouse=warehouse, delta=D(5), origin=TEST_ORIGIN, idempotency_key="k1"
    )
    again = stock_adjust(
        product=product, warehouse=warehouse, delta=D(5), origin=TEST_ORIGIN, idempotency_key="k1"
    )

    assert again.replayed is True
    assert [m.pk for m in again.movements] == [m.pk for m in first.movements]
    assert level_of(product, warehouse).on_hand == D(5)


def test_stock_key_used_for_another_operation_is_refused(warehouse, store):
    product = ProductFactory()
    stock_adjust(
        product=product, warehouse=warehouse, delta=D(5), origin=TEST_ORIGIN, idempotency_key="k2"
    )

    with pytest.raises(IdempotencyKeyReused):
        stock_adjust(
            product=product, warehouse=store, delta=D(5), origin=TEST_ORIGIN, idempotency_key="k2"
        )


def test_stock_set_records_the_difference(stocked, warehouse):
    product = stocked(10)

    result = stock_set(product=product, warehouse=warehouse, quantity=D(7), origin=TEST_ORIGIN)

    assert result.movements[0].kind == StockMovement.Kind.COUNT
    assert result.movements[0].on_hand_delta == D(-3)
    assert level_of(product, warehouse).on_hand == D(7)
    assert ledger_mismatches() == []


def test_stock_set_refuses_negative_count(warehouse):
    with pytest.raises(InvalidQuantity):
        stock_set(product=ProductFactory(), warehouse=warehouse, quantity=D(-1), origin=TEST_ORIGIN)


def test_stock_adjust_keeps_weighted_average_cost(warehouse):
    product = ProductFactory()
    stock_adjust(
        product=product, warehouse=warehouse, delta=D(10), unit_cost=D(2), origin=TEST_ORIGIN
    )
    stock_adjust(
        product=product, warehouse=warehouse, delta=D(30), unit_cost=D(4), origin=TEST_ORIGIN
    )

    level = level_of(product, warehouse)
    assert level.unit_cost == D("3.5000")
    assert level.stock_value == D("140.0000")


def test_stock_transfer_moves_between_warehouses(stocked, warehouse, store):
    product = stocked(10)

    result = stock_transfer(
        product=product,
        from_warehouse=warehouse,
        to_warehouse=store,
        quantity=D(4),
        origin=TEST_ORIGIN,
    )

    assert [m.kind for m in result.movements] == ["transfer_out", "transfer_in"]
    assert level_of(product, warehouse).on_hand == D(6)
    assert level_of(product, store).on_hand == D(4)
    assert ledger_mismatches() == []


def test_stock_transfer_refuses_when_source_short(stocked, warehouse, store):
    product = stocked(2)
    with pytest.raises(InsufficientStock):
        stock_transfer(
            product=product,
            from_warehouse=warehouse,
            to_warehouse=store,
            quantity=D(3),
            origin=TEST_ORIGIN,
        )
    assert level_of(product, warehouse).on_hand == D(2)


def test_stock_transfer_refuses_other_vendor_and_same_warehouse(stocked, warehouse):
    product = stocked(5)
    foreign = WarehouseFactory(vendor=VendorFactory())
    with pytest.raises(DomainError) as caught:
        stock_transfer(
            product=product,
            from_warehouse=warehouse,
            to_warehouse=foreign,
            quantity=D(1),
            origin=TEST_ORIGIN,
        )
    assert caught.value.code == "vendor_mismatch"
    with pytest.raises(DomainError) as caught:
        stock_transfer(
            product=product,
            from_warehouse=warehouse,
            to_warehouse=warehouse,
            quantity=D(1),
            origin=TEST_ORIGIN,
        )
    assert caught.value.code == "same_warehouse"


def test_inactive_warehouse_refuses_mutations(warehouse):
    closed = WarehouseFactory(active=False)
    with pytest.raises(WarehouseInactive):
        stock_adjust(product=ProductFactory(), warehouse=closed, delta=D(1), origin=TEST_ORIGIN)


def test_stock_reserve_holds_available_stock(stocked, warehouse):
    product = stocked(5)

    reservation = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(2),
        ttl=timedelta(minutes=5),
        origin=Origin(source="test", actor="test", reference="order-1/line-1"),
    )

    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved, level.available) == (D(5), D(2), D(3))
    assert reservation.status == Reservation.Status.ACTIVE
    assert reservation.reference == "order-1/line-1"
    assert reservation.movements.get().kind == StockMovement.Kind.RESERVE


def test_stock_reserve_refuses_more_than_available(stocked, warehouse):
    product = stocked(1)
    with pytest.raises(InsufficientStock) as caught:
        stock_reserve(product=product, warehouse=warehouse, quantity=D(2), origin=TEST_ORIGIN)
    assert caught.value.details == {
        "sku": product.sku,
        "warehouse": "MAIN",
        "available": "1.000",
        "requested": "2.000",
    }
    assert not Reservation.objects.exists()


def test_stock_reserve_expires_due_reservations_when_short(stocked, warehouse):
    product = stocked(2)
    old = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(2),
        ttl=timedelta(seconds=1),
        origin=TEST_ORIGIN,
    )
    Reservation.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    new = stock_reserve(product=product, warehouse=warehouse, quantity=D(2), origin=TEST_ORIGIN)

    old.refresh_from_db()
    assert old.status == Reservation.Status.EXPIRED
    assert new.status == Reservation.Status.ACTIVE
    assert level_of(product, warehouse).reserved == D(2)
    assert ledger_mismatches() == []


def test_stock_reserve_is_idempotent_by_key(stocked, warehouse):
    product = stocked(5)
    first = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(1),
        origin=TEST_ORIGIN,
        idempotency_key="r1",
    )
    again = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(1),
        origin=TEST_ORIGIN,
        idempotency_key="r1",
    )
    assert again.pk == first.pk
    assert level_of(product, warehouse).reserved == D(1)
    with pytest.raises(IdempotencyKeyReused):
        stock_reserve(
            product=product,
            warehouse=warehouse,
            quantity=D(2),
            origin=TEST_ORIGIN,
            idempotency_key="r1",
        )


@pytest.mark.parametrize("ttl_seconds", [60, 7200])
def test_stock_reserve_defaults_to_the_vendors_default_warehouse_and_ttl(
    stocked, warehouse, store, settings, ttl_seconds
):
    # given: the settings' default TTL; MAIN is the vendor's default warehouse, not STORE
    settings.RESERVATION_DEFAULT_TTL_SECONDS = ttl_seconds
    product = stocked(5)
    before = timezone.now()

    # when: an order line reserves naming neither a warehouse nor a TTL
    reservation = stock_reserve(product=product, quantity=D(2), origin=TEST_ORIGIN)

    # then
    assert reservation.level.warehouse == warehouse
    assert level_of(product, warehouse).reserved == D(2)
    lasts = reservation.expires_at - before
    assert timedelta(seconds=ttl_seconds) <= lasts < timedelta(seconds=ttl_seconds + 5)


def test_stock_reserve_without_a_default_warehouse_is_refused(vendor):
    product = ProductFactory(vendor=vendor)
    WarehouseFactory(vendor=vendor, code="OTHER", is_default=False)

    with pytest.raises(DomainError) as refused:
        stock_reserve(product=product, quantity=D(1), origin=TEST_ORIGIN)

    assert refused.value.code == "warehouse_not_found"
    assert not Reservation.objects.exists()


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-5), timedelta(days=31)])
def test_stock_reserve_refuses_a_ttl_out_of_bounds(stocked, warehouse, settings, ttl):
    settings.RESERVATION_MAX_TTL_SECONDS = 30 * 24 * 3600
    product = stocked(5)

    with pytest.raises(DomainError) as refused:
        stock_reserve(
            product=product, warehouse=warehouse, quantity=D(1), ttl=ttl, origin=TEST_ORIGIN
        )

    assert refused.value.code == "invalid_ttl"
    assert refused.value.details == {"field": "ttl", "max_seconds": 30 * 24 * 3600}
    assert not Reservation.objects.exists()


def test_stock_release_returns_stock_and_is_idempotent(stocked, warehouse):
    product = stocked(5)
    reservation = stock_reserve(
        product=product, warehouse=warehouse, quantity=D(3), origin=TEST_ORIGIN
    )

    released = stock_release(reservation=reservation, origin=TEST_ORIGIN)
    again = stock_release(reservation=reservation, origin=TEST_ORIGIN)

    assert released.status == again.status == Reservation.Status.RELEASED
    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved) == (D(5), D(0))
    assert StockMovement.objects.filter(kind="release").count() == 1


def test_stock_commit_ships_reserved_stock(stocked, warehouse):
    product = stocked(5)
    reservation = stock_reserve(
        product=product, warehouse=warehouse, quantity=D(3), origin=TEST_ORIGIN
    )

    stock_commit(reservation=reservation, origin=TEST_ORIGIN)

    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved, level.available) == (D(2), D(0), D(2))
    assert ledger_mismatches() == []
    with pytest.raises(ReservationNotActive):
        stock_release(reservation=reservation, origin=TEST_ORIGIN)


def test_stock_release_and_commit_refuse_an_owned_reservation(stocked, warehouse):
    # given a reservation held by another service (an order line)
    product = stocked(5)
    reservation = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(3),
        origin=TEST_ORIGIN,
        expires=False,
        owner="order_line",
    )
    # when anyone else releases or commits it, then it is refused and nothing moves
    for close in (stock_release, stock_commit):
        with pytest.raises(ReservationOwnedByOrder) as refused:
            close(reservation=reservation, origin=TEST_ORIGIN)
        assert refused.value.code == "reservation_owned_by_order"
        assert refused.value.status_code == 409
    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved) == (D(5), D(3))
    # and its owner closes it
    stock_commit(reservation=reservation, origin=TEST_ORIGIN, owner="order_line")
    level = level_of(product, warehouse)
    assert (level.on_hand, level.reserved) == (D(2), D(0))
    assert ledger_mismatches() == []


def test_reservations_expire_gives_back_due_stock_only(stocked, warehouse):
    product = stocked(10)
    due = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(2),
        ttl=timedelta(minutes=1),
        origin=TEST_ORIGIN,
    )
    later = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(3),
        ttl=timedelta(hours=1),
        origin=TEST_ORIGIN,
    )
    default = stock_reserve(product=product, warehouse=warehouse, quantity=D(1), origin=TEST_ORIGIN)

    expired = reservations_expire(now=timezone.now() + timedelta(minutes=5))

    assert expired == 1
    statuses = {r.pk: r.status for r in Reservation.objects.all()}
    assert statuses == {due.pk: "expired", later.pk: "active", default.pk: "active"}
    assert level_of(product, warehouse).reserved == D(4)
    assert ledger_mismatches() == []


def test_low_stock_alert_is_raised_once_when_crossing_min(
    stocked, warehouse, log_lines, django_capture_on_commit_callbacks
):
    product = stocked(10)
    StockLevel.objects.filter(product=product).update(min_stock=D(5))

    for delta in (-6, 3, -3):  # below, back above, below again
        with django_capture_on_commit_callbacks(execute=True):
            stock_adjust(product=product, warehouse=warehouse, delta=D(delta), origin=TEST_ORIGIN)

    raised = [line for line in log_lines() if line["event"] == "alert.raised"]
    suppressed = [line for line in log_lines() if line["event"] == "alert.suppressed"]
    assert len(raised) == 1
    assert raised[0]["title"] == "Low stock"
    assert product.sku in raised[0]["text"]
    assert len(suppressed) == 1


@pytest.mark.django_db(transaction=True)
def test_lock_helper_requires_a_transaction(warehouse):
    product = ProductFactory()
    with pytest.raises(RuntimeError):
        stock_levels_lock([(product, warehouse)])


def test_ledger_is_append_only(stocked):
    stocked(1)
    movement = StockMovement.objects.get()
    with pytest.raises(ValueError, match="append-only"):
        movement.save()
    with pytest.raises(ValueError, match="append-only"):
        movement.delete()


def test_a_key_reused_with_another_quantity_is_refused(warehouse, store):
    product = ProductFactory()
    stock_adjust(
        product=product, warehouse=warehouse, delta=D(5), origin=TEST_ORIGIN, idempotency_key="q"
    )
    with pytest.raises(IdempotencyKeyReused):
        stock_adjust(
            product=product,
            warehouse=warehouse,
            delta=D(6),
            origin=TEST_ORIGIN,
            idempotency_key="q",
        )
    stock_set(
        product=product, warehouse=store, quantity=D(3), origin=TEST_ORIGIN, idempotency_key="c"
    )
    with pytest.raises(IdempotencyKeyReused):
        stock_set(
            product=product,
            warehouse=store,
            quantity=D(4),
            origin=TEST_ORIGIN,
            idempotency_key="c",
        )
    stock_transfer(
        product=product,
        from_warehouse=warehouse,
        to_warehouse=store,
        quantity=D(1),
        origin=TEST_ORIGIN,
        idempotency_key="t",
    )
    with pytest.raises(IdempotencyKeyReused):  # the same quantity the other way round
        stock_transfer(
            product=product,
            from_warehouse=store,
            to_warehouse=warehouse,
            quantity=D(1),
            origin=TEST_ORIGIN,
            idempotency_key="t",
        )
    assert level_of(product, warehouse).on_hand == D(4)
    assert level_of(product, store).on_hand == D(4)


def test_totals_that_would_overflow_are_refused_not_a_database_error(warehouse):
    product = ProductFactory()
    big = D("99999999999.999")
    stock_adjust(product=product, warehouse=warehouse, delta=big, origin=TEST_ORIGIN)

    with pytest.raises(DomainError) as caught:
        stock_adjust(product=product, warehouse=warehouse, delta=D(1), origin=TEST_ORIGIN)
    assert caught.value.code == "quantity_out_of_range"

    other = ProductFactory()
    with pytest.raises(DomainError) as caught:
        stock_adjust(
            product=other,
            warehouse=warehouse,
            delta=D(10_000_000),
            unit_cost=D("9999999999"),
            origin=TEST_ORIGIN,
        )
    assert caught.value.code == "quantity_out_of_range"
    assert ledger_mismatches() == []


def test_a_key_that_made_another_operation_cannot_make_a_reservation(stocked, warehouse):
    product = stocked(10)
    stock_adjust(
        product=product, warehouse=warehouse, delta=D(1), origin=TEST_ORIGIN, idempotency_key="x"
    )
    with pytest.raises(IdempotencyKeyReused):
        stock_reserve(
            product=product,
            warehouse=warehouse,
            quantity=D(1),
            origin=TEST_ORIGIN,
            idempotency_key="x",
        )


def test_a_reservation_replay_says_so(stocked, warehouse):
    product = stocked(10)
    first = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(1),
        origin=TEST_ORIGIN,
        idempotency_key="r",
    )
    again = stock_reserve(
        product=product,
        warehouse=warehouse,
        quantity=D(1),
        origin=TEST_ORIGIN,
        idempotency_key="r",
    )
    assert (first.replayed, again.replayed) == (False, True)


def test_a_count_whose_difference_would_overflow_is_refused(warehouse):
    product = ProductFactory(allow_negative_stock=True)
    stock_set(product=product, warehouse=warehouse, quantity=D(-90_000_000_000), origin=TEST_ORIGIN)
    with pytest.raises(DomainError) as caught:
        stock_set(
            product=product, warehouse=warehouse, quantity=D(90_000_000_000), origin=TEST_ORIGIN
        )
    assert caught.value.code == "quantity_out_of_range"


def test_a_key_reused_with_another_unit_cost_is_refused(warehouse):
    product = ProductFactory()
    stock_adjust(
        product=product,
        warehouse=warehouse,
        delta=D(5),
        unit_cost=D(2),
        origin=TEST_ORIGIN,
        idempotency_key="cost",
    )
    with pytest.raises(IdempotencyKeyReused):
        stock_adjust(
            product=product,
            warehouse=warehouse,
            delta=D(5),
            unit_cost=D(3),
            origin=TEST_ORIGIN,
            idempotency_key="cost",
        )


def test_stock_reserve_without_expiry_holds_until_released(stocked, warehouse):
    # given: a hold that must outlive any time to live (an order's line)
    product = stocked(5)
    held = stock_reserve(
        product=product, warehouse=warehouse, quantity=D(2), expires=False, origin=TEST_ORIGIN
    )

    # when: every timed reservation would be long due
    expired = reservations_expire(now=timezone.now() + timedelta(days=365))

    # then
    assert held.expires_at is None
    assert expired == 0
    held.refresh_from_db()
    assert held.status == "active"
    assert level_of(product, warehouse).reserved == D(2)
