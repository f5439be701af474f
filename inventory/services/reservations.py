"""Reservations: hold stock for an order line, then commit (shipped), release, or expire.

Lock order is always the stock level first, then its reservations, so these services and
the expiry sweep cannot deadlock with each other or with the stock mutations.
"""

from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.errors import DomainError
from inventory.errors import (
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidQuantity,
    ReservationNotActive,
    ReservationOwnedByOrder,
)
from inventory.hooks import stock_changes_collected
from inventory.locks import stock_levels_lock, stock_levels_lock_by_id
from inventory.models import Product, Reservation, StockLevel, StockMovement, Warehouse
from inventory.selectors import vendor_default_warehouse
from inventory.services.stock import Origin, movement_record, quantity_clean, warehouse_check

logger = structlog.get_logger(__name__)

SYSTEM_ORIGIN = Origin(source="system", actor="system:reservations", reason="reservation expired")


def _expire_due(level: StockLevel, now: datetime) -> int:
    """Expire the level's due reservations (the caller holds the level's lock)."""
    due = list(
        Reservation.objects.select_for_update()
        .filter(level_id=level.pk, status=Reservation.Status.ACTIVE, expires_at__lte=now)
        .order_by("pk")
    )
    for reservation in due:
        reservation.status = Reservation.Status.EXPIRED
        reservation.closed_at = now
        movement_record(
            level,
            kind=StockMovement.Kind.EXPIRE,
            origin=Origin(
                source=SYSTEM_ORIGIN.source,
                actor=SYSTEM_ORIGIN.actor,
                reason=SYSTEM_ORIGIN.reason,
                reference=reservation.reference,
            ),
            reserved_delta=-reservation.quantity,
            reservation=reservation,
        )
    if due:
        Reservation.objects.bulk_update(due, ["status", "closed_at", "updated_at"])
    return len(due)


def reservation_ttl(ttl: timedelta | None) -> timedelta:
    """The hold's time to live: `RESERVATION_DEFAULT_TTL_SECONDS` when None; refuses one
    outside 1 s to `RESERVATION_MAX_TTL_SECONDS` (`invalid_ttl`, field `ttl`)."""
    if ttl is None:
        return timedelta(seconds=settings.RESERVATION_DEFAULT_TTL_SECONDS)
    longest = settings.RESERVATION_MAX_TTL_SECONDS
    if not timedelta(seconds=1) <= ttl <= timedelta(seconds=longest):
        raise DomainError(
            f"A reservation holds stock for 1 to {longest} seconds.",
            code="invalid_ttl",
            details={"field": "ttl", "max_seconds": longest},
        )
    return ttl


def stock_reserve(
    *,
    product: Product,
    quantity: Decimal,
    origin: Origin,
    warehouse: Warehouse | None = None,
    ttl: timedelta | None = None,
    expires: bool = True,
    idempotency_key: str = "",
    enforce: bool = True,
    owner: str = "",
) -> Reservation:
    """Hold `quantity` of available stock until `ttl` passes (or it is released/committed).

    The API and orders reserve alike: no `warehouse` takes the vendor's default warehouse
    (`warehouse_not_found` when it has none), no `ttl` takes
    `RESERVATION_DEFAULT_TTL_SECONDS` (see `reservation_ttl`). `expires=False` holds until
    committed or released, whatever `ttl` says (an order's line: the order decides).
    `enforce=False` records a sale that already happened (a marketplace order): the full
    quantity is held even past zero available, under the same lock and with the same ledger
    movement; the caller sees the shortfall as `reservation.level.available < 0`.

    Locks the level and checks availability under the lock, so concurrent reservations never
    take available below zero (unless the product allows negative stock). When short, due
    reservations of the level are expired first and availability is checked again.
    Idempotent by key: the same key returns the reservation it made, with `replayed` set
    on the returned object (False for a new reservation).
    """
    quantity = quantity_clean(quantity)
    if quantity <= 0:
        raise InvalidQuantity("A reservation holds a positive quantity.")
    ttl = reservation_ttl(ttl) if expires else None
    if warehouse is None:
        warehouse = vendor_default_warehouse(product.vendor_id)
    warehouse_check(product, warehouse)
    with transaction.atomic():
        level = stock_levels_lock([(product, warehouse)])[(product.pk, warehouse.pk)]
        if idempotency_key:
            existing = Reservation.objects.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                if existing.level_id != level.pk or existing.quantity != quantity:
                    raise IdempotencyKeyReused(details={"idempotency_key": idempotency_key})
                existing.level = level
                existing.replayed = True
                return existing
            if StockMovement.objects.filter(idempotency_key=idempotency_key).exists():
                # The key made another kind of stock operation.
                raise IdempotencyKeyReused(details={"idempotency_key": idempotency_key})
        now = timezone.now()
        if product.stock_is_enforced and level.available < quantity:
            _expire_due(level, now)
            if enforce and level.available < quantity:
                raise InsufficientStock(
                    sku=product.sku,
                    warehouse=warehouse.code,
                    available=level.available,
                    requested=quantity,
                )
        reservation = Reservation.objects.create(
            level=level,
            quantity=quantity,
            reference=origin.reference[:200],
            expires_at=now + ttl if ttl is not None else None,
            idempotency_key=idempotency_key,
            owner=owner,
        )
        movement_record(
            level,
            kind=StockMovement.Kind.RESERVE,
            origin=origin,
            reserved_delta=quantity,
            reservation=reservation,
            idempotency_key=idempotency_key,
        )
    reservation.replayed = False
    return reservation


