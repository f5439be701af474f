"""Stock mutations: adjust, set (count), transfer.

Each service locks the levels it touches through `inventory.locks` (primary-key order),
checks quantities under the lock, and writes one ledger movement per level changed in the
same transaction. Each is idempotent by key: a repeated key returns the movements already
written (a key used for a different operation raises `idempotency_key_reused`).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.db import transaction

from core.correlation import get_correlation_id
from core.errors import DomainError
from core.metrics import STOCK_MOVEMENTS
from core.services import alert_send
from inventory.errors import (
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidQuantity,
    WarehouseInactive,
)
from inventory.hooks import StockChange, stock_changed
from inventory.locks import stock_levels_lock
from inventory.models import (
    ZERO,
    Product,
    Reservation,
    StockLevel,
    StockMovement,
    Warehouse,
)

QUANTUM = Decimal("0.001")
MONEY_QUANTUM = Decimal("0.0001")
MAX_QUANTITY = Decimal("99999999999.999")  # Decimal(14, 3)
MAX_UNIT_COST = Decimal("9999999999.9999")  # Decimal(14, 4)
MAX_STOCK_VALUE = Decimal("99999999999999.9999")  # Decimal(18, 4)


@dataclass(frozen=True)
class Origin:
    """Who and what caused a stock change; recorded on every movement."""

    source: str
    actor: str
    reason: str = ""
    reference: str = ""


@dataclass
class StockMutation:
    """The movements a mutation wrote and the levels as they stand after it."""

    movements: list[StockMovement]
    levels: list[StockLevel] = field(default_factory=list)
    replayed: bool = False


def quantity_clean(value: Decimal | int | str) -> Decimal:
    """Return a quantity as Decimal(14, 3), or raise `invalid_quantity`."""
    try:
        quantity = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidQuantity(f"{value!r} is not a number.") from exc
    if not quantity.is_finite() or abs(quantity) > MAX_QUANTITY:
        raise InvalidQuantity(f"{value!r} is out of range.")
    if quantity != quantity.quantize(QUANTUM):
        raise InvalidQuantity(f"{value!r} has more than 3 decimal places.")
    return quantity.quantize(QUANTUM)


def unit_cost_clean(value: Decimal | int | str | None) -> Decimal | None:
    """Return a unit cost as Decimal(14, 4) (or None), or raise `invalid_unit_cost`."""
    if value is None:
        return None
    try:
        cost = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise DomainError(f"{value!r} is not a number.", code="invalid_unit_cost") from exc
    if not cost.is_finite() or cost < 0 or cost > MAX_UNIT_COST:
        raise DomainError(f"Unit cost {value!r} is out of range.", code="invalid_unit_cost")
    return cost.quantize(MONEY_QUANTUM, ROUND_HALF_UP)


def warehouse_check(product: Product, warehouse: Warehouse) -> None:
    """Refuse a warehouse of another vendor, or an inactive one."""
    if product.vendor_id != warehouse.vendor_id:
        raise DomainError(
            f"Warehouse {warehouse.code} belongs to another vendor than {product.sku}.",
            code="vendor_mismatch",
        )
    if not warehouse.active:
        raise WarehouseInactive(f"Warehouse {warehouse.code} is inactive.")


def movement_record(
    level: StockLevel,
    *,
    kind: str,
    origin: Origin,
    on_hand_delta: Decimal = ZERO,
    reserved_delta: Decimal = ZERO,
    idempotency_key: str = "",
    reservation: Reservation | None = None,
    unit_cost: Decimal | None = None,
) -> StockMovement:
    """Apply deltas to a locked level and write its ledger movement (caller holds the lock).

    Keeps the weighted average cost and stock value, raises the low-stock alert (after
    commit) when the level's available quantity falls below its minimum, and tells the
    stock-change listeners (`inventory.hooks`) in the same transaction.
    """
    available_before = level.available
    average_cost = level.unit_cost
    if unit_cost is not None and on_hand_delta > 0:
        held = max(level.on_hand, ZERO)
        average_cost = (
            (held * level.unit_cost + on_hand_delta * unit_cost) / (held + on_hand_delta)
        ).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
    on_hand = level.on_hand + on_hand_delta
    reserved = level.reserved + reserved_delta
    stock_value = (on_hand * average_cost).quantize(MONEY_QUANTUM, ROUND_HALF_UP)
    largest = max(abs(on_hand), abs(reserved), abs(on_hand_delta), abs(reserved_delta))
    if largest > MAX_QUANTITY or abs(stock_value) > MAX_STOCK_VALUE:
        raise InvalidQuantity(
            f"The result is out of range for {level.product.sku} in {level.warehouse.code}.",
            code="quantity_out_of_range",
            details={"on_hand": str(on_hand), "stock_value": str(stock_value)},
        )
    level.on_hand, level.reserved = on_hand, reserved
    level.unit_cost, level.stock_value = average_cost, stock_value
    level.save(update_fields=["on_hand", "reserved", "unit_cost", "stock_value", "updated_at"])
    movement = StockMovement.objects.create(
        level=level,
        kind=kind,
        on_hand_delta=on_hand_delta,
        reserved_delta=reserved_delta,
        on_hand_after=level.on_hand,
        reserved_after=level.reserved,
        unit_cost=unit_cost,
        source=origin.source,
        reference=origin.reference[:200],
        reason=origin.reason[:500],
        actor=origin.actor[:150],
        correlation_id=get_correlation_id() or "",
        idempotency_key=idempotency_key,
        reservation=reservation,
    )
    transaction.on_commit(STOCK_MOVEMENTS.labels(kind).inc, robust=True)
    _watch_min_stock(level, available_before)
    stock_changed(StockChange(product_ids=(level.product_id,)))
    return movement


def _watch_min_stock(level: StockLevel, available_before: Decimal) -> None:
    minimum = level.min_stock
    if minimum is None or not (available_before >= minimum > level.available):
        return
    sku, warehouse, available = level.product.sku, level.warehouse.code, level.available
    # alert_send waits for the commit itself: a rolled-back change raises nothing.
    alert_send(
        title="Low stock",
        text=f"{sku} in {warehouse}: {available} available, below the minimum of {minimum}.",
        key=f"low_stock:{level.pk}",
        fields={"SKU": sku, "Warehouse": warehouse, "Available": available, "Min": minimum},
    )


def movements_replay(
    key: str,
    *,
    levels: list[StockLevel],
    kinds: set[str],
    same: Callable[[StockMovement], bool],
) -> list[StockMovement]:
    """Return the movements already written under `key`, or nothing when the key is new.

    Runs after the caller's lock, as its own statement, so it sees a concurrent call with
    the same key that committed while this one waited for the lock. A key used for another
    operation (other levels or kinds, or `same` refusing a movement: another quantity)
    raises `idempotency_key_reused`.
    """
    if not key:
        return []
    movements = list(StockMovement.objects.filter(idempotency_key=key).order_by("id"))
    by_id = {level.pk: level for level in levels}
    if movements and (
        set(by_id) != {m.level_id for m in movements}
        or not {m.kind for m in movements} <= kinds
        or not all(same(m) for m in movements)
    ):
        raise IdempotencyKeyReused(
            "This idempotency key was already used for a different stock operation.",
            details={"idempotency_key": key},
        )
    for movement in movements:
        movement.level = by_id[movement.level_id]  # locked, with product and warehouse
    return movements


def stock_adjust(
    *,
    product: Product,
    warehouse: Warehouse,
    delta: Decimal,
    origin: Origin,
    idempotency_key: str = "",
    unit_cost: Decimal | None = None,
) -> StockMutation:
    """Change on_hand by `delta` (positive receives, negative removes).

    Locks the level; refuses with `insufficient_stock` when available would go below zero,
    unless the product allows negative stock. Idempotent by key.
    """
    delta = quantity_clean(delta)
    unit_cost = unit_cost_clean(unit_cost)
    if delta == 0:
        raise InvalidQuantity("An adjustment must change the quantity.")
    warehouse_check(product, warehouse)
    with transaction.atomic():
        level = stock_levels_lock([(product, warehouse)])[(product.pk, warehouse.pk)]
        replay = movements_replay(
            idempotency_key,
            levels=[level],
            kinds={StockMovement.Kind.ADJUST},
            same=lambda m: m.on_hand_delta == delta and m.unit_cost == unit_cost,
        )
        if replay:
            return StockMutation(replay, [level], replayed=True)
        if delta < 0 and product.stock_is_enforced and level.available + delta < 0:
            raise InsufficientStock(
                sku=product.sku,
                warehouse=warehouse.code,
                available=level.available,
                requested=-delta,
            )
        movement = movement_record(
            level,
            kind=StockMovement.Kind.ADJUST,
            origin=origin,
            on_hand_delta=delta,
            idempotency_key=idempotency_key,
            unit_cost=unit_cost,
        )
    return StockMutation([movement], [level])


def stock_set(
    *,
    product: Product,
    warehouse: Warehouse,
    quantity: Decimal,
    origin: Origin,
    idempotency_key: str = "",
    unit_cost: Decimal | None = None,
) -> StockMutation:
    """Set on_hand to a counted quantity, recording the difference.

    A count is a physical fact, so it is not refused when reservations exceed it (available
    then shows the shortfall, and the low-stock alert fires). A count equal to the current
    quantity still writes a zero movement: the ledger shows the count happened.
    """
    quantity = quantity_clean(quantity)
    unit_cost = unit_cost_clean(unit_cost)
    if quantity < 0 and product.stock_is_enforced:
        raise InvalidQuantity("A counted quantity cannot be negative.")
    warehouse_check(product, warehouse)
    with transaction.atomic():
        level = stock_levels_lock([(product, warehouse)])[(product.pk, warehouse.pk)]
        replay = movements_replay(
            idempotency_key,
            levels=[level],
            kinds={StockMovement.Kind.COUNT},
            same=lambda m: m.on_hand_after == quantity and m.unit_cost == unit_cost,
        )
        if replay:
            return StockMutation(replay, [level], replayed=True)
        movement = movement_record(
            level,
            kind=StockMovement.Kind.COUNT,
            origin=origin,
            on_hand_delta=quantity - level.on_hand,
            idempotency_key=idempotency_key,
            unit_cost=unit_cost,
        )
    return StockMutation([movement], [level])


def stock_transfer(
    *,
    product: Product,
    from_warehouse: Warehouse,
    to_warehouse: Warehouse,
    quantity: Decimal,
    origin: Origin,
    idempotency_key: str = "",
) -> StockMutation:
    """Move stock between two warehouses of the product's vendor.

    Locks both levels in primary-key order (so opposite transfers cannot deadlock), refuses
    with `insufficient_stock` when the source lacks available stock, and writes a
    `transfer_out` and a `transfer_in` movement; the units keep their average cost.
    """
    quantity = quantity_clean(quantity)
    if quantity <= 0:
        raise InvalidQuantity("A transfer moves a positive quantity.")
    if from_warehouse.pk == to_warehouse.pk:
        raise DomainError("A transfer needs two different warehouses.", code="same_warehouse")
    warehouse_check(product, from_warehouse)
    warehouse_check(product, to_warehouse)
    with transaction.atomic():
        levels = stock_levels_lock([(product, from_warehouse), (product, to_warehouse)])
        source = levels[(product.pk, from_warehouse.pk)]
        target = levels[(product.pk, to_warehouse.pk)]
        expected = {
            (source.pk, StockMovement.Kind.TRANSFER_OUT, -quantity),
            (target.pk, StockMovement.Kind.TRANSFER_IN, quantity),
        }
        replay = movements_replay(
            idempotency_key,
            levels=[source, target],
            kinds={StockMovement.Kind.TRANSFER_OUT, StockMovement.Kind.TRANSFER_IN},
            same=lambda m: (m.level_id, m.kind, m.on_hand_delta) in expected,
        )
        if replay:
            return StockMutation(replay, [source, target], replayed=True)
        if product.stock_is_enforced and source.available < quantity:
            raise InsufficientStock(
                sku=product.sku,
                warehouse=from_warehouse.code,
                available=source.available,
                requested=quantity,
            )
        out = movement_record(
            source,
            kind=StockMovement.Kind.TRANSFER_OUT,
            origin=origin,
            on_hand_delta=-quantity,
            idempotency_key=idempotency_key,
        )
        in_ = movement_record(
            target,
            kind=StockMovement.Kind.TRANSFER_IN,
            origin=origin,
            on_hand_delta=quantity,
            idempotency_key=idempotency_key,
            unit_cost=source.unit_cost if source.unit_cost else None,
        )
    return StockMutation([out, in_], [source, target])


def stock_level_limits_check(
    *, min_stock: Decimal | None, max_stock: Decimal | None
) -> tuple[Decimal | None, Decimal | None]:
    """The cleaned minimum and maximum, or `invalid_limits` on `max_stock` (writes nothing)."""
    min_stock = None if min_stock is None else quantity_clean(min_stock)
    max_stock = None if max_stock is None else quantity_clean(max_stock)
    if min_stock is not None and max_stock is not None and max_stock < min_stock:
        raise DomainError(
            "The maximum must not be below the minimum.",
            code="invalid_limits",
            details={"field": "max_stock"},
        )
    return min_stock, max_stock


def stock_level_set_limits(
    *, level: StockLevel, min_stock: Decimal | None, max_stock: Decimal | None
) -> StockLevel:
    """Set a level's minimum and maximum (configuration: no ledger movement)."""
    min_stock, max_stock = stock_level_limits_check(min_stock=min_stock, max_stock=max_stock)
    StockLevel.objects.filter(pk=level.pk).update(min_stock=min_stock, max_stock=max_stock)
    level.min_stock, level.max_stock = min_stock, max_stock
    return level