def _close(
    reservation: Reservation, *, status: str, kind: str, origin: Origin, ships: bool, owner: str
) -> Reservation:
    with transaction.atomic():
        level = stock_levels_lock_by_id([reservation.level_id])[0]
        locked = Reservation.objects.select_for_update().get(pk=reservation.pk)
        locked.level = level
        if locked.owner and locked.owner != owner:
            # An order's line holds this stock; closing it here would leave the order
            # stating stock it no longer holds (or shipped stock it never committed).
            raise ReservationOwnedByOrder(
                details={"reservation": locked.pk, "reference": locked.reference}
            )
        if locked.status == status:
            return locked  # already done: idempotent
        if locked.status != Reservation.Status.ACTIVE:
            raise ReservationNotActive(
                f"The reservation is {locked.status}.", details={"status": locked.status}
            )
        locked.status = status
        locked.closed_at = timezone.now()
        locked.save(update_fields=["status", "closed_at", "updated_at"])
        movement_record(
            level,
            kind=kind,
            origin=origin,
            on_hand_delta=-locked.quantity if ships else Decimal("0"),
            reserved_delta=-locked.quantity,
            reservation=locked,
        )
    return locked


def stock_release(*, reservation: Reservation, origin: Origin, owner: str = "") -> Reservation:
    """Give a reservation's stock back to available (idempotent; refuses a closed one).

    Locks the level, then the reservation. Refuses another owner's reservation
    (`reservation_owned_by_order`, 409): `owner` is the caller's (see `stock_reserve`).
    """
    return _close(
        reservation,
        status=Reservation.Status.RELEASED,
        kind=StockMovement.Kind.RELEASE,
        origin=origin,
        ships=False,
        owner=owner,
    )


def stock_commit(*, reservation: Reservation, origin: Origin, owner: str = "") -> Reservation:
    """The reserved stock shipped: on_hand and reserved both go down (idempotent).

    Locks like `stock_release` and refuses another owner's reservation alike.
    """
    return _close(
        reservation,
        status=Reservation.Status.COMMITTED,
        kind=StockMovement.Kind.COMMIT,
        origin=origin,
        ships=True,
        owner=owner,
    )


def reservations_expire(*, now: datetime | None = None, batch_size: int = 200) -> int:
    """Expire every active reservation past its `expires_at`; return how many.

    Works in batches of levels, one transaction each, so a large backlog never holds many
    locks for long.
    """
    now = now or timezone.now()
    expired = 0
    while True:
        level_ids = list(
            Reservation.objects.filter(status=Reservation.Status.ACTIVE, expires_at__lte=now)
            .order_by("level_id")
            .values_list("level_id", flat=True)
            .distinct()[:batch_size]
        )
        if not level_ids:
            break
        with transaction.atomic(), stock_changes_collected():
            for level in stock_levels_lock_by_id(level_ids):
                expired += _expire_due(level, now)
    if expired:
        logger.info("reservations.expired", count=expired)
    return expired
